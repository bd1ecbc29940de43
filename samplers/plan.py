"""Sampling plans: every solver becomes a list of stages y = a*x + sum_j b_j F_j, built once in float64.

A stage may evaluate the model at y (appending F_j = D or eps to the buffer) and may commit y as the new
state x. Building the whole plan from `sigmas.tolist()` keeps the per-step loop free of host syncs.

Stochastic samplers use the same stages with a noise term `coef * z(sigma_from, sigma_to)` (a standard normal
from the noise source: the Brownian increment between the two sigmas); the Langevin corrector is a stage that
moves x along the score given by an earlier evaluation; the UniC corrector is an ordinary linear stage after
the next evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from .coefficients import (
    Prediction,
    SolverType,
    ThirdOrder,
    exponential_step,
    first_order_data_step,
    sde_noise_std,
)
from .schedules import NoiseSchedule

Kind = Literal["D", "eps"]
CorrectorKind = Literal["none", "unic", "langevin"]


@dataclass(frozen=True)
class Term:
    """coef * (buffer entry `index`, as the data prediction "D" or the noise prediction "eps")."""

    coef: float
    index: int
    kind: Kind


@dataclass(frozen=True)
class Noise:
    """coef * z(sigma_from, sigma_to): z a standard normal from the noise source (the Brownian increment)."""

    coef: float
    sigma_from: float
    sigma_to: float


@dataclass(frozen=True)
class Langevin:
    """Langevin corrector move at the stage's sigma, with the data prediction D of buffer entry `index`:
    x <- x + e*score + s_noise*sqrt(2e)*z, score = (alpha*D - x)/sigma^2, e = 2*(snr*sigma)^2."""

    index: int
    snr: float
    s_noise: float
    iteration: int


@dataclass(frozen=True)
class Stage:
    """y = a*x + sum(terms) [+ noise]; evaluate the model at (y, sigma) if `evaluate`; x <- y if `commit`.

    With `langevin` set, y is instead the Langevin move from x (a = 1, no terms)."""

    a: float
    terms: tuple[Term, ...]
    sigma: float
    alpha: float
    evaluate: bool
    commit: bool
    step: int
    noise: Noise | None = None
    langevin: Langevin | None = None


Program = list[tuple[Stage, tuple[tuple[float, int], ...], tuple[int, ...]]]
"""Per stage: (stage, its terms as (coef, slot), the slots no later stage reads); slot = 2*index + (kind == eps)."""


@dataclass
class Plan:
    """Stages plus bookkeeping: which predictions each evaluation must keep, and until which stage."""

    stages: list[Stage] = field(default_factory=list)
    kinds: list[set[Kind]] = field(default_factory=list)
    last_use: list[int] = field(default_factory=list)
    _program: Program | None = field(default=None, init=False, repr=False, compare=False)

    def program(self) -> Program:
        """The stages with buffer slots resolved and the releases after each stage, built once (a finished plan
        is not modified: the driver runs this form)."""
        if self._program is None:
            releases: list[list[int]] = [[] for _ in self.stages]
            for index, last in enumerate(self.last_use):
                releases[last] += [2 * index, 2 * index + 1]
            self._program = [(stage, tuple((t.coef, 2 * t.index + (t.kind == "eps")) for t in stage.terms),
                              tuple(freed)) for stage, freed in zip(self.stages, releases, strict=True)]
        return self._program

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
        step: int, *, evaluate: bool, commit: bool, noise: Noise | None = None,
    ) -> int | None:
        """Add a stage y = a x + sum terms [+ noise]; evaluate and/or commit it. Returns the new buffer index."""
        stage_index = len(self.stages)
        made = tuple(Term(c, j, kind) for c, j, kind in terms)
        for term in made:
            self.kinds[term.index].add(term.kind)
            self.last_use[term.index] = stage_index
        self.stages.append(Stage(a, made, sigma, alpha, evaluate, commit, step, noise))
        if not evaluate:
            return None
        self.kinds.append({"D"})
        self.last_use.append(stage_index)
        return len(self.kinds) - 1

    def langevin(self, index: int, sigma: float, alpha: float, step: int, move: Langevin) -> None:
        """Add a committed Langevin corrector move using the data prediction of buffer entry `index`."""
        self.last_use[index] = len(self.stages)
        self.stages.append(Stage(1.0, (), sigma, alpha, False, True, step, None, move))

    @property
    def stochastic(self) -> bool:
        """True when some stage draws noise."""
        return any(st.noise is not None or st.langevin is not None for st in self.stages)

    def noise_times(self) -> tuple[list[tuple[float, float]], list[tuple[float, int]]]:
        """(increments, Langevin points) the stages draw, for the noise source to prepare in one go."""
        increments = [(st.noise.sigma_from, st.noise.sigma_to) for st in self.stages if st.noise is not None]
        points = [(st.sigma, st.langevin.iteration) for st in self.stages if st.langevin is not None]
        return increments, points


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


Coefs = tuple[float, list[tuple[float, int, Kind]], float]
"""(a, terms, noise std) of one update from s to t."""


def _data_coefs(s: Point, t: Point, j: int, eta: float) -> Coefs:
    """First-order D-form update (the one that stays finite at lambda = -inf or +inf).

    With eta > 0 from alpha = 0 (flow sigma = 1, h = inf) the SDE keeps none of x: x_t = alpha_t D + sigma_t z.
    """
    if eta > 0.0 and math.isinf(s.lam) and t.sigma > 0.0:
        return 0.0, [(t.alpha, j, "D")], t.sigma
    a, b = first_order_data_step(s.alpha, s.sigma, t.alpha, t.sigma)
    return a, ([(b, j, "D")] if b != 0.0 else []), 0.0


def _exp_coefs(
    s: Point, t: Point, nodes: Sequence[tuple[int, float]], prediction: Prediction,
    solver_type: SolverType, third_order: ThirdOrder, eta: float = 0.0,
) -> Coefs:
    """Update from s to t using predictions at `nodes` = [(buffer index, lambda)], node 0 at s."""
    a, b = exponential_step(
        s.alpha, s.sigma, t.alpha, t.sigma, s.lam, t.lam, [lam for _, lam in nodes], prediction,
        solver_type, third_order, eta,
    )
    kind: Kind = "D" if prediction == "data" else "eps"
    terms = [(coef, j, kind) for coef, (j, _) in zip(b, nodes, strict=True)]
    return a, terms, sde_noise_std(t.sigma, t.lam - s.lam, eta)


def _add(plan: Plan, coefs: Coefs, s: Point, t: Point, step: int, *, evaluate: bool, commit: bool,
         s_noise: float, scale: float = 1.0) -> int | None:
    """Append the stage of `coefs` (all coefficients times `scale`; noise std times s_noise, drawn over s -> t)."""
    a, terms, std = coefs
    if scale != 1.0:
        a, terms = a * scale, [(c * scale, j, kind) for c, j, kind in terms]
    noise = Noise(std * s_noise, s.sigma, t.sigma) if std * s_noise != 0.0 else None
    return plan.combine(a, terms, t.sigma, t.alpha, step, evaluate=evaluate, commit=commit, noise=noise)


def _data_step(plan: Plan, s: Point, t: Point, j: int, step: int, *, commit: bool, evaluate: bool,
               eta: float, s_noise: float) -> int | None:
    return _add(plan, _data_coefs(s, t, j, eta), s, t, step, evaluate=evaluate, commit=commit, s_noise=s_noise)


def _exp_stage(
    plan: Plan, s: Point, t: Point, nodes: Sequence[tuple[int, float]], prediction: Prediction, step: int,
    *, solver_type: SolverType, third_order: ThirdOrder, evaluate: bool, commit: bool, eta: float, s_noise: float,
) -> int | None:
    """Stage from s to t using predictions at `nodes` = [(buffer index, lambda)], node 0 at s."""
    coefs = _exp_coefs(s, t, nodes, prediction, solver_type, third_order, eta)
    return _add(plan, coefs, s, t, step, evaluate=evaluate, commit=commit, s_noise=s_noise)


def step_orders(order: int, n_steps: int, lower_order_final: bool) -> list[int]:
    """Order of each step: `order`, or with lower_order_final the last step 1, the one before at most 2, ..."""
    return [min(order, n_steps - i) if lower_order_final else order for i in range(n_steps)]


@dataclass(frozen=True)
class Corrector:
    """What follows each multistep predictor step: nothing, UniC (a linear stage after the next model call) or
    `steps` Langevin moves (one model call each) with the given signal-to-noise ratio."""

    kind: CorrectorKind
    steps: int
    snr: float
    s_noise: float


def _unic_stage(plan: Plan, s: Point, t: Point, nodes: Sequence[tuple[int, float]], predicted: Coefs, j: int,
                prediction: Prediction, step: int) -> None:
    """UniC: redo the step s -> t with the polynomial through the predictor's nodes and the new output j at t.

    The predicted and corrected updates share a*x_s, so the correction is x_t += sum_j (b_corr - b_pred) F_j:
    a linear stage on the committed x_t, with no extra model call. Exact weights (phi_k) for len(nodes)+1 nodes.
    """
    corrected = _exp_coefs(s, t, [nodes[0], (j, t.lam), *nodes[1:]], prediction, "taylor", "consistent")
    delta: dict[tuple[int, Kind], float] = {}
    for coef, index, kind in corrected[1]:
        delta[(index, kind)] = delta.get((index, kind), 0.0) + coef
    for coef, index, kind in predicted[1]:
        delta[(index, kind)] -= coef  # the corrected step's nodes include every node of the predicted one
    terms = [(coef, index, kind) for (index, kind), coef in delta.items() if coef != 0.0]
    plan.combine(1.0, terms, t.sigma, t.alpha, step, evaluate=False, commit=True)


HISTORY_RATIO_MIN = 0.005
"""Where the state moves between model calls by more than the ODE (SDE noise, a corrector), an earlier call closer
than this fraction of the current step h (in lambda) to the next newer one is left out of the step: its difference
to that one is the state's jump, not a derivative, and the multistep weights multiply it by about 1/ratio (a
1e-5-long step before a step of 1 took DPM-Solver++ PC's error from 0.09 to 9). Standard grids stay above 0.018
(ComfyUI's linear_quadratic at 6 steps; tests/test_pc.py)."""


def _reliable(nodes: list[tuple[int, float]], h: float) -> list[tuple[int, float]]:
    """`nodes` (newest first) up to the first one closer than HISTORY_RATIO_MIN * h to its newer neighbour."""
    kept = nodes[:1]
    for node in nodes[1:]:
        if kept[-1][1] - node[1] < HISTORY_RATIO_MIN * h:
            break
        kept.append(node)
    return kept


def multistep_plan(
    schedule: NoiseSchedule, grid: Sequence[float], order: int, prediction: Prediction,
    solver_type: SolverType, third_order: ThirdOrder, lower_order_final: bool,
    eta: float = 0.0, s_noise: float = 1.0, corrector: Corrector | None = None,
) -> Plan:
    """Multistep DPM-Solver(++): one model call per step, warm-up at lower order, history reused.

    `grid` is strictly decreasing. Predictions at alpha = 0 (lambda = -inf) never enter a finite difference.
    eta > 0 makes each step the SDE step (data prediction; noise drawn over the step). A `corrector` runs after
    every predictor step: UniC once the next model call is made (skipped where the next step is the final
    denoise, which would discard it), Langevin moves at every sigma > 0 a predictor step lands on.
    """
    plan = Plan()
    points = [Point.at(schedule, s) for s in grid]
    caps = step_orders(order, len(points) - 1, lower_order_final)
    kind = corrector.kind if corrector is not None else "none"
    history: list[tuple[int, float]] = []
    last: tuple[Point, Point, list[tuple[int, float]], Coefs] | None = None
    for i, (s, t) in enumerate(pairwise(points)):
        j = plan.evaluate(s.sigma, s.alpha, i)
        if last is not None and not _is_exceptional(s, t):
            _unic_stage(plan, last[0], last[1], last[2], last[3], j, prediction, i)
        last = None
        history = [node for node in history if math.isfinite(node[1])] + [(j, s.lam)]
        if _is_exceptional(s, t):
            _data_step(plan, s, t, j, i, commit=True, evaluate=False, eta=eta, s_noise=s_noise)
        else:
            k = min(order, len(history), caps[i])
            nodes = list(reversed(history[-k:]))
            if eta > 0.0 or kind != "none":
                nodes = _reliable(nodes, t.lam - s.lam)
            coefs = _exp_coefs(s, t, nodes, prediction, solver_type, third_order, eta)
            _add(plan, coefs, s, t, i, evaluate=False, commit=True, s_noise=s_noise)
            if kind == "unic":
                last = (s, t, nodes, coefs)
            history = history[-(order - 1):] if order > 1 else []
        if kind == "langevin" and t.sigma > 0.0:
            assert corrector is not None
            for iteration in range(corrector.steps):
                jj = plan.evaluate(t.sigma, t.alpha, i)
                plan.langevin(jj, t.sigma, t.alpha, i, Langevin(jj, corrector.snr, corrector.s_noise, iteration))
    return plan


def singlestep_plan(
    schedule: NoiseSchedule, grid: Sequence[float], orders: Sequence[int], prediction: Prediction,
    solver_type: SolverType, inner: Sequence[Sequence[float]],
    eta: float = 0.0, s_noise: float = 1.0, down: Sequence[float] | None = None,
) -> Plan:
    """Singlestep DPM-Solver(++) over the intervals of `grid`: step i has order orders[i] (k model calls).

    inner[i] lists the intermediate sigmas of step i (orders[i] - 1 of them, strictly between its ends).
    Order 3 "dpmsolver" ends with the first difference at r2 (DPM-Solver-3); "taylor" uses all three nodes.

    eta > 0 without `down`: SDE steps (data prediction), every stage drawing its noise over its own interval
    from the step's start, so the intermediate and final noises come from one Brownian path. With `down`
    (ancestral): the deterministic step goes from s to down[i] (inner[i] lies between them), then
    x_t = (alpha_t/alpha_d) x_d + sigma_t sqrt(1 - e^(-2 eta h)) z, which keeps x = alpha x0 + sigma eps.
    """
    plan = Plan()
    points = [Point.at(schedule, s) for s in grid]
    step_eta = 0.0 if down is not None else eta
    for i, (s, t) in enumerate(pairwise(points)):
        j0 = plan.evaluate(s.sigma, s.alpha, i)
        order = orders[i]
        d = t if down is None else Point.at(schedule, down[i])

        def finish(coefs: Coefs, s: Point = s, t: Point = t, d: Point = d, i: int = i) -> None:
            if down is None:
                _add(plan, coefs, s, t, i, evaluate=False, commit=True, s_noise=s_noise)
            else:
                std = sde_noise_std(t.sigma, t.lam - s.lam, eta)
                _add(plan, (coefs[0], coefs[1], std), s, t, i, evaluate=False, commit=True, s_noise=s_noise,
                     scale=t.alpha / d.alpha)

        if _is_exceptional(s, d) or order == 1:
            if _is_exceptional(s, d):
                finish(_data_coefs(s, d, j0, step_eta))
            else:
                finish(_exp_coefs(s, d, [(j0, s.lam)], prediction, "taylor", "consistent", step_eta))
            continue
        mids = [Point.at(schedule, sigma) for sigma in inner[i]]
        nodes = [(j0, s.lam)]
        for mid in mids:
            j = _exp_stage(plan, s, mid, nodes, prediction, i, solver_type="taylor", third_order="consistent",
                           evaluate=True, commit=False, eta=step_eta, s_noise=s_noise)
            assert j is not None
            nodes.append((j, mid.lam))
        if order == 3 and solver_type == "dpmsolver":
            nodes = [nodes[0], nodes[2]]
            final_type: SolverType = "taylor"
        else:
            final_type = solver_type
        finish(_exp_coefs(s, d, nodes, prediction, final_type, "consistent", step_eta))
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
