"""Time grids calibrated on the user's own model: move a sampler's interior sigmas to minimise its error.

The error of a sampler with a fixed number of model calls depends on where its grid puts them. Given a model,
a batch of initial noises x_T and a high-accuracy reference solution for that batch, `calibrate_grid` keeps the
grid's ends (sigma_max, the last nonzero sigma, the final 0) and moves the interior points to minimise

    E(grid) = RMS(sampler(model, x_T, grid) - reference)

with a derivative-free Nelder-Mead search (plans are built from Python floats, so there is no gradient). The
interior points are parametrised by the gaps between consecutive points in u = log(sigma) (= -lambda for VE
models; unlike lambda it stays finite at flow's sigma = 1): gap_i = (u_first - u_last) softmax(theta)_i, so any
theta gives a strictly decreasing grid with the same ends. The result is saved as a safetensors file whose
metadata says what it was calibrated for (`save_grid`); `load_grid` checks a file against the sampler and
budget it is loaded for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from .driver import NonFiniteModelOutput
from .registry import SAMPLERS, SamplerEntry
from .schedules import resolve_schedule
from .sigmas import distinct, read_sigmas
from .tensorfile import read_tensors, write_tensors

FORMAT = "dpm-solver-calibrated-grid"
FORMAT_VERSION = 1
REFERENCE_SAMPLER = "dpm_solver_pp_3m"
REFERENCE_STEPS = 400
"""Default reference: DPM-Solver++ 3M with exact third-order weights on this many log-sigma-uniform steps."""

Model = Callable[..., torch.Tensor]


class CalibrationError(ValueError):
    """A calibration input or a grid file is not what was expected."""


@dataclass(frozen=True)
class CalibratedGrid:
    """A calibrated grid and what it was calibrated for (the metadata of its file)."""

    sigmas: torch.Tensor
    """float64, strictly decreasing nonzero part, ending at the same sigma as the initial grid."""
    sampler: str
    nfe: int
    schedule: str
    objective_before: float
    """Calibration error (RMS against the reference) of the initial grid."""
    objective_after: float
    evaluations: int = 0
    """Sampler runs the search made."""
    options: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, str] = field(default_factory=dict)
    """Free-form strings: model name or hash, seeds, initial schedule, ..."""

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata (all strings)."""
        values = self.sigmas.tolist()
        positive = [v for v in values if v > 0.0]
        return {
            "format": FORMAT, "version": str(FORMAT_VERSION), "sampler": self.sampler, "nfe": str(self.nfe),
            "schedule": self.schedule, "sigma_max": repr(values[0]), "sigma_last": repr(positive[-1]),
            "objective_before": repr(self.objective_before), "objective_after": repr(self.objective_after),
            "evaluations": str(self.evaluations), "options": json.dumps(dict(self.options), sort_keys=True),
            "info": json.dumps(dict(self.info), sort_keys=True),
        }


def _entry(sampler: str) -> SamplerEntry:
    entry = SAMPLERS.get(sampler)
    if entry is None or entry.stochastic or entry.spec is None or entry.spec.structure == "adaptive":
        usable = ", ".join(n for n, e in SAMPLERS.items() if not e.stochastic and e.spec is not None
                           and e.spec.structure != "adaptive")
        raise CalibrationError(f"sampler {sampler!r} cannot be calibrated: a deterministic fixed-grid sampler is "
                               f"needed, one of {usable}")
    return entry


def model_calls(sampler: str, sigmas: torch.Tensor, schedule: str, options: Mapping[str, Any] | None = None) -> int:
    """Model calls `sampler` makes on `sigmas` (no model is run)."""
    return _entry(sampler).count_model_calls(sigmas, schedule=schedule, **dict(options or {}))


def intervals_for_nfe(sampler: str, nfe: int, make_grid: Callable[[int], torch.Tensor], schedule: str,
                      options: Mapping[str, Any] | None = None) -> int:
    """The largest number of intervals n whose grid make_grid(n) costs `sampler` at most `nfe` model calls."""
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise CalibrationError(f"nfe must be an integer >= 1, got {nfe!r}")
    best, over = None, 0
    for n in range(1, nfe + 1):
        try:
            calls = model_calls(sampler, make_grid(n), schedule, options)
        except ValueError:  # a scheduler that cannot make this n (ComfyUI's kl_optimal at 1 step: NaN)
            continue
        if calls <= nfe:
            best, over = n, 0
        else:
            over += 1
            if over >= 3:
                break
    if best is None:
        raise CalibrationError(f"{sampler} needs more than nfe={nfe} model calls even on one interval")
    return best


def _split(values: list[float]) -> tuple[list[float], bool]:
    """(nonzero points, whether the grid ends at 0)."""
    if values[-1] == 0.0:
        return values[:-1], True
    return values, False


