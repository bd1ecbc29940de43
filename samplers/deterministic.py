"""The DPM-Solver family as plans: singlestep, multistep and DPM-Solver-fast, and their SDE, ancestral and
predictor-corrector variants (the same plans with noise terms or corrector stages).

Steps to sigma = 0 are the denoise x <- D; steps from alpha = 0 (flow sigma = 1) are the exact DDIM limit
x <- sigma_t x + alpha_t D. Everything else is an exponential integrator in lambda (see coefficients.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from .coefficients import Prediction
from .plan import Corrector, Plan, fast_orders, multistep_plan, singlestep_plan, step_orders
from .schedules import NoiseSchedule

LOWER_ORDER_FINAL_BELOW = 5
"""lower_order_final='auto' turns on for multistep grids with fewer steps than this, and never for singlestep
samplers. The benchmark's defaults study (docs/bench.md) finds it helps multistep only at 4 steps or fewer
(the final step to sigma = 0 is already the first-order denoise) and costs singlestep 1.2-2x at every length."""


@dataclass(frozen=True)
class SolverSpec:
    """Which member of the family: step structure, order and what the model output is expanded as."""

    structure: Literal["singlestep", "multistep", "fast", "adaptive"]
    order: int
    prediction: Prediction
    noise: Literal["none", "sde", "ancestral"] = "none"
    """"sde": every step is the SDE step (eta option); "ancestral": deterministic step down, then fresh noise."""
    corrector: bool = False
    """Multistep predictor with a selectable order and corrector (predictor-corrector sampler)."""

    @property
    def options(self) -> tuple[str, ...]:
        common = ("schedule", "thresholding", "threshold_quantile", "threshold_max")
        if self.structure == "adaptive":
            return (*common, "order", "rtol", "atol", "h_init", "theta", "controller", "max_nfe", "info")
        if self.structure == "fast":
            return (*common, "solver_type")
        noise = ("eta", "s_noise", "noise_sampler", "seed") if self.noise != "none" else ()
        if self.order == 1:
            return common + noise
        extra: tuple[str, ...] = ("solver_type", "lower_order_final")
        if self.structure == "singlestep":
            extra += ("r1",) if self.order == 2 else ("r1", "r2")
        elif self.order == 3 or self.corrector:
            extra += ("third_order",)
        if self.corrector:
            extra += ("order", "corrector", "corrector_steps", "snr", "s_noise", "seed")
        return common + extra + noise


def wants_lower_order_final(setting: bool | None, n_steps: int, structure: str) -> bool:
    """Resolve lower_order_final: explicit True/False, or 'auto' (None): multistep grids shorter than
    LOWER_ORDER_FINAL_BELOW steps."""
    if setting is not None:
        return setting
    return structure == "multistep" and n_steps < LOWER_ORDER_FINAL_BELOW


def intermediate_fractions(order: int, r1: float | None, r2: float | None) -> list[float]:
    """The r's of a singlestep step: 1/2 for order 2, (1/3, 2/3) for order 3 unless given."""
    if order == 2:
        return [0.5 if r1 is None else r1]
    if order == 3:
        first = 1.0 / 3.0 if r1 is None else r1
        second = 2.0 / 3.0 if r2 is None else r2
        if not first < second:
            raise ValueError(f"options r1 < r2 are required for third order, got r1={first}, r2={second}")
        return [first, second]
    return []


def build_plan(spec: SolverSpec, grid: list[float], schedule: NoiseSchedule, opts: dict[str, Any]) -> Plan:
    """The plan of `spec` over a strictly decreasing grid with validated options."""
    n_steps = len(grid) - 1
    solver_type = opts.get("solver_type", "dpmsolver")
    eta = opts.get("eta", 0.0) if spec.noise != "none" else 0.0
    s_noise = opts.get("s_noise", 1.0)
    if spec.structure == "multistep":
        low = wants_lower_order_final(opts.get("lower_order_final"), n_steps, spec.structure)
        corrector = None
        if spec.corrector:
            corrector = Corrector(opts["corrector"], opts["corrector_steps"], opts["snr"], s_noise)
        return multistep_plan(schedule, grid, opts.get("order", spec.order), spec.prediction, solver_type,
                              opts.get("third_order", "reference"), low, eta, s_noise, corrector)
    if spec.structure == "singlestep":
        low = spec.order > 1 and wants_lower_order_final(opts.get("lower_order_final"), n_steps, spec.structure)
        orders = step_orders(spec.order, n_steps, low)
        down = ancestral_targets(schedule, grid, eta) if spec.noise == "ancestral" else None
        inner = []
        for i, (order, s) in enumerate(zip(orders, grid[:-1], strict=True)):
            lam_s, lam_t = schedule.lambda_(s), schedule.lambda_(grid[i + 1] if down is None else down[i])
            fractions = intermediate_fractions(order, opts.get("r1"), opts.get("r2"))
            inner.append([schedule.sigma_at(lam_s + r * (lam_t - lam_s)) for r in fractions])
        if spec.noise == "ancestral":
            return singlestep_plan(schedule, grid, orders, spec.prediction, solver_type, inner, eta, s_noise, down)
        return singlestep_plan(schedule, grid, orders, spec.prediction, solver_type, inner, eta, s_noise)
    return _fast_plan(spec, grid, schedule, solver_type)


def ancestral_targets(schedule: NoiseSchedule, grid: list[float], eta: float) -> list[float]:
    """sigma_down of each step s -> t: the sigma at lambda_t + eta*h (h = lambda_t - lambda_s).

    With x/alpha in VE form (sigma/alpha = e^-lambda) the split is sigma_down/alpha_down = e^(-eta h) sigma_t/alpha_t
    and sigma_up/alpha_t = sqrt(1 - e^(-2 eta h)) sigma_t/alpha_t: the ancestral step then has the same noise and
    first-order decay as the SDE step with the same eta. eta = 0 gives sigma_t itself; steps to 0 or from
    alpha = 0 (h infinite) go down to 0 when eta > 0.
    """
    out = []
    for s, t in pairwise(grid):
        if eta == 0.0:
            out.append(t)
            continue
        lam_s, lam_t = schedule.lambda_(s), schedule.lambda_(t)
        if math.isinf(lam_s) or math.isinf(lam_t):
            out.append(0.0)
            continue
        out.append(schedule.sigma_at(lam_t + eta * (lam_t - lam_s)))
    return out


def _fast_plan(spec: SolverSpec, grid: list[float], schedule: NoiseSchedule, solver_type: Any) -> Plan:
    """DPM-Solver-fast: the order schedule for N = number of intervals, each step spanning `order` intervals
    whose inner grid points are its intermediate points. A first interval from alpha = 0 and a final
    interval to 0 are single first-order calls."""
    ends_at_zero = grid[-1] == 0.0
    body = grid[:-1] if ends_at_zero else grid
    starts_at_pure_noise = len(body) > 1 and schedule.lambda_(body[0]) == -math.inf
    lead = [1] if starts_at_pure_noise else []
    orders = lead + fast_orders(len(body) - 1 - len(lead))
    outer, inner, at = [body[0]], [], 0
    for order in orders:
        inner.append(body[at + 1:at + order])
        at += order
        outer.append(body[at])
    if ends_at_zero:
        outer.append(0.0)
        orders.append(1)
        inner.append([])
    return singlestep_plan(schedule, outer, orders, spec.prediction, solver_type, inner)
