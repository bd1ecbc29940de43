"""Learned plans: a multistep sampler's grid plus per-stage coefficient corrections and per-call sigma shifts,
fitted by gradient descent on the user's own (differentiable) model.

A deterministic multistep plan is a chain of linear stages y = a*x + sum_j b_j F_j (F_j = D_j or eps_j, see
samplers/plan.py), each model call made at its stage's sigma. A learned plan keeps the structure and changes

    b_j -> b_j + c_j   with sum_j c_j = 0 over the D terms and over the eps terms of each stage,
    sigma -> sigma * exp(tau)   for the sigma the model is called at (alpha = alpha(sigma) follows),

so constant predictions are still integrated exactly (first order is kept); a stage with one term of a kind keeps
its coefficient. Optionally (learn_grid) the grid's interior sigmas move as well, ends fixed, and (history=K) every
committed stage also reads the D and eps of the K newest model calls, extra terms starting at 0 (`widen`). c, tau
(and the grid) minimise, on calibration noises, E = RMS(plan(model, x_T) - reference) (objective "rmse", held by the
worst trajectories) or E = the mean over noises of each one's RMS error (objective "mean", the typical sample), by
Adam through a float64 re-implementation of the plan's recursion (torch autograd through the model; through the plan
builder by a finite-difference Jacobian). The result is saved as a safetensors file next to the calibrated-grid
files of samplers/calibrate.py (same conventions), and sampled with through the multistep entries' `learned_plan=`
option, which checks that it fits the call.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .calibrate import CalibrationError, check_grid, grid_from_theta, reference_solution, theta_from_grid
from .options import parse_options
from .plan import Kind, Plan, Stage, Term
from .schedules import NoiseSchedule, resolve_schedule
from .tensorfile import read_tensors, write_tensors

FORMAT = "dpm-solver-learned-plan"
FORMAT_VERSION = 1
LEARN_STEPS = 600
LEARN_RATE = 2e-2
RUN_ONLY = frozenset({"seed", "noise_sampler"})
"""Options a learned plan does not record (hosts set the seed per run; deterministic plans draw no noise)."""
OBJECTIVES = ("rmse", "mean")
"""What learn_plan minimises: the RMS error over all noises, or the mean of the per-noise RMS errors."""
GRID_RTOL = 1e-5
"""Relative tolerance between the grid a learned plan is used on and the grid it was learned on (hosts may
pass float32 sigmas)."""

Model = Callable[..., torch.Tensor]


class LearnedPlanError(CalibrationError):
    """A learned plan does not fit the call it is used in, or a learned-plan file is not what was expected."""


@dataclass(frozen=True)
class LearnedPlan:
    """A grid and the corrections learned for one sampler on it (hashable: it is part of the plan cache's key)."""

    sigmas: tuple[float, ...]
    """The grid (descending, usually ending at 0) the corrections were learned on."""
    sampler: str
    schedule: str
    options: tuple[tuple[str, Any], ...]
    """The sampler options the plan was learned with (sorted pairs, defaults included, schedule left out); a call
    must use the same values."""
    terms: tuple[int, ...]
    """Number of terms of every stage of the plan (its layout; a call must build the same one)."""
    corrections: tuple[float, ...]
    """c: added to the coefficients of all terms, stage by stage, in plan order."""
    shifts: tuple[float, ...]
    """tau: log-sigma shift of every model call."""
    objective_before: float
    objective_after: float
    info: tuple[tuple[str, str], ...] = ()
    history: int = 0
    """The plan was widened (`widen`) to read this many newest model calls in every committed stage (0: not)."""

    @property
    def grid(self) -> torch.Tensor:
        """The sigmas as a float64 tensor (pass this to the sampler)."""
        return torch.tensor(self.sigmas, dtype=torch.float64)

    @property
    def nfe(self) -> int:
        return len(self.shifts)

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata (all strings)."""
        return {"format": FORMAT, "version": str(FORMAT_VERSION), "sampler": self.sampler, "nfe": str(self.nfe),
                "schedule": self.schedule, "options": json.dumps(dict(self.options), sort_keys=True),
                "objective_before": repr(self.objective_before), "objective_after": repr(self.objective_after),
                "info": json.dumps(dict(self.info), sort_keys=True), "history": str(self.history)}


def plan_layout(plan: Plan) -> tuple[int, ...]:
    """Number of terms of each stage."""
    return tuple(len(stage.terms) for stage in plan.stages)


def widen(plan: Plan, history: int) -> Plan:
    """`plan` with every committed linear stage also reading the D and the eps of the `history` newest model calls
    made before it (coefficient 0, so the plan is unchanged until corrections move them; a kind is added only where
    it can be read from two calls or more, since one term of a kind takes no zero-sum correction)."""
    if history <= 0:
        return plan
    if plan.stochastic:
        raise LearnedPlanError("only deterministic plans can be widened")
    stages = []
    calls = 0
    for stage in plan.stages:
        recent = range(max(0, calls - history), calls)
        if stage.commit and not stage.evaluate and stage.noise is None and stage.langevin is None and len(recent) > 1:
            present = {(term.index, term.kind) for term in stage.terms}
            kinds: tuple[Kind, ...] = ("D", "eps")
            extra = tuple(Term(0.0, j, kind) for kind in kinds for j in recent if (j, kind) not in present)
            stage = dataclasses.replace(stage, terms=stage.terms + extra)
        stages.append(stage)
        calls += int(stage.evaluate)
    return _with_bookkeeping(stages)


def _with_bookkeeping(stages: Sequence[Stage]) -> Plan:
    """A plan of `stages` whose kinds and last uses are read off the stages' terms."""
    kinds: list[set[Kind]] = []
    last_use: list[int] = []
    for index, stage in enumerate(stages):
        for term in stage.terms:
            kinds[term.index].add(term.kind)
            last_use[term.index] = index
        if stage.evaluate:
            kinds.append({"D"})
            last_use.append(index)
    return Plan(stages=list(stages), kinds=kinds, last_use=last_use)


def zero_corrections(plan: Plan) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(corrections, shifts) that leave `plan` as it is."""
    return (0.0,) * sum(plan_layout(plan)), (0.0,) * plan.nfe


def check_learned(learned: Any, sampler: str, structure: str, stochastic: bool, opts: Mapping[str, Any]) -> None:
    """Raise LearnedPlanError unless `learned` can be used by `sampler` called with the parsed options `opts`."""
    if not isinstance(learned, LearnedPlan):
        raise LearnedPlanError(f"learned_plan must be a samplers.learned.LearnedPlan (see load_learned), got "
                               f"{type(learned).__name__}")
    if structure != "multistep" or stochastic:
        raise LearnedPlanError(f"{sampler} does not accept learned_plan: only deterministic multistep samplers do")
    if learned.sampler != sampler:
        raise LearnedPlanError(f"learned_plan was learned for {learned.sampler}, not {sampler}")
    schedule = getattr(opts.get("schedule"), "name", None)
    if schedule != learned.schedule:
        raise LearnedPlanError(f"learned_plan was learned for schedule {learned.schedule!r}, the call uses "
                               f"{schedule!r}")
    for name, value in learned.options:
        if opts.get(name) != value:
            raise LearnedPlanError(f"learned_plan was learned with {name}={value!r}, the call uses "
                                   f"{name}={opts.get(name)!r}")


def apply_learned(plan: Plan, learned: LearnedPlan, grid: Sequence[float]) -> Plan:
    """`plan` (built on `grid`) with the learned corrections: coefficients b + c, model calls at sigma*e^tau."""
    if len(grid) != len(learned.sigmas) or any(
            abs(a - b) > GRID_RTOL * max(abs(b), 1e-12) for a, b in zip(grid, learned.sigmas, strict=True)):
        raise LearnedPlanError(f"learned_plan was learned on the grid {list(learned.sigmas)}, the call passes "
                               f"{list(grid)}: sample with learned.grid")
    if not plan.stochastic:
        plan = widen(plan, learned.history)
    if plan.stochastic or plan_layout(plan) != learned.terms or plan.nfe != len(learned.shifts):
        raise LearnedPlanError("learned_plan does not match the sampler's plan on this grid (different stages or "
                               "model calls): it was learned with other options or another version")
    schedule = resolve_schedule(learned.schedule)
    corrections = iter(learned.corrections)
    shifts = iter(learned.shifts)
    stages = []
    for stage in plan.stages:
        terms = tuple(dataclasses.replace(t, coef=t.coef + next(corrections)) for t in stage.terms)
        new = dataclasses.replace(stage, terms=terms)
        if stage.evaluate:
            tau = next(shifts)
            if tau != 0.0:
                sigma = stage.sigma * math.exp(tau)
                if not sigma < schedule.sigma_max:
                    raise LearnedPlanError(f"learned_plan moves a model call to sigma={sigma:.6g}, beyond the "
                                           f"schedule's sigma_max={schedule.sigma_max}")
                new = dataclasses.replace(new, sigma=sigma, alpha=schedule.alpha(sigma))
        stages.append(new)
    return Plan(stages=stages, kinds=[set(k) for k in plan.kinds], last_use=list(plan.last_use))


def _corrected(coefs: torch.Tensor, kinds: torch.Tensor, raw: torch.Tensor | None, sigma: float) -> torch.Tensor:
    """c = s_k (raw - mean of raw over the terms of kind k): zero-sum per kind. s_k = max|b| over the stage's terms
    of kind k, or where they are all 0 (terms `widen` added) the other kind's, converted by the newest call's
    `sigma` (D = y - sigma eps at alpha = 1: an eps coefficient is sigma times a D coefficient)."""
    if raw is None:
        return torch.zeros_like(coefs)
    out = torch.zeros_like(coefs)
    size = coefs.detach().abs()
    largest = [size[kinds == kind].max() if bool((kinds == kind).any()) else size.new_zeros(()) for kind in (0, 1)]
    for kind, other, convert in ((0, 1, 1.0 / sigma), (1, 0, sigma)):
        mask = kinds == kind
        if int(mask.sum()) > 1:
            scale = largest[kind] if largest[kind] > 0 else largest[other] * convert
            out = torch.where(mask, scale * (raw - raw[mask].mean()), out)
    return out


StageValues = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""Per stage: (a, term coefficients, log sigma of its model call or None), as tensors a grid change can move."""


def plan_vector(plan: Plan) -> list[float]:
    """a, the term coefficients and (model calls only) log sigma of every stage, in plan order."""
    out: list[float] = []
    for stage in plan.stages:
        out += [stage.a, *(t.coef for t in stage.terms)]
        if stage.evaluate:
            out.append(math.log(stage.sigma))
    return out


def _stage_values(plan: Plan, vector: torch.Tensor) -> list[StageValues]:
    """Split a plan_vector-shaped tensor back into per-stage values."""
    out: list[StageValues] = []
    at = 0
    for stage in plan.stages:
        n = len(stage.terms)
        log_sigma = vector[at + 1 + n] if stage.evaluate else None
        out.append((vector[at], vector[at + 1:at + 1 + n], log_sigma))
        at += 1 + n + int(stage.evaluate)
    return out


class GridParameters:
    """The interior of a grid as free parameters w: the theta of samplers.calibrate.grid_from_theta (log-sigma gaps
    in proportion softmax([0, w])), so any w gives a decreasing grid with the same ends (and final zero)."""

    STEP = 1e-6
    """Finite-difference step in w for the plan's Jacobian (the plan builders work in floats)."""

    def __init__(self, grid: Sequence[float]) -> None:
        values = list(grid)
        self.ends_at_zero = values[-1] == 0.0
        self.points = values[:-1] if self.ends_at_zero else values
        self.w = torch.tensor(theta_from_grid(self.points), dtype=torch.float64, requires_grad=True)

    def sigmas(self, w: torch.Tensor) -> list[float]:
        """The grid of parameters w (float list; first and last nonzero sigma exactly as given)."""
        return grid_from_theta(w.detach().tolist(), self.points[0], self.points[-1], len(self.points) - 1,
                               self.ends_at_zero)

    def linearized(self, build: Callable[[Sequence[float]], Plan]) -> tuple[list[float], Plan, torch.Tensor]:
        """(current grid, plan on it, its plan_vector as a tensor whose gradient in w is the finite-difference
        Jacobian): exact values, first-order derivatives."""
        w = self.w.detach()
        points = self.sigmas(w)
        plan = build(points)
        base = torch.tensor(plan_vector(plan), dtype=torch.float64)
        columns = []
        for k in range(w.numel()):
            nudged = w.clone()
            nudged[k] += self.STEP
            moved = build(self.sigmas(nudged))
            if plan_layout(moved) != plan_layout(plan):
                raise LearnedPlanError("the sampler's plan changes layout under a small grid change: learn_grid "
                                       "does not apply to it")
            columns.append((torch.tensor(plan_vector(moved), dtype=torch.float64) - base) / self.STEP)
        jacobian = torch.stack(columns, 1) if columns else base.new_zeros(base.numel(), 0)
        return points, plan, base + jacobian @ (self.w - w)


def _run(model: Model, x: torch.Tensor, plan: Plan, values: Sequence[StageValues],
         raw: Sequence[torch.Tensor | None], tau: torch.Tensor, schedule: NoiseSchedule,
         extra_args: Mapping[str, Any]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The plan's recursion in float64 with corrections (differentiable; the stages' a, coefficients and call
    sigmas taken from `values`): (final state, corrections per stage)."""
    state = x
    slots: dict[int, torch.Tensor] = {}
    corrections = []
    call_sigmas: list[float] = []
    call = 0
    for (stage, terms, _), (a, coefs, log_sigma) in zip(plan.program(), values, strict=True):
        kinds = torch.tensor([slot % 2 for _, slot in terms])
        newest = max((slot // 2 for _, slot in terms), default=0)
        c = _corrected(coefs, kinds, raw[len(corrections)], call_sigmas[newest] if call_sigmas else 1.0)
        corrections.append(c)
        y = state * a
        for b, (_, slot) in zip(coefs + c, terms, strict=True):
            y = y + slots[slot] * b
        if stage.evaluate:
            assert log_sigma is not None
            sigma = torch.exp(log_sigma + tau[call])
            call_sigmas.append(stage.sigma)
            alpha = torch.as_tensor(schedule.alpha(sigma), dtype=torch.float64)
            denoised = model(y, sigma.to(y.device).expand(y.shape[0]), **extra_args).to(torch.float64)
            slots[2 * call], slots[2 * call + 1] = denoised, (y - alpha * denoised) / sigma
            call += 1
        if stage.commit:
            state = y
    return state, corrections


def learn_plan(
    model: Model,
    sampler: str,
    sigmas: torch.Tensor | Sequence[float],
    x: torch.Tensor,
    schedule: str = "ve",
    reference: torch.Tensor | None = None,
    options: Mapping[str, Any] | None = None,
    extra_args: dict[str, Any] | None = None,
    steps: int = LEARN_STEPS,
    lr: float = LEARN_RATE,
    info: Mapping[str, str] | None = None,
    progress: Callable[[int, float], Any] | None = None,
    max_sigma: float | None = None,
    learn_grid: bool = False,
    objective: str = "rmse",
    history: int = 0,
) -> LearnedPlan:
    """Fit corrections c and shifts tau of `sampler`'s plan on `sigmas` to the noises `x` (batch first).

    `model` must be differentiable in torch (autograd through its output); it runs on x's device (a GPU too: the
    model gets its sigmas there), the plan's parameters stay float64 on the host. `reference`: what an exact solver
    returns from x on the grid (default: samplers.calibrate.reference_solution). Adam with a cosine-decayed
    learning rate for `steps` steps; the best iterate is kept (zero corrections if none beats them).
    `progress(step, rms)` is called after every step. `max_sigma`: no model call moves above it (a flow model
    sampled in the VE form is defined up to sigma 1 only); default: the schedule's sigma_max. `learn_grid`:
    also move the grid's interior sigmas (ends fixed; GridParameters), and return the plan on the grid reached.
    `objective` (OBJECTIVES): "rmse" = sqrt(mean_i e_i^2), "mean" = mean_i e_i, e_i the RMS error of noise i;
    objective_before/after are in its terms, and a "mean" plan records it in its info. `history` (K > 0): every
    committed stage also reads the D and eps of the K newest calls (`widen`), their coefficients learned from 0.
    """
    from .registry import SAMPLERS

    entry = SAMPLERS.get(sampler)
    opts = dict(options or {})
    if entry is None or entry.spec is None:
        raise LearnedPlanError(f"unknown sampler {sampler!r}")
    if "schedule" in opts:
        raise LearnedPlanError("pass the schedule as learn_plan's `schedule` argument, not in options")
    grid = check_grid(sigmas, schedule)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise LearnedPlanError(f"steps must be an integer >= 0, got {steps!r}")
    if not (isinstance(lr, float | int) and lr > 0):
        raise LearnedPlanError(f"lr must be a positive number, got {lr!r}")
    if objective not in OBJECTIVES:
        raise LearnedPlanError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise LearnedPlanError(f"history must be an integer >= 0 (0: the sampler's own terms), got {history!r}")

    def build(points: Sequence[float]) -> Plan:
        made = entry.plan(torch.tensor(points, dtype=torch.float64), schedule=schedule, **opts)
        assert made is not None
        return made if made.stochastic else widen(made, history)

    plan = build(grid)
    check_learned(_blank(sampler, schedule, opts, grid, plan), sampler, entry.spec.structure, entry.stochastic,
                  {**opts, "schedule": resolve_schedule(schedule)})
    if x.dim() < 1 or x.shape[0] < 1:
        raise LearnedPlanError("x must hold at least one initial noise (batch dimension first)")
    x = x.to(torch.float64)
    if reference is None:
        reference = reference_solution(model, x, torch.tensor(grid, dtype=torch.float64), schedule, extra_args)
    if reference.shape != x.shape:
        raise LearnedPlanError(f"reference has shape {tuple(reference.shape)}, expected x's {tuple(x.shape)}")
    reference = reference.to(torch.float64)
    noise_schedule = resolve_schedule(schedule)
    extra = dict(extra_args or {})
    raw = [torch.zeros(len(stage.terms), dtype=torch.float64, requires_grad=True) if len(stage.terms) > 1 else None
           for stage in plan.stages]
    tau = torch.zeros(plan.nfe, dtype=torch.float64, requires_grad=True)
    free = torch.tensor([noise_schedule.alpha(st.sigma) != 0.0 for st in plan.stages if st.evaluate],
                        dtype=torch.float64)  # calls at alpha = 0 (flow sigma = 1) stay where they are
    cap = noise_schedule.sigma_max if max_sigma is None else min(float(max_sigma), noise_schedule.sigma_max)
    if not cap > 0:
        raise LearnedPlanError(f"max_sigma must be positive, got {max_sigma!r}")
    grid_parameters = GridParameters(grid) if learn_grid else None
    learned_grid = [] if grid_parameters is None else [grid_parameters.w]
    optimizer = torch.optim.Adam([*[r for r in raw if r is not None], tau, *learned_grid], lr=float(lr))
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    best: tuple[float, list[torch.Tensor], torch.Tensor, list[float]] | None = None
    points, vector = grid, torch.tensor(plan_vector(plan), dtype=torch.float64)  # moved only with learn_grid
    before = math.inf
    for step in range(steps + 1):
        optimizer.zero_grad()
        if grid_parameters is not None:
            points, plan, vector = grid_parameters.linearized(build)
        values = _stage_values(plan, vector)
        log_calls = torch.stack([v[2] for v in values if v[2] is not None]).detach()
        room = (math.log(cap) - log_calls).clamp(min=0.0)
        shifts = torch.minimum(tau * free, room)  # sigma * e^tau <= cap
        out, corrections = _run(model, x, plan, values, raw, shifts, noise_schedule, extra)
        per_noise = ((out - reference) ** 2).reshape(out.shape[0], -1).mean(1)
        loss = per_noise.mean() if objective == "rmse" else per_noise.sqrt().mean()
        value = float(loss.detach().sqrt()) if objective == "rmse" else float(loss.detach())
        if step == 0:
            before = value
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, [c.detach().clone() for c in corrections], shifts.detach().clone(), list(points))
        if progress is not None:
            progress(step, value)
        if step == steps:
            break
        loss.backward()
        optimizer.step()
        decay.step()
    if best is None:
        raise LearnedPlanError("the sampler's error is not finite on these noises: nothing to learn from")
    after, corrections, shifts, points = best
    return LearnedPlan(tuple(points), sampler, schedule, _plan_options(sampler, entry.defaults, opts),
                       plan_layout(plan), tuple(v for c in corrections for v in c.tolist()), tuple(shifts.tolist()),
                       before, after, tuple(sorted({**(info or {}), **_objective_info(objective)}.items())), history)


def _objective_info(objective: str) -> dict[str, str]:
    """The info entry of a plan fitted to another objective than the default (none for "rmse": files learned
    before objectives existed read as what they are)."""
    return {} if objective == "rmse" else {"objective": objective}


def plan_objective(learned: LearnedPlan) -> str:
    """The objective a plan was fitted to (OBJECTIVES)."""
    return dict(learned.info).get("objective", "rmse")


def _plan_options(sampler: str, defaults: Mapping[str, Any], opts: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The sampler's options after parsing (defaults filled in) as sorted pairs, without the schedule and the
    options that do not shape a plan (RUN_ONLY)."""
    parsed = parse_options(sampler, defaults, opts)
    return tuple(sorted((k, v) for k, v in parsed.items() if k != "schedule" and k not in RUN_ONLY))