def grid_from_theta(theta: Sequence[float], first: float, last: float, n_gaps: int, ends_at_zero: bool
                    ) -> list[float]:
    """Sigmas first > ... > last (n_gaps gaps, [0] appended if ends_at_zero) whose log-sigma gaps are
    (log first - log last) softmax([0, theta])."""
    logits = [0.0, *theta]
    if len(logits) != n_gaps:
        raise CalibrationError(f"theta has {len(theta)} entries, expected {n_gaps - 1}")
    top = max(logits)
    weights = [math.exp(v - top) for v in logits]
    total = sum(weights)
    span = math.log(first) - math.log(last)
    points, u = [first], math.log(first)
    for w in weights[:-1]:
        u -= span * w / total
        points.append(math.exp(u))
    points.append(last)
    return [*points, 0.0] if ends_at_zero else points


def theta_from_grid(points: Sequence[float]) -> list[float]:
    """Inverse of grid_from_theta for the nonzero points of a strictly decreasing grid."""
    gaps = [math.log(a) - math.log(b) for a, b in pairwise(points)]
    return [math.log(g / gaps[0]) for g in gaps[1:]]


def check_grid(sigmas: torch.Tensor | Sequence[float], schedule: str, name: str = "sigmas") -> list[float]:
    """The grid as floats if it is 1-D, finite, strictly decreasing (a single final 0 allowed), else an error."""
    noise_schedule = resolve_schedule(schedule)
    try:
        values = read_sigmas(sigmas if isinstance(sigmas, torch.Tensor) else list(sigmas), noise_schedule)
    except ValueError as err:
        raise CalibrationError(f"{name}: {err}") from None
    if len(distinct(values, noise_schedule)) != len(values):
        raise CalibrationError(f"{name} must be strictly decreasing (repeated or all but equal values in {values})")
    positive, _ = _split(values)
    if len(positive) < 2:
        raise CalibrationError(f"{name} needs at least two nonzero sigmas, got {values}")
    return values


def reference_solution(model: Model, x: torch.Tensor, sigmas: torch.Tensor, schedule: str,
                       extra_args: dict[str, Any] | None = None, steps: int = REFERENCE_STEPS,
                       callback: Callable[[dict[str, Any]], Any] | None = None) -> torch.Tensor:
    """What an exact solver returns on `sigmas` (only its ends matter): x(sigma_last) by DPM-Solver++ 3M with
    exact third-order weights on `steps` steps uniform in log sigma, then D(x, sigma_last) if the grid ends at 0.
    `callback` gets the sampler's payload after every model call (a host's progress bar and interrupt)."""
    values = check_grid(sigmas, schedule)
    positive, ends_at_zero = _split(values)
    first, last = positive[0], positive[-1]
    span = math.log(first) - math.log(last)
    fine = [math.exp(math.log(first) - span * i / steps) for i in range(steps)] + [last]
    if ends_at_zero:
        fine.append(0.0)
    grid = torch.tensor(fine, dtype=torch.float64)
    with torch.no_grad():
        return SAMPLERS[REFERENCE_SAMPLER](model, x.clone(), grid, extra_args=extra_args, callback=callback,
                                           disable=True, schedule=schedule, third_order="consistent")


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    value = float(torch.sqrt(((a.to(torch.float64) - b.to(torch.float64)) ** 2).mean()))
    return value if math.isfinite(value) else math.inf


def nelder_mead(f: Callable[[list[float]], float], start: Sequence[float], step: float = 0.5,
                max_evals: int = 400, tol: float = 1e-4) -> tuple[list[float], float, int]:
    """Minimise f from `start` (standard reflection 1, expansion 2, contraction 1/2, shrink 1/2); starts no step
    once max_evals evaluations are spent (a shrink's dim calls may overrun it) or the simplex's values agree to `tol`
    relatively. Returns (x, f(x), evaluations)."""
    dim = len(start)
    evals = 0

    def value(x: list[float]) -> float:
        nonlocal evals
        evals += 1
        return f(x)

    simplex = [list(start)] + [[v + (step if i == k else 0.0) for i, v in enumerate(start)] for k in range(dim)]
    values = [value(x) for x in simplex]
    while evals < max_evals:
        order = sorted(range(dim + 1), key=lambda i: values[i])
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] <= tol * abs(values[0]):  # false at an infinite worst value
            break
        centroid = [sum(x[i] for x in simplex[:-1]) / dim for i in range(dim)]
        worst = simplex[-1]
        reflected = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        fr = value(reflected)
        if fr < values[0]:
            expanded = [c + 2.0 * (c - w) for c, w in zip(centroid, worst, strict=True)]
            fe = value(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = [c + 0.5 * (w - c) for c, w in zip(centroid, worst, strict=True)]
            fc = value(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (x - b) for b, x in zip(best, p, strict=True)] for p in simplex[1:]]
                values = [values[0]] + [value(x) for x in simplex[1:]]
    i = min(range(dim + 1), key=lambda k: values[k])
    return simplex[i], values[i], evals


