"""Sampling plans: every solver becomes a list of stages y = a*x + sum_j b_j F_j, built once in float64.

A stage may evaluate the model at y (appending F_j = D or eps to the buffer) and may commit y as the new
state x. Building the whole plan from `sigmas.tolist()` keeps the per-step loop free of host syncs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from .coefficients import Prediction, SolverType, ThirdOrder, exponential_step, first_order_data_step
from .schedules import NoiseSchedule

Kind = Literal["D", "eps"]


@dataclass(frozen=True)
class Term:
    """coef * (buffer entry `index`, as the data prediction "D" or the noise prediction "eps")."""

    coef: float
    index: int
    kind: Kind


@dataclass(frozen=True)
class Stage:
    """y = a*x + sum(terms); evaluate the model at (y, sigma) if `evaluate`; x <- y if `commit`."""

    a: float
    terms: tuple[Term, ...]
    sigma: float
    alpha: float
    evaluate: bool
    commit: bool
    step: int


@dataclass
class Plan:
    """Stages plus bookkeeping: which predictions each evaluation must keep, and until which stage."""

    stages: list[Stage] = field(default_factory=list)
    kinds: list[set[Kind]] = field(default_factory=list)
    last_use: list[int] = field(default_factory=list)

    @property
    def nfe(self) -> int:
        """Number of model calls the plan makes."""
        return len(self.kinds)

    def evaluate(self, sigma: float, alpha: float, step: int) -> int:
        """Add a model call at the current state x; return its buffer index."""
        self.stages.append(Stage(1.0, (), sigma, alpha, True, False, step))
        self.kinds.append({"D"})
        self.last_use.append(len(self.stages) - 1)
        return len(self.kinds) - 1

    def combine(
        self, a: float, terms: Sequence[tuple[float, int, Kind]], sigma: float, alpha: float,
        step: int, *, evaluate: bool, commit: bool,
    ) -> int | None:
        """Add a stage y = a x + sum terms; evaluate and/or commit it. Returns the new buffer index, if any."""
        stage_index = len(self.stages)
        made = tuple(Term(c, j, kind) for c, j, kind in terms)
        for term in made:
            self.kinds[term.index].add(term.kind)
            self.last_use[term.index] = stage_index
        self.stages.append(Stage(a, made, sigma, alpha, evaluate, commit, step))
        if not evaluate:
            return None
        self.kinds.append({"D"})
        self.last_use.append(stage_index)
        return len(self.kinds) - 1


@dataclass(frozen=True)
class Point:
    """A sigma with its alpha and half-log-SNR lambda under the schedule."""

    sigma: float
    alpha: float
    lam: float

    @classmethod
    def at(cls, schedule: NoiseSchedule, sigma: float) -> Point:
        return cls(sigma, schedule.alpha(sigma), schedule.lambda_(sigma))


def _is_exceptional(s: Point, t: Point) -> bool:
    """Steps from alpha = 0 or to sigma = 0 span an infinite lambda interval: only the D-form DDIM step applies."""
    return math.isinf(s.lam) or math.isinf(t.lam)


def _data_step(plan: Plan, s: Point, t: Point, j: int, step: int, *, commit: bool, evaluate: bool) -> int | None:
    a, b = first_order_data_step(s.alpha, s.sigma, t.alpha, t.sigma)
    terms = [(b, j, "D")] if b != 0.0 else []
    return plan.combine(a, terms, t.sigma, t.alpha, step, evaluate=evaluate, commit=commit)


def _exp_stage(
    plan: Plan, s: Point, t: Point, nodes: Sequence[tuple[int, float]], prediction: Prediction, step: int,
    *, solver_type: SolverType, third_order: ThirdOrder, evaluate: bool, commit: bool,
) -> int | None:
    """Stage from s to t using predictions at `nodes` = [(buffer index, lambda)], node 0 at s."""
    a, b = exponential_step(
        s.alpha, s.sigma, t.alpha, t.sigma, s.lam, t.lam, [lam for _, lam in nodes], prediction,
        solver_type, third_order,
    )
    kind: Kind = "D" if prediction == "data" else "eps"
    terms = [(coef, j, kind) for coef, (j, _) in zip(b, nodes, strict=True)]
    return plan.combine(a, terms, t.sigma, t.alpha, step, evaluate=evaluate, commit=commit)


def step_orders(order: int, n_steps: int, lower_order_final: bool) -> list[int]:
    """Order of each step: `order`, or with lower_order_final the last step 1, the one before at most 2, ..."""
    return [min(order, n_steps - i) if lower_order_final else order for i in range(n_steps)]


def multistep_plan(
    schedule: NoiseSchedule, grid: Sequence[float], order: int, prediction: Prediction,
    solver_type: SolverType, third_order: ThirdOrder, lower_order_final: bool,
) -> Plan:
    """Multistep DPM-Solver(++): one model call per step, warm-up at lower order, history reused.

    `grid` is strictly decreasing. Predictions at alpha = 0 (lambda = -inf) never enter a finite difference.
    """
    plan = Plan()
    points = [Point.at(schedule, s) for s in grid]
    caps = step_orders(order, len(points) - 1, lower_order_final)
    history: list[tuple[int, float]] = []
    for i, (s, t) in enumerate(pairwise(points)):
        j = plan.evaluate(s.sigma, s.alpha, i)
        history = [node for node in history if math.isfinite(node[1])] + [(j, s.lam)]
        if _is_exceptional(s, t):
            _data_step(plan, s, t, j, i, commit=True, evaluate=False)
            continue
        k = min(order, len(history), caps[i])
        nodes = list(reversed(history[-k:]))
        _exp_stage(plan, s, t, nodes, prediction, i, solver_type=solver_type, third_order=third_order,
                   evaluate=False, commit=True)
        history = history[-(order - 1):] if order > 1 else []
    return plan


def singlestep_plan(
    schedule: NoiseSchedule, grid: Sequence[float], orders: Sequence[int], prediction: Prediction,
    solver_type: SolverType, inner: Sequence[Sequence[float]],
) -> Plan:
    """Singlestep DPM-Solver(++) over the intervals of `grid`: step i has order orders[i] (k model calls).

    inner[i] lists the intermediate sigmas of step i (orders[i] - 1 of them, strictly between its ends).
    Order 3 "dpmsolver" ends with the first difference at r2 (DPM-Solver-3); "taylor" uses all three nodes.
    """
    plan = Plan()
    points = [Point.at(schedule, s) for s in grid]
    for i, (s, t) in enumerate(pairwise(points)):
        j0 = plan.evaluate(s.sigma, s.alpha, i)
        order = orders[i]
        if _is_exceptional(s, t) or order == 1:
            if _is_exceptional(s, t):
                _data_step(plan, s, t, j0, i, commit=True, evaluate=False)
            else:
                _exp_stage(plan, s, t, [(j0, s.lam)], prediction, i, solver_type="taylor",
                           third_order="consistent", evaluate=False, commit=True)
            continue
        mids = [Point.at(schedule, sigma) for sigma in inner[i]]
        nodes = [(j0, s.lam)]
        for mid in mids:
            j = _exp_stage(plan, s, mid, nodes, prediction, i, solver_type="taylor", third_order="consistent",
                           evaluate=True, commit=False)
            assert j is not None
            nodes.append((j, mid.lam))
        if order == 3 and solver_type == "dpmsolver":
            nodes = [nodes[0], nodes[2]]
            final_type: SolverType = "taylor"
        else:
            final_type = solver_type
        _exp_stage(plan, s, t, nodes, prediction, i, solver_type=final_type, third_order="consistent",
                   evaluate=False, commit=True)
    return plan


def fast_orders(n_calls: int) -> list[int]:
    """DPM-Solver-fast order schedule for an NFE budget N: K = N//3 + 1 steps, orders summing to N.

    N % 3 == 0: [3]*(K-2) + [2, 1]; otherwise [3]*(K-1) + [N % 3].
    """
    if n_calls <= 0:
        return []
    k = n_calls // 3 + 1
    if n_calls % 3 == 0:
        return [3] * (k - 2) + [2, 1]
    return [3] * (k - 1) + [n_calls % 3]
