"""Noise levels of the SDS nodes from a ComfyUI model_sampling: a percent of the schedule or a sigma.

Percent follows ComfyUI's start/end percent (`model_sampling.percent_to_sigma`): 0 is the start of sampling
(the model's sigma_max), values towards 1 approach sigma = 0. Percent 1 (sigma = 0) has no SDS gradient and
is refused. A sigma input above 0 overrides the percent. The refine node anneals linearly in percent from its
start to its end; an end given as a sigma is first turned into its percent (bisection on percent_to_sigma).
"""

from __future__ import annotations

import math
from typing import Any

from .family import FLOW
from .widgets import InputError

BISECTION_STEPS = 60


def sigma_max_of(model_sampling: Any) -> float:
    return float(model_sampling.sigma_max)


def sigma_at_percent(model_sampling: Any, percent: float, name: str = "percent") -> float:
    """Sigma at `percent` of the schedule (0: sigma_max); InputError naming `name` outside [0, 1)."""
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0.0 <= percent < 1.0:
        raise InputError(f"input '{name}' must be at least 0 and below 1 (1 is sigma = 0, which has no SDS "
                         f"gradient), got {percent!r}")
    return min(float(model_sampling.percent_to_sigma(float(percent))), sigma_max_of(model_sampling))


def check_sigma(sigma: float, family: str, name: str = "sigma") -> float:
    """A usable noise level: positive and finite, at most 1 on a flow model."""
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not (math.isfinite(sigma) and sigma > 0.0):
        raise InputError(f"input '{name}' must be a positive number, got {sigma!r}")
    if family == FLOW and sigma > 1.0:
        raise InputError(f"input '{name}' must be at most 1 on a flow model (sigma = 1 is pure noise), got {sigma!r}")
    return float(sigma)


def percent_at_sigma(model_sampling: Any, sigma: float) -> float:
    """The percent whose sigma is `sigma` (0 at or above sigma_max), by bisection on the decreasing
    percent -> sigma map."""
    if sigma >= sigma_max_of(model_sampling):
        return 0.0
    lo, hi = 0.0, 1.0  # sigma_at(lo) > sigma >= sigma_at(hi) (sigma_at(1) = 0)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if sigma_at_percent(model_sampling, mid) > sigma:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def sds_sigma(model_sampling: Any, family: str, percent: float, sigma: float,
              names: tuple[str, str] = ("percent", "sigma")) -> float:
    """A noise level given as `sigma` (when above 0) or else as `percent`; errors name the input (`names`)."""
    if isinstance(sigma, int | float) and not isinstance(sigma, bool) and sigma == 0.0:
        return check_sigma(sigma_at_percent(model_sampling, percent, names[0]), family, names[0])
    return check_sigma(sigma, family, names[1])


def annealing_sigmas(model_sampling: Any, family: str, steps: int, start_percent: float, end_percent: float,
                     start_sigma: float = 0.0, end_sigma: float = 0.0) -> list[float]:
    """`steps` noise levels, linear in percent from the start to the end (a sigma above 0 replaces its percent)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"input 'steps' must be a whole number of at least 1, got {steps!r}")
    first_sigma = sds_sigma(model_sampling, family, start_percent, start_sigma, ("start_percent", "start_sigma"))
    last_sigma = sds_sigma(model_sampling, family, end_percent, end_sigma, ("end_percent", "end_sigma"))
    if steps == 1:
        return [first_sigma]
    first = percent_at_sigma(model_sampling, first_sigma) if start_sigma else start_percent
    last = percent_at_sigma(model_sampling, last_sigma) if end_sigma else end_percent
    inner = [sigma_at_percent(model_sampling, first + (last - first) * i / (steps - 1)) for i in range(1, steps - 1)]
    return [first_sigma, *inner, last_sigma]
