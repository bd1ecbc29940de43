"""Sigma grids from a ComfyUI model's own model_sampling, for both families (no ComfyUI import here).

Conventions (those of ComfyUI's schedulers): a grid for `steps` steps has steps + 1 values, descending,
ending in 0; the last step is the final denoise. `denoise` < 1 works like ComfyUI's BasicScheduler: build
the grid for int(steps / denoise) steps and keep its last steps + 1 values. Grids are float32 CPU tensors.

Spacings:
- "logSNR uniform": uniform in the half-log-SNR lambda between the model's sigma_max and sigma_min. VE
  models (lambda = -log sigma): log-uniform sigmas. Flow models (lambda = log((1-sigma)/sigma)) have
  lambda = -inf at sigma_max = 1: the grid then starts at 1 - sigma_min (a symmetric lambda range).
- "time uniform" / "time quadratic": uniform in the model's time t, or in sqrt(t) (DPM-Solver's
  time_quadratic), where t in [1/N, 1] indexes the model's own table of N sigmas (`model_sampling.sigmas`,
  ascending): t = (k + 1)/N at entry k, log-sigma interpolated in between (as ComfyUI's discrete models do).
  Discrete VP models: the training timesteps; flow models: the unshifted flow time (the shift is in the table).
- DPM-Solver-fast: an NFE budget N; the orders (3, ..., 3, 2, 1) of the DPM-Solver paper, with step ends laid
  out by the spacing and the intermediate calls of each step at 1/3, 2/3 (third order) or 1/2 (second order) of
  the step in lambda, as in the official DPM-Solver-fast. The core's dpm_solver_fast runs this grid with
  exactly N model calls.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import torch

from ..samplers import resolve_schedule
from ..samplers.plan import fast_orders

SPACINGS = ("logSNR uniform", "time uniform", "time quadratic")


class ScheduleError(ValueError):
    """A schedule that cannot be built; the message names the input."""


def _bounds(model_sampling: Any) -> tuple[float, float]:
    return float(model_sampling.sigma_min), float(model_sampling.sigma_max)


def _lambda_range(model_sampling: Any, family: str) -> tuple[float, float]:
    """(lambda at the start, lambda at the end) of the logSNR-uniform grid."""
    sched = resolve_schedule(family)
    sigma_min, sigma_max = _bounds(model_sampling)
    if not 0.0 < sigma_min < sigma_max:
        raise ScheduleError(f"the model's sigma range [{sigma_min}, {sigma_max}] is not usable")
    lam_lo, lam_hi = sched.lambda_(sigma_max), sched.lambda_(sigma_min)
    if math.isinf(lam_lo):
        if lam_hi <= 0:  # 0 < sigma_min < sigma_max = 1 here, so lam_hi is finite
            raise ScheduleError(f"logSNR uniform needs sigma_min < 0.5 on a flow model, got {sigma_min}")
        lam_lo = -lam_hi
    return lam_lo, lam_hi


def _time_table(model_sampling: Any) -> list[float]:
    table = getattr(model_sampling, "sigmas", None)
    if not isinstance(table, torch.Tensor) or table.dim() != 1 or table.numel() < 2:
        raise ScheduleError("this model has no sigma table (model_sampling.sigmas): use spacing 'logSNR uniform'")
    values = [float(v) for v in table.detach().to("cpu", torch.float64).tolist()]
    if any(b < a for a, b in pairwise(values)) or values[0] <= 0.0:
        raise ScheduleError("the model's sigma table is not ascending and positive: use spacing 'logSNR uniform'")
    return values


def _sigma_at_time(table: list[float], t: float) -> float:
    """Sigma at time t in [1/N, 1]: entry k = t*N - 1 of the table, log-sigma interpolated."""
    n = len(table)
    k = min(max(t * n - 1.0, 0.0), n - 1.0)
    lo = math.floor(k)
    hi = min(lo + 1, n - 1)
    w = k - lo
    return math.exp((1.0 - w) * math.log(table[lo]) + w * math.log(table[hi]))


def _ramp(count: int) -> list[float]:
    return [i / (count - 1) for i in range(count)] if count > 1 else [0.0]


def spaced_points(model_sampling: Any, family: str, spacing: str, count: int) -> list[float]:
    """`count` descending sigmas from the model's sigma_max end to its sigma_min end (no final 0)."""
    if spacing == "logSNR uniform":
        sched = resolve_schedule(family)
        lam_lo, lam_hi = _lambda_range(model_sampling, family)
        return [sched.sigma_at(lam_lo + r * (lam_hi - lam_lo)) for r in _ramp(count)]
    if spacing in ("time uniform", "time quadratic"):
        table = _time_table(model_sampling)
        t_hi, t_lo = 1.0, 1.0 / len(table)
        if spacing == "time uniform":
            times = [t_hi + r * (t_lo - t_hi) for r in _ramp(count)]
        else:
            a, b = math.sqrt(t_hi), math.sqrt(t_lo)
            times = [(a + r * (b - a)) ** 2 for r in _ramp(count)]
        return [_sigma_at_time(table, t) for t in times]
    raise ScheduleError(f"input 'spacing' must be one of {', '.join(SPACINGS)}, got {spacing!r}")


