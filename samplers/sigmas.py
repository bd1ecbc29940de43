"""Reading the host's sigma grid: one host transfer per call, checked before any model call."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from .schedules import NoiseSchedule

SAME_LAMBDA = 1e-6
"""Consecutive sigmas whose half-log-SNR lambda differs by less than this are one point: float32 rounding of one
value moves lambda by about 1e-7 per unit in the last place, and such a step h is zero or pure rounding noise (a
division by zero, or multistep weights of 1/h that blow the image up)."""

NO_SIGNAL_LAMBDA = math.log(1e-6)
"""A sigma whose lambda lies below this (alpha/sigma < 1e-6) is read as the schedule's largest sigma where alpha is
0 there (flow: sigma = 1): float32 grids round 1 to 1 - 6e-8, and a noise-prediction step from there
multiplies the model's error by alpha_t/alpha_s, about 1e7, where the step from alpha = 0 itself is exact."""


TOP_SLACK = 1e-5
"""A sigma at most this fraction above the schedule's largest sigma is read as that sigma: float32 schedulers put the
top of a flow grid a rounding error above 1 (1 + 1.2e-7)."""


def read_sigmas(sigmas: torch.Tensor | Sequence[float], schedule: NoiseSchedule) -> list[float]:
    """The grid as float64 Python floats (one `tolist()`), after checking it is a valid descending grid.

    Raises TypeError for something that is not a tensor or a sequence of numbers, ValueError naming the offending
    entry for a non-1-D grid, a non-real value, NaN/inf, negative or increasing values, or values outside the
    schedule's range (flow: sigma <= 1); a value within TOP_SLACK above the range's top is read as the top.
    """
    if isinstance(sigmas, torch.Tensor):
        if sigmas.dim() != 1:
            raise ValueError(f"sigmas must be a 1-D tensor, got shape {tuple(sigmas.shape)}")
        raw = sigmas.tolist()
    elif isinstance(sigmas, Iterable) and not isinstance(sigmas, str | bytes):  # a list, a numpy array, ...
        raw = list(sigmas)
    else:
        raise TypeError(f"sigmas must be a 1-D tensor or a sequence of numbers, got {type(sigmas).__name__}")
    values = []
    for i, item in enumerate(raw):
        try:
            values.append(float(item))
        except (TypeError, ValueError):
            raise ValueError(f"sigmas must be real numbers, but sigmas[{i}] = {item!r}") from None
    top = schedule.sigma_max
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise ValueError(f"sigmas must be finite, but sigmas[{i}] = {value}")
        if value < 0.0:
            raise ValueError(f"sigmas must be non-negative, but sigmas[{i}] = {value}")
        if top < value <= top * (1.0 + TOP_SLACK):
            values[i] = value = top
        if value > top:
            raise ValueError(
                f"sigmas[{i}] = {value} exceeds the largest sigma {top} of the "
                f"'{schedule.name}' schedule (is the model family right?)"
            )
        if i and value > values[i - 1]:
            raise ValueError(
                f"sigmas must be non-increasing, but sigmas[{i}] = {value} > sigmas[{i - 1}] = {values[i - 1]}"
            )
    return values


def distinct(values: Sequence[float], schedule: NoiseSchedule) -> list[float]:
    """Drop repeated consecutive sigmas (equal, or within SAME_LAMBDA in the schedule's lambda; the first is kept):
    a zero-length interval is a no-op (no model call)."""
    out: list[float] = []
    last = math.nan
    for value in values:
        lam = schedule.lambda_(value)
        if out and (value == out[-1] or abs(lam - last) < SAME_LAMBDA):
            continue
        out.append(value)
        last = lam
    return out


def no_signal_end(values: Sequence[float], schedule: NoiseSchedule) -> list[float]:
    """`values` with every sigma below NO_SIGNAL_LAMBDA set to the schedule's largest sigma where that is finite with
    alpha = 0 there (lambda = -inf: flow's sigma = 1)."""
    if not math.isfinite(schedule.sigma_max) or schedule.lambda_(schedule.sigma_max) != -math.inf:
        return list(values)
    return [schedule.sigma_max if 0.0 < v < schedule.sigma_max and schedule.lambda_(v) < NO_SIGNAL_LAMBDA else v
            for v in values]


def read_grid(sigmas: torch.Tensor | Sequence[float], schedule: NoiseSchedule) -> list[float]:
    """The host's grid, read once and checked (read_sigmas), its sigmas within 1e-6 of alpha = 0 put there
    (no_signal_end) and repeated sigmas dropped (distinct)."""
    return distinct(no_signal_end(read_sigmas(sigmas, schedule), schedule), schedule)
