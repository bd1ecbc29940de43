"""DPM-Solver inversion: the data-prediction multistep solver run upwards in sigma, from ~0 to a target sigma.

x(sigma_min) = alpha(sigma_min) x0 is taken as the noise-free start; the probability-flow ODE is integrated with
DPM-Solver++ multistep steps on a grid uniform in half-log-SNR (the exponential-integrator weights of
samplers/coefficients.py hold for steps with h < 0), and the result is returned as the noise
eps = (x_sigma - alpha x0)/sigma that it implies. Running DPM-Solver++ of the same order back down the same grid
returns to alpha(sigma_min) x0 up to the two solvers' discretisation errors (SDI's "DDIM inversion", higher order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .driver import Model, ModelCaller, combine, working_dtype
from .plan import Plan, multistep_plan
from .progress import progress_bar
from .schedules import NoiseSchedule, resolve_schedule

INVERSION_LAMBDA_MIN = 3.5
"""Half-log-SNR of the inversion's start: sigma/alpha = e^-3.5 ~ 0.030 (Stable Diffusion's smallest sigma)."""

Evaluate = Callable[[torch.Tensor, float, int], torch.Tensor]
"""(y, sigma, stage index) -> data prediction D(y, sigma) in the working dtype."""


def inversion_grid(sigma: float, schedule: NoiseSchedule, steps: int, sigma_min: float | None = None) -> list[float]:
    """Increasing sigmas from the start to `sigma`, uniform in half-log-SNR (`steps` intervals).

    The start is `sigma_min`, by default the sigma at lambda = INVERSION_LAMBDA_MIN, or one unit of lambda below
    `sigma` when that is smaller. Where alpha(sigma) = 0 (flow sigma = 1, lambda = -inf) the grid is uniform up
    to the mirror image lambda = -lambda_start and its last step is the first-order limit to alpha = 0.
    """
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1):
        raise ValueError(f"inversion steps must be an integer >= 1, got {steps!r}")
    if not (math.isfinite(sigma) and 0.0 < sigma <= schedule.sigma_max):
        raise ValueError(f"inversion target sigma must be in (0, {schedule.sigma_max}], got {sigma}")
    lam_top = schedule.lambda_(sigma)
    if sigma_min is None:
        lam_low = max(INVERSION_LAMBDA_MIN, lam_top + 1.0) if math.isfinite(lam_top) else INVERSION_LAMBDA_MIN
    else:
        if not (math.isfinite(sigma_min) and 0.0 < sigma_min < sigma):
            raise ValueError(f"inversion sigma_min must be in (0, sigma={sigma}), got {sigma_min}")
        lam_low = schedule.lambda_(sigma_min)
    if math.isfinite(lam_top):
        lams = [lam_low + (lam_top - lam_low) * k / steps for k in range(steps)]
        return [schedule.sigma_at(lam) for lam in lams] + [sigma]
    inner = [lam_low - 2.0 * lam_low * k / (steps - 1) for k in range(steps)] if steps > 1 else [lam_low]
    return [schedule.sigma_at(lam) for lam in inner] + [sigma]


def inversion_plan(grid: list[float], schedule: NoiseSchedule, order: int) -> Plan:
    """DPM-Solver++ multistep (data prediction, 'dpmsolver' weights, no lowered final order) along `grid`."""
    if order not in (1, 2, 3):
        raise ValueError(f"inversion order must be 1, 2 or 3, got {order!r}")
    return multistep_plan(schedule, grid, order, "data", "dpmsolver", "reference", False)


def run_inversion(evaluate: Evaluate, x0: torch.Tensor, plan: Plan, schedule: NoiseSchedule, sigma: float
                  ) -> torch.Tensor:
    """eps with alpha x0 + sigma eps = the state the plan reaches from alpha(start) x0 (x0 in the working dtype);
    the stages are combined as the driver combines them, and each prediction is freed after its last use."""
    state = x0 * schedule.alpha(plan.stages[0].sigma)
    slots: list[torch.Tensor | None] = [None] * (2 * plan.nfe)  # slot 2j: D of call j (the plan reads no eps)
    calls = 0
    for stage, terms, released in plan.program():
        y = combine(state, stage.a, terms, slots)
        if stage.evaluate:
            slots[2 * calls] = evaluate(y, stage.sigma, stage.step)
            calls += 1
        if stage.commit:
            state = y
        for slot in released:
            slots[slot] = None
    return (state - x0 * schedule.alpha(sigma)) / sigma


def invert(model: Model, x0: torch.Tensor, sigma: float, schedule: NoiseSchedule | str,
           extra_args: dict[str, Any] | None = None, *, steps: int = 4, order: int = 2,
           sigma_min: float | None = None) -> torch.Tensor:
    """eps such that x_sigma = alpha x0 + sigma eps is the DPM-Solver++ (order `order`, `steps` model calls)
    inversion of x0 from ~0 (sigma_min, see `inversion_grid`) up to `sigma`.

    Runs under torch.inference_mode(); model outputs are checked for NaN/inf like a sampler's. Returns x0's dtype.
    """
    sched = resolve_schedule(schedule)
    grid = inversion_grid(float(sigma), sched, steps, sigma_min)
    plan = inversion_plan(grid, sched, order)
    with torch.inference_mode(), progress_bar(total=plan.nfe, disable=True) as bar:
        caller = ModelCaller(model, x0, extra_args=extra_args, callback=None, bar=bar, total=plan.nfe,
                             sigma_dtype=working_dtype(x0.dtype))

        def evaluate(y: torch.Tensor, s: float, step: int) -> torch.Tensor:
            return caller(y, caller.sigma_tensor(s), s, step)

        eps = run_inversion(evaluate, x0.to(caller.work), plan, sched, float(sigma)).to(x0.dtype)
        caller.finish(eps)
    return ordinary(eps)


def ordinary(t: torch.Tensor) -> torch.Tensor:
    """A result made under inference mode, as an ordinary tensor when the caller is outside it (so that the
    caller may modify it in place or use it with autograd); unchanged inside inference mode."""
    return t if torch.is_inference_mode_enabled() else t.clone()