def calibrate_grid(
    model: Model,
    sampler: str,
    nfe: int,
    initial: torch.Tensor,
    x: torch.Tensor,
    schedule: str = "ve",
    extra_args: dict[str, Any] | None = None,
    reference: torch.Tensor | None = None,
    options: Mapping[str, Any] | None = None,
    max_evals: int = 400,
    restarts: int = 2,
    info: Mapping[str, str] | None = None,
    progress: Callable[[int, float], Any] | None = None,
) -> CalibratedGrid:
    """Move the interior points of `initial` to minimise `sampler`'s RMS error on the noises `x`.

    `initial`: the starting grid (descending, usually ending at 0; its ends stay fixed), costing `sampler` at
    most `nfe` model calls (see intervals_for_nfe). `x`: a batch of initial noises at initial[0]. `reference`:
    what an exact solver returns from x on that grid (default: reference_solution with REFERENCE_STEPS steps).
    The search runs Nelder-Mead `restarts` times, each from the best point so far. `progress(evaluations, best)`
    is called after every sampler run (a host can raise there to interrupt). Returns the initial grid itself
    when no candidate beats it (objective_after == objective_before).
    """
    entry = _entry(sampler)
    values = check_grid(initial, schedule, "initial")
    opts = dict(options or {})
    calls = entry.count_model_calls(torch.tensor(values, dtype=torch.float64), schedule=schedule, **opts)
    if calls > nfe:
        raise CalibrationError(f"initial grid costs {sampler} {calls} model calls, more than nfe={nfe}: build it with "
                               "intervals_for_nfe")
    positive, ends_at_zero = _split(values)
    if x.shape[0] < 1:
        raise CalibrationError("x must hold at least one initial noise (batch dimension first)")
    if reference is None:
        reference = reference_solution(model, x, initial, schedule, extra_args)
    if reference.shape != x.shape:
        raise CalibrationError(f"reference has shape {tuple(reference.shape)}, expected x's {tuple(x.shape)}")
    n_gaps = len(positive) - 1
    record = {"runs": 0, "best": math.inf}

    def objective(theta: Sequence[float]) -> float:
        grid = grid_from_theta(theta, positive[0], positive[-1], n_gaps, ends_at_zero)
        sigmas = torch.tensor(grid, dtype=torch.float64)
        try:
            with torch.no_grad():
                out = entry(model, x.clone(), sigmas, extra_args=extra_args, disable=True, schedule=schedule, **opts)
            value = _rms(out, reference)
        except (ValueError, ArithmeticError, NonFiniteModelOutput):
            value = math.inf
        record["runs"] += 1
        record["best"] = min(record["best"], value)
        if progress is not None:
            progress(int(record["runs"]), record["best"])
        return value

    start = theta_from_grid(positive)
    before = objective(start)
    best, best_value, evaluations = start, before, 1
    if n_gaps >= 2:
        for _ in range(max(1, restarts)):
            theta, value, used = nelder_mead(objective, best, max_evals=max_evals)
            evaluations += used
            if value < best_value:
                best, best_value = theta, value
    grid = grid_from_theta(best, positive[0], positive[-1], n_gaps, ends_at_zero)
    return CalibratedGrid(torch.tensor(grid, dtype=torch.float64), sampler, nfe, schedule, before, best_value,
                          evaluations, opts, dict(info or {}))


def save_grid(path: str | Path, grid: CalibratedGrid) -> Path:
    """Write `grid` as a safetensors file: tensor "sigmas" (float64) and the metadata of CalibratedGrid."""
    return write_tensors(path, {"sigmas": grid.sigmas.to(torch.float64)}, grid.metadata())


def load_grid(path: str | Path, sampler: str | None = None, nfe: int | None = None) -> CalibratedGrid:
    """Read a file written by save_grid; with `sampler`/`nfe` given, refuse a grid calibrated for others."""
    source = Path(path)
    tensors, meta = read_tensors(source, kind="calibrated grid", fmt=FORMAT, version=FORMAT_VERSION,
                                 required=("sigmas",), error=CalibrationError)
    sigmas = tensors["sigmas"]
    try:
        stored = CalibratedGrid(
            sigmas.to(torch.float64), meta["sampler"], int(meta["nfe"]), meta["schedule"],
            float(meta["objective_before"]), float(meta["objective_after"]), int(meta["evaluations"]),
            json.loads(meta["options"]), json.loads(meta["info"]))
    except (KeyError, ValueError) as err:
        raise CalibrationError(f"{str(source)!r} has incomplete metadata: {err}") from None
    check_grid(stored.sigmas, stored.schedule, f"sigmas in {str(source)!r}")
    if sampler is not None and sampler != stored.sampler:
        raise CalibrationError(f"{str(source)!r} was calibrated for sampler {stored.sampler!r}, not {sampler!r}")
    if nfe is not None and nfe != stored.nfe:
        raise CalibrationError(f"{str(source)!r} was calibrated for nfe={stored.nfe}, not {nfe}")
    calls = model_calls(stored.sampler, stored.sigmas, stored.schedule, stored.options)
    if calls > stored.nfe:
        raise CalibrationError(f"{str(source)!r}: its grid costs {stored.sampler} {calls} model calls, more than "
                               f"its nfe={stored.nfe}")
    return stored