def _as_tensor(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _check_steps(steps: Any, denoise: Any) -> tuple[int, float]:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ScheduleError(f"input 'steps' must be a whole number of at least 1, got {steps!r}")
    if isinstance(denoise, bool) or not isinstance(denoise, int | float) or not 0.0 <= denoise <= 1.0:
        raise ScheduleError(f"input 'denoise' must be between 0 and 1, got {denoise!r}")
    return steps, float(denoise)


def _total_steps(steps: int, denoise: float) -> int:
    """ComfyUI's BasicScheduler rule: the grid of int(steps/denoise) steps, of which the last steps are run."""
    return max(int(steps / denoise), steps)


def schedule_sigmas(model_sampling: Any, family: str, steps: int, spacing: str, denoise: float = 1.0
                    ) -> torch.Tensor:
    """The grid of `steps` steps (steps + 1 values ending in 0) with the given spacing."""
    steps, denoise = _check_steps(steps, denoise)
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)
    total = _total_steps(steps, denoise)
    full = [*spaced_points(model_sampling, family, spacing, total), 0.0]
    return _as_tensor(full[-(steps + 1):])


def _intermediate(family: str, s: float, t: float, fractions: list[float]) -> list[float]:
    sched = resolve_schedule(family)
    lam_s, lam_t = sched.lambda_(s), sched.lambda_(t)
    return [sched.sigma_at(lam_s + r * (lam_t - lam_s)) for r in fractions]


_FRACTIONS: dict[int, list[float]] = {1: [], 2: [0.5], 3: [1.0 / 3.0, 2.0 / 3.0]}


def fast_sigmas(model_sampling: Any, family: str, nfe: int, spacing: str, denoise: float = 1.0) -> torch.Tensor:
    """The DPM-Solver-fast grid for a budget of `nfe` model calls (nfe + 1 values ending in 0).

    The final call is the step to 0; the other nfe - 1 calls follow the DPM-Solver-fast orders over step ends
    spaced by `spacing`, from the sigma where a `spacing` grid with the same denoise would start down to
    sigma_min. A flow grid starting at sigma = 1 (lambda = -inf) takes its first call as a first-order step
    of its own, as the core does.
    """
    nfe, denoise = _check_steps(nfe, denoise)
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)
    sched = resolve_schedule(family)
    total = _total_steps(nfe, denoise)
    start = spaced_points(model_sampling, family, spacing, total)[total - nfe]
    sigma_min = _bounds(model_sampling)[0]
    body_calls = nfe - 1
    if body_calls == 0 or start <= sigma_min:
        return _as_tensor([start, 0.0])
    lead = 1 if math.isinf(sched.lambda_(start)) else 0
    orders = [1] * lead + fast_orders(body_calls - lead)
    ends = _ends_between(model_sampling, family, spacing, start, sigma_min, len(orders) + 1)
    grid = [ends[0]]
    for order, s, t in zip(orders, ends[:-1], ends[1:], strict=True):
        grid += _intermediate(family, s, t, _FRACTIONS[order]) if not math.isinf(sched.lambda_(s)) else []
        grid.append(t)
    grid.append(0.0)
    if len(grid) != nfe + 1:
        raise ScheduleError(f"internal: DPM-Solver-fast grid has {len(grid) - 1} intervals for {nfe} calls")
    return _as_tensor(grid)


def _ends_between(model_sampling: Any, family: str, spacing: str, start: float, stop: float, count: int
                  ) -> list[float]:
    """`count` step ends from `start` to `stop`, spaced like `spacing` (in lambda, t or sqrt(t))."""
    sched = resolve_schedule(family)
    if spacing == "logSNR uniform":
        a, b = sched.lambda_(start), sched.lambda_(stop)
        ends = [sched.sigma_at(a + r * (b - a)) for r in _ramp(count)]
        ends[0], ends[-1] = start, stop
        return ends
    table = _time_table(model_sampling)
    t_a, t_b = _time_of(table, start), _time_of(table, stop)
    if spacing == "time uniform":
        times = [t_a + r * (t_b - t_a) for r in _ramp(count)]
    else:
        a, b = math.sqrt(t_a), math.sqrt(t_b)
        times = [(a + r * (b - a)) ** 2 for r in _ramp(count)]
    ends = [_sigma_at_time(table, t) for t in times]
    ends[0], ends[-1] = start, stop
    return ends


def _time_of(table: list[float], sigma: float) -> float:
    """Inverse of _sigma_at_time on the table's range (log-sigma interpolation)."""
    n = len(table)
    if sigma >= table[-1]:
        return 1.0
    if sigma <= table[0]:
        return 1.0 / n
    log_s = math.log(sigma)
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if table[mid] <= sigma:
            lo = mid
        else:
            hi = mid
    a, b = math.log(table[lo]), math.log(table[hi])  # table[lo] <= sigma < table[hi]
    return (lo + (log_s - a) / (b - a) + 1.0) / n