def _blank(sampler: str, schedule: str, opts: Mapping[str, Any], grid: Sequence[float], plan: Plan) -> LearnedPlan:
    """A learned plan with zero corrections (the plain sampler)."""
    corrections, shifts = zero_corrections(plan)
    return LearnedPlan(tuple(grid), sampler, schedule, tuple(sorted(opts.items())), plan_layout(plan), corrections,
                       shifts, math.nan, math.nan)


def save_learned(path: str | Path, learned: LearnedPlan) -> Path:
    """Write `learned` as safetensors (float64 tensors sigmas, corrections, shifts; int64 terms; metadata);
    '.safetensors' is appended when missing, as samplers.calibrate.save_grid does."""
    tensors = {"sigmas": torch.tensor(learned.sigmas, dtype=torch.float64),
               "corrections": torch.tensor(learned.corrections, dtype=torch.float64).reshape(-1),
               "shifts": torch.tensor(learned.shifts, dtype=torch.float64).reshape(-1),
               "terms": torch.tensor(learned.terms, dtype=torch.int64).reshape(-1)}
    return write_tensors(path, tensors, learned.metadata())


def load_learned(path: str | Path, sampler: str | None = None) -> LearnedPlan:
    """Read a file written by save_learned; with `sampler` given, refuse a plan learned for another sampler."""
    source = Path(path)
    tensors, meta = read_tensors(source, kind="learned plan", fmt=FORMAT, version=FORMAT_VERSION,
                                 required=("sigmas", "corrections", "shifts", "terms"), error=LearnedPlanError)
    if sampler is not None and meta.get("sampler") != sampler:
        raise LearnedPlanError(f"{str(source)!r} was learned for {meta.get('sampler')}, not {sampler}")
    learned = LearnedPlan(
        tuple(tensors["sigmas"].tolist()), meta["sampler"], meta["schedule"],
        tuple(sorted(json.loads(meta["options"]).items())), tuple(int(v) for v in tensors["terms"].tolist()),
        tuple(tensors["corrections"].tolist()), tuple(tensors["shifts"].tolist()),
        float(meta["objective_before"]), float(meta["objective_after"]),
        tuple(sorted(json.loads(meta["info"]).items())), _history(source, meta.get("history", "0")))
    if sum(learned.terms) != len(learned.corrections):
        raise LearnedPlanError(f"{str(source)!r}: {len(learned.corrections)} corrections for "
                               f"{sum(learned.terms)} terms")
    return learned


def _history(source: Path, text: str) -> int:
    """The `history` metadata of a learned-plan file: an integer >= 0 (files written before it existed have none: 0)."""
    if not text.isdigit():
        raise LearnedPlanError(f"{str(source)!r}: history must be an integer >= 0, got {text!r}")
    return int(text)
