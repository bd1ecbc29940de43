"""Reading the host's sigma grid: one host transfer per call, checked before any model call."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .schedules import NoiseSchedule


def read_sigmas(sigmas: torch.Tensor | Sequence[float], schedule: NoiseSchedule) -> list[float]:
    """The grid as float64 Python floats (one `tolist()`), after checking it is a valid descending grid.

    Raises ValueError naming the offending entry for a non-1-D grid, NaN/inf, negative or increasing values,
    or values outside the schedule's range (flow: sigma <= 1).
    """
    if isinstance(sigmas, torch.Tensor):
        if sigmas.dim() != 1:
            raise ValueError(f"sigmas must be a 1-D tensor, got shape {tuple(sigmas.shape)}")
        values = [float(v) for v in sigmas.tolist()]
    else:
        values = [float(v) for v in sigmas]
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise ValueError(f"sigmas must be finite, but sigmas[{i}] = {value}")
        if value < 0.0:
            raise ValueError(f"sigmas must be non-negative, but sigmas[{i}] = {value}")
        if value > schedule.sigma_max:
            raise ValueError(
                f"sigmas[{i}] = {value} exceeds the largest sigma {schedule.sigma_max} of the "
                f"'{schedule.name}' schedule (is the model family right?)"
            )
        if i and value > values[i - 1]:
            raise ValueError(
                f"sigmas must be non-increasing, but sigmas[{i}] = {value} > sigmas[{i - 1}] = {values[i - 1]}"
            )
    return values


def distinct(values: Sequence[float]) -> list[float]:
    """Drop repeated consecutive sigmas: a zero-length interval is a no-op (no model call)."""
    out: list[float] = []
    for value in values:
        if not out or value != out[-1]:
            out.append(value)
    return out
