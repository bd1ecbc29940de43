"""Side-by-side comparison with ComfyUI's built-in samplers (issue 8): our best error within OUR_BUDGET model calls
against the best of ComfyUI's within THEIR_BUDGET, per case, by RMSE and by the median per-sample error.

Both sides run in the same process on the same cases, grids (family and step count), float64 initial noises and
references (samplers/bench/measure.py). A sampler's error "at NFE <= B" is the cell our tables show at budget B:
its run on the largest grid whose model calls fit (adaptive samplers: the tolerance whose run used the most calls
within B). "Best at NFE <= B" is the smallest of those over a side's samplers; ratio = ours / theirs, and the goal
is met where ratio <= 1.

Our side is every deterministic registry sampler at its defaults plus the registered `Candidate`s: a label, a
registry sampler, options, and a grid (the case's own family, a callable (case, n) -> sigmas, or fixed sigmas per
case), so calibrated grids are added with `register_candidate` or `--candidates MODULE` without editing this file.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import SAMPLERS
from ..registry import SamplerEntry
from .accuracy import deterministic
from .bootstrap import LEVEL, RESAMPLES, ratio_interval
from .cases import Case
from .comfy_builtin import BUILTIN, COMFYUI_ENV, EXTRA, Comfy, ComfyCaseRunner, ComfySampler
from .measure import ADAPTIVE_GRID, DTYPE, OVERSHOOT, CaseRunner, is_adaptive, measured, pick_at_budget
from .report import budget_table_rows, fmt_err, fmt_ratio, table
from .tail import error_tail

OUR_BUDGET = 10
THEIR_BUDGET = 20
STATS = ("rmse", "median_err")
SAMPLE_ERRORS = "sample_errors"
STAT_NAMES = {"rmse": "RMSE", "median_err": "median per-sample error"}
ENABLE_HINT = (f"Set {COMFYUI_ENV}=/path/to/ComfyUI (a ComfyUI checkout whose requirements are installed) or pass "
               "--comfyui PATH to `python -m samplers.bench` to run ComfyUI's built-in samplers on the same cases, "
               "grids, initial noises and references, and compare.")

GridSource = Callable[[Case, int], torch.Tensor | None] | Mapping[str, Sequence[torch.Tensor]] | None


@dataclass(frozen=True)
class Candidate:
    """One of 'our' entries: registry `sampler` with `options` on `grid`: None (the case's grid family, n = 2, 3,
    ...), a callable (case, n) -> sigmas (None to skip that n), or {case name: [sigmas, ...]} (fixed grids).
    `case_options`: {case name: options} added on that case's own grids only (e.g. a learned plan, which fits one
    case and grid; not written to the JSON)."""

    label: str
    sampler: str
    grid: GridSource = None
    options: Mapping[str, Any] = field(default_factory=dict)
    case_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


_REGISTERED: dict[str, Candidate] = {}


def register_candidate(candidate: Candidate) -> None:
    """Add an entry to our side of every later comparison (labels are unique; the sampler must be registered)."""
    if candidate.sampler not in SAMPLERS:
        raise ValueError(f"candidate {candidate.label!r}: unknown sampler {candidate.sampler!r}; "
                         f"registered: {', '.join(SAMPLERS)}")
    if candidate.label in _REGISTERED and _REGISTERED[candidate.label] != candidate:
        raise ValueError(f"candidate label {candidate.label!r} is registered already")
    _REGISTERED[candidate.label] = candidate


def registered_candidates() -> list[Candidate]:
    """The candidates added with register_candidate, in order."""
    return list(_REGISTERED.values())


def load_candidates(spec: str) -> list[Candidate]:
    """Import `module` or `module:ATTR` (default ATTR: CANDIDATES, a list of Candidate or a function returning one)
    and register its candidates; returns all registered candidates (a module may also register them itself)."""
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, attr or "CANDIDATES", None)
    if attr and found is None:
        raise ValueError(f"--candidates {spec}: module {module_name} has no attribute {attr}")
    if callable(found):
        found = found()
    for candidate in found or []:
        if not isinstance(candidate, Candidate):
            raise TypeError(f"--candidates {spec}: expected Candidate objects, got {type(candidate).__name__}")
        register_candidate(candidate)
    return registered_candidates()


def default_candidates(entries: Mapping[str, SamplerEntry]) -> list[Candidate]:
    """Every given deterministic ODE solver of the registry at its defaults on the case's grid family (not the
    stochastic samplers, nor those that do not solve the ODE, such as score distillation)."""
    return [Candidate(e.label, name) for name, e in deterministic(entries).items()]


# --- selection (pure functions on cells: {"n_steps", "nfe", "rmse", "median_err", ["rtol"], ...}) -------------

def at_budget(cells: Sequence[Mapping[str, Any]], budget: int) -> Mapping[str, Any] | None:
    """The cell a table shows at `budget` (measure.pick_at_budget: the largest grid whose model calls fit; for
    adaptive runs, with 'rtol', the one with the most calls within the budget, then the smaller RMSE). None when
    nothing counts."""
    return pick_at_budget(cells, budget, lambda c: (c["n_steps"], c["nfe"], c["rmse"], c.get("rtol") is not None))


def best_within(rows: Mapping[str, Sequence[Mapping[str, Any]]], budget: int, stat: str
                ) -> dict[str, Any] | None:
    """The best sampler at `budget` by `stat` (the smallest finite value of its at_budget cell): {'label', **cell}."""
    best: dict[str, Any] | None = None
    for label, cells in rows.items():
        cell = at_budget(cells, budget)
        if cell is None or cell.get(stat) is None or not math.isfinite(cell[stat]):
            continue
        if best is None or cell[stat] < best[stat]:
            best = {"label": label, **cell}
    return best


def ends_by(cell: Mapping[str, Any], end: float | None) -> bool:
    """Whether the ODE a run solved ends at or below `end`: where the sampler stops ('stop': uni_pc at 0.001,
    dpm_fast at the last nonzero sigma), else its grid's last nonzero sigma (True when unknown)."""
    last = cell.get("stop", cell.get("sigma_last"))
    return end is None or last is None or last <= end * (1 + 1e-9)


def _ratio(ours: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None, stat: str) -> float | None:
    if ours is None or theirs is None or theirs[stat] <= 0:
        return None
    return ours[stat] / theirs[stat]


def _paired_errors(ours: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None
                   ) -> tuple[Sequence[float], Sequence[float]] | None:
    """The two cells' per-sample errors (same noises, same order); None when either cell lacks them."""
    if ours is None or theirs is None or not ours.get(SAMPLE_ERRORS) or not theirs.get(SAMPLE_ERRORS):
        return None
    return ours[SAMPLE_ERRORS], theirs[SAMPLE_ERRORS]


def _interval(ours: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None, stat: str) -> list[float] | None:
    """The paired bootstrap interval of the ratio (bootstrap.ratio_interval); None without per-sample errors."""
    pairs = _paired_errors(ours, theirs)
    interval = None if pairs is None else ratio_interval(*pairs, stat)
    return None if interval is None else list(interval)


def _tail(ours: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Where the two cells' squared errors sit (tail.error_tail); None without per-sample errors."""
    pairs = _paired_errors(ours, theirs)
    return None if pairs is None else error_tail(*pairs)


def without_sample_errors(obj: Any) -> Any:
    """A copy of a result with every cell's per-sample errors dropped (they serve the intervals; the JSON keeps
    the summaries)."""
    if isinstance(obj, Mapping):
        return {k: without_sample_errors(v) for k, v in obj.items() if k != SAMPLE_ERRORS}
    if isinstance(obj, list):
        return [without_sample_errors(v) for v in obj]
    return obj


def compare(ours: Mapping[str, Sequence[Mapping[str, Any]]], theirs: Mapping[str, Sequence[Mapping[str, Any]]],
            our_budget: int = OUR_BUDGET, their_budget: int = THEIR_BUDGET, end: float | None = None
            ) -> dict[str, Any]:
    """Per stat: our best at our_budget and theirs at their_budget, counting on both sides only runs whose grid
    ends at sigma <= `end` (the benchmark passes the last nonzero sigma of the case's grid at their_budget: on
    grids whose end depends on the step count, flow 'simple', fewer steps mean a shorter ODE before the final
    denoise, and a smaller error on a shorter ODE is no win); ratio ours/theirs, its paired bootstrap `interval`
    (where the cells carry per-sample errors) and `met` (ratio <= 1; False when no run of ours qualifies, None when
    none of theirs does). `ours_any` / `ratio_any`: our best on any grid. The RMSE entry also has `tail`: where the
    two runs' squared errors sit (tail.error_tail; None without per-sample errors)."""
    def keep(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[Mapping[str, Any]]]:
        return {k: [c for c in cells if ends_by(c, end)] for k, cells in rows.items()}

    out: dict[str, Any] = {}
    for stat in STATS:
        t = best_within(keep(theirs), their_budget, stat)
        o = best_within(keep(ours), our_budget, stat)
        any_o = best_within(ours, our_budget, stat)
        r = _ratio(o, t, stat)
        met = None if t is None else (r is not None and r <= 1.0)
        out[stat] = {"ours": o, "theirs": t, "ratio": r, "interval": _interval(o, t, stat), "met": met, "end": end,
                     "ours_any": any_o, "ratio_any": _ratio(any_o, t, stat)}
        if stat == "rmse":
            out[stat]["tail"] = _tail(o, t)
    return out


def budget_rows(rows: Mapping[str, Sequence[Mapping[str, Any]]], budgets: Sequence[int]
                ) -> dict[str, list[dict[str, Any]]]:
    """{label: [cell at each budget that something fits, with 'budget']}: the shape of the accuracy tables."""
    return {label: [{"budget": b, **cell} for b in budgets if (cell := at_budget(cells, b)) is not None]
            for label, cells in rows.items()}


def envelope(rows: Mapping[str, Sequence[Mapping[str, Any]]], budgets: Sequence[int], stat: str,
             ends: Mapping[int, float] | None = None) -> list[tuple[int, float]]:
    """(budget, best value of `stat` at that budget) for the budgets where some sampler has a finite value; with
    `ends`, only runs that end by ends[budget] count (see compare)."""
    points = []
    for b in budgets:
        end = None if ends is None else ends.get(b)
        kept = {k: [c for c in cells if ends_by(c, end)] for k, cells in rows.items()}
        best = best_within(kept, b, stat)
        if best is not None:
            points.append((b, best[stat]))
    return points


# --- running ---------------------------------------------------------------------------------------------------

def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _cell(n_steps: int, nfe: int, rmse: float, median: float, data_std: float, **extra: Any) -> dict[str, Any]:
    """A run as the selection functions read it; extras that are None or empty are left out."""
    return {"n_steps": n_steps, "nfe": nfe, "rmse": _finite(rmse), "rel_rmse": _finite(rmse / data_std),
            "median_err": _finite(median), **{k: v for k, v in extra.items() if v is not None and v != ()}}


def _our_grids(candidate: Candidate, case: Case, max_nfe: int) -> list[tuple[int, torch.Tensor]] | None:
    """(n, sigmas) of a candidate with its own grids on `case`; None when it uses the case's grid family."""
    if candidate.grid is None:
        return None
    if isinstance(candidate.grid, Mapping):
        return [(len(s) - 1, torch.as_tensor(s, dtype=DTYPE)) for s in candidate.grid.get(case.name, [])]
    grids = []
    for n in range(2, max_nfe + 1):
        sigmas = candidate.grid(case, n)
        if sigmas is not None:
            grids.append((n, torch.as_tensor(sigmas, dtype=DTYPE)))
    return grids


def our_runs(runner: CaseRunner, candidate: Candidate, max_nfe: int) -> list[dict[str, Any]]:
    """A candidate's cells on one case: every budget 2..max_nfe on the case's grid (cached in the CaseRunner,
    shared with the accuracy tables; grids of at least 2 intervals: one interval has no ODE to solve, its
    reference is the model's own output), the tolerance ladder for adaptive samplers, or each of its own grids."""
    entry = SAMPLERS[candidate.sampler]
    opts = dict(candidate.options)
    std = runner.data_std
    grids = _our_grids(candidate, runner.case, max_nfe)
    if grids is None:
        if is_adaptive(entry):
            runs = [m for m in runner.ladder(entry, opts) if m.nfe <= max_nfe]
            return [_cell(m.n_steps, m.nfe, m.rmse, m.median_err, std, rtol=m.rtol, error=m.error,
                          sigma_last=runner.sigma_last(ADAPTIVE_GRID), sample_errors=m.sample_errors) for m in runs]
        sizes = sorted({n for b in range(2, max_nfe + 1) if (n := runner.fit(entry, b, opts)) is not None and n >= 2})
        cells = []
        for n in sizes:
            m = runner.run(entry, n, opts)
            cells.append(_cell(n, m.nfe, m.rmse, m.median_err, std, error=m.error, sigma_last=runner.sigma_last(n),
                               sample_errors=m.sample_errors))
        return cells
    cells, over = [], 0
    case_extra = dict(candidate.case_options.get(runner.case.name, {}))
    for n, sigmas in grids:
        options = runner.options(entry, opts)
        nfe = entry.count_model_calls(sigmas, **options)
        if nfe > max_nfe:
            over += 1
            if over >= OVERSHOOT and not isinstance(candidate.grid, Mapping):
                break
            continue
        over = 0
        try:
            with torch.no_grad():
                out = entry(runner.case.problem.model, runner.x0.clone(), sigmas, disable=True, **options,
                            **case_extra)
            rmse, median, per_sample, error = measured(out, runner.refs.target(sigmas))
        except Exception as exc:  # reported in the cell, not fatal
            rmse, median, per_sample, error = math.inf, math.inf, (), f"{type(exc).__name__}: {exc}"
        last = [v for v in sigmas.tolist() if v > 0][-1]
        cells.append(_cell(n, nfe, rmse, median, std, error=error, sigma_last=last, sample_errors=per_sample))
    return cells


def their_runs(comfy_runner: ComfyCaseRunner, sampler: ComfySampler, max_nfe: int) -> list[dict[str, Any]]:
    """A ComfyUI sampler's cells on one case (every grid size, or the tolerance ladder, within max_nfe)."""
    std = comfy_runner.runner.data_std
    return [_cell(r.n_steps, r.nfe, r.rmse, r.median_err, std, rtol=r.rtol, error=r.error, sigma_last=r.sigma_last,
                  stop=r.stop, rmse_grid_ref=_finite(r.rmse_grid_ref), sample_errors=r.sample_errors)
            for r in comfy_runner.scan(sampler, max_nfe)]


def run_comparison(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], comfy: Comfy,
                   budgets: Sequence[int], candidates: Sequence[Candidate] = (),
                   comfy_samplers: Sequence[ComfySampler] = BUILTIN + EXTRA,
                   our_budget: int = OUR_BUDGET, their_budget: int = THEIR_BUDGET) -> dict[str, Any]:
    """Run both sides on every case; returns the JSON-ready comparison (summary, per-budget tables, all cells)."""
    ours_list = [*default_candidates(entries), *candidates]
    labels = [c.label for c in ours_list]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate candidate labels: {sorted({x for x in labels if labels.count(x) > 1})}")
    max_nfe = max([*budgets, our_budget, their_budget])
    plot_budgets = list(range(2, max_nfe + 1))
    cases: dict[str, Any] = {}
    for runner in runners:
        comfy_runner = ComfyCaseRunner(comfy, runner)
        ends = {b: runner.sigma_last(b) for b in plot_budgets}
        ours = {c.label: our_runs(runner, c, max_nfe) for c in ours_list}
        theirs = {s.label: their_runs(comfy_runner, s, max_nfe) for s in comfy_samplers}
        cases[runner.case.name] = {
            "data_std": runner.data_std,
            "summary": compare(ours, theirs, our_budget, their_budget, runner.sigma_last(their_budget)),
            "equal_nfe": {str(b): compare(ours, theirs, b, b, runner.sigma_last(b))
                          for b in sorted({our_budget, their_budget})},
            "theirs_table": budget_rows(theirs, budgets),
            "envelope": {side: {stat: envelope(rows, plot_budgets, stat, ends) for stat in STATS}
                         for side, rows in (("ours", ours), ("theirs", theirs))},
            "ours_runs": ours, "theirs_runs": theirs,
        }
    return {"enabled": True, "comfyui": {"path": comfy.path, "version": comfy.version},
            "samples": {r.case.name: int(r.x0.shape[0]) for r in runners},
            "our_budget": our_budget, "their_budget": their_budget, "budgets": list(budgets),
            "ours": {c.label: {"sampler": c.sampler, "options": dict(c.options),
                               "grid": "case" if c.grid is None else "custom"} for c in ours_list},
            "theirs": {s.label: {"sampler": s.name, "options": dict(s.options), "grid": s.grid,
                                 "extra": s in EXTRA} for s in comfy_samplers},
            "cases": without_sample_errors(cases)}


def disabled(reason: str = ENABLE_HINT) -> dict[str, Any]:
    """The comparison entry of a run without ComfyUI."""
    return {"enabled": False, "how_to_enable": reason}


# --- report ----------------------------------------------------------------------------------------------------

def _who(best: Mapping[str, Any] | None) -> str:
    if best is None:
        return "—"
    extra = f", rtol {best['rtol']:g}" if best.get("rtol") is not None else ""
    if best.get("stop") is not None:
        end = f"ends at σ {best['stop']:.3g}"
    elif best.get("sigma_last") is not None:
        end = f"σ_last {best['sigma_last']:.3g}"
    else:
        end = ""
    return f"{best['label']} ({best['nfe']} calls{extra}{', ' + end if end else ''})"


def _verdict(s: Mapping[str, Any]) -> str:
    """met / not met, with a warning where the ratio's bootstrap interval spans 1."""
    if s["met"] is None:
        return "—"
    text = "**met**" if s["met"] else "not met"
    interval = s.get("interval")
    return f"{text} (interval spans 1)" if interval is not None and interval[0] <= 1.0 <= interval[1] else text


def _ratio_text(s: Mapping[str, Any]) -> str:
    interval = s.get("interval")
    text = fmt_ratio(s["ratio"])
    return text if interval is None else f"{text} ({fmt_ratio(interval[0])}–{fmt_ratio(interval[1])})"


def summary_table(cmp: Mapping[str, Any]) -> str:
    """Per case and metric: our best at our budget, theirs at their budget, the ratio and the verdict."""
    ob, tb = cmp["our_budget"], cmp["their_budget"]
    body = []
    for case, c in cmp["cases"].items():
        std = c["data_std"]
        for stat in STATS:
            s = c["summary"][stat]
            o, t = s["ours"], s["theirs"]
            ours_text = _who(o)
            if o is None and s["ours_any"] is not None:
                a = s["ours_any"]
                ours_text = (f"none ends at σ <= {s['end']:.3g} (best on a shorter ODE: {_who(a)}, "
                             f"{fmt_err(a[stat] / std)}, ratio {fmt_ratio(s['ratio_any'])})")
            body.append([case, STAT_NAMES[stat], ours_text, fmt_err(o[stat] / std) if o else "—",
                         _who(t), fmt_err(t[stat] / std) if t else "—", _ratio_text(s), _verdict(s)])
    return table(["case", "metric", f"ours, NFE <= {ob}", "error / data std", f"ComfyUI, NFE <= {tb}",
                  "error / data std", "ratio ours/theirs (95% interval)", "goal"], body)


def shorter_ode_notes(cmp: Mapping[str, Any]) -> list[str]:
    """One line per case and metric where our best on any grid (ours_any) ends at a higher sigma than theirs."""
    lines = []
    for case, c in cmp["cases"].items():
        for stat in STATS:
            s = c["summary"][stat]
            a = s["ours_any"]
            if a is not None and s["theirs"] is not None and a != s["ours"]:
                lines.append(f"- {case}, {STAT_NAMES[stat]}: our best on any grid within {cmp['our_budget']} calls is "
                             f"{_who(a)} at {fmt_err(a[stat] / c['data_std'])} (ratio {fmt_ratio(s['ratio_any'])}), "
                             f"but its grid ends at σ {a['sigma_last']:.3g}, above {s['end']:.3g} (the case's grid "
                             f"at {cmp['their_budget']} intervals).")
    return lines


def tail_table(cmp: Mapping[str, Any]) -> str | None:
    """Per case, for the two runs the RMSE summary compares: each side's worst noise (error / data std, its share of
    the squared error) and its few worst noises' share, theirs at our worst noise, and the ratio without that noise;
    None when no case carries the tail (documents measured before it was recorded)."""
    rows = [(case, c["summary"]["rmse"], c["data_std"]) for case, c in cmp["cases"].items()
            if c["summary"]["rmse"].get("tail")]
    if not rows:
        return None
    body = []
    for case, s, std in rows:
        tail = s["tail"]
        body.append([case, f"{s['ours']['label']} / {s['theirs']['label']}",
                     *[f"{fmt_err(tail[f'{side}_worst'] / std)} ({tail[f'{side}_worst_share']:.0%}); "
                       f"{tail[f'{side}_top_share']:.0%}" for side in ("ours", "theirs")],
                     f"{fmt_err(tail['theirs_at_ours_worst'] / std)} ({tail['theirs_share_at_ours_worst']:.0%})",
                     fmt_ratio(tail["ratio_without_ours_worst"])])
    top = rows[0][1]["tail"]["top"]
    return table(["case", "ours / theirs", f"ours: worst noise (share); {top} worst's share",
                  f"theirs: worst noise (share); {top} worst's share", "theirs at our worst noise (share)",
                  "RMSE ratio without our worst noise"], body)


def equal_nfe_table(cmp: Mapping[str, Any]) -> str:
    """Per case: best of ours / best of ComfyUI's at the same budget, by RMSE and by median."""
    budgets = list(next(iter(cmp["cases"].values()))["equal_nfe"]) if cmp["cases"] else []
    body = []
    for case, c in cmp["cases"].items():
        line = [case]
        for b in budgets:
            for stat in STATS:
                s = c["equal_nfe"][b][stat]
                line.append(f"{fmt_ratio(s['ratio'])} ({s['ours']['label'] if s['ours'] else '—'} / "
                            f"{s['theirs']['label'] if s['theirs'] else '—'})")
        body.append(line)
    header = ["case", *[f"NFE {b}: {'RMSE' if stat == 'rmse' else 'median'}" for b in budgets for stat in STATS]]
    return table(header, body)


def _their_table(c: Mapping[str, Any], budgets: Sequence[int]) -> str:
    body = budget_table_rows(c["theirs_table"], budgets)
    return table(["ComfyUI sampler", *[f"NFE {b}" for b in budgets]], body)


def _samples_text(cmp: Mapping[str, Any]) -> str:
    counts = cmp.get("samples", {})
    groups: dict[int, list[str]] = {}
    for case in cmp["cases"]:
        if case in counts:
            groups.setdefault(counts[case], []).append(case)
    return "; ".join(f"{n} ({', '.join(cases)})" for n, cases in groups.items()) or "not recorded"


def comparison_markdown(res: Mapping[str, Any]) -> str:
    """The comparison section of the benchmark report (or how to enable it)."""
    cmp = res.get("comparison")
    out = ["## Comparison with ComfyUI's built-in samplers", ""]
    if not cmp or not cmp.get("enabled"):
        return "\n".join([*out, (cmp or {}).get("how_to_enable", ENABLE_HINT), ""])
    ob, tb = cmp["our_budget"], cmp["their_budget"]
    extra = [k for k, v in cmp["theirs"].items() if v["extra"]]
    out += [f"ComfyUI {cmp['comfyui']['version']} imported in-process from `{cmp['comfyui']['path']}` (CPU), its "
            "samplers fetched as KSampler does (`comfy.samplers.sampler_object`, with their extra options) and "
            "given each case's exact model behind a real `comfy.model_sampling` object of the case's family (EPS "
            "for VE, CONST with the case's shift for flow). Same cases, grids (family and step count), float64 "
            "initial noises and references as the accuracy tables; NFE = model calls counted. An error at NFE <= B "
            "is the table cell at budget B (largest grid that fits; adaptive: the tolerance with the most calls "
            "within B); best = smallest over a side's samplers. dpm_fast / dpm_adaptive stop at the last nonzero "
            "sigma and uni_pc at sigma 0.001 instead of 0 (no final denoise): they are measured against the exact "
            "ODE state where they stop. Samplers with eta run at eta 0 (deterministic). '(KSampler grid)': n + 1 "
            f"intervals with the penultimate sigma dropped, as the KSampler node runs uni_pc. Also run beyond the "
            f"issue's list: {', '.join(extra) or 'none'}. σ_last: the grid's last nonzero sigma (the exact ODE runs to "
            "there, then the final denoise); on the flow 'simple' grid it depends on the step count (shift(1/n)), so "
            "there a run at 10 calls and one at 20 solve ODEs of different lengths.", "",
            f"### Summary: our best at NFE <= {ob} vs ComfyUI's best at NFE <= {tb}", "",
            "Ratio < 1: ours is more accurate with half the calls or fewer (the goal). On both sides a run counts "
            f"only where the ODE it solved ends at a sigma no higher than the case's grid at {tb} intervals (a "
            "smaller error on a shorter ODE is no win; uni_pc, which runs to 0.001, always counts); that matters "
            "on the flow 'simple' grid, where it leaves our adaptive samplers (which run between the ends of the "
            "20-interval grid) and, on ComfyUI's side, the one-call-per-step samplers, uni_pc, dpm_fast and "
            "dpm_adaptive, and for the KSampler-grid variants (penultimate sigma dropped).", "",
            f"In brackets: the {LEVEL:.0%} paired bootstrap interval of the ratio ({RESAMPLES} resamples of the "
            "initial noises, each noise's errors of the two chosen runs kept together; samplers/bench/bootstrap.py). "
            "Where it spans 1 the verdict rests on a few noises and could flip on others. Initial noises per case: "
            f"{_samples_text(cmp)}.", "",
            summary_table(cmp), ""]
    notes = shorter_ode_notes(cmp)
    if notes:
        out += ["Not counted (shorter ODE):", "", *notes, ""]
    tails = tail_table(cmp)
    if tails:
        out += ["### Where the RMSE sits", "",
                "The two runs the RMSE row compares, noise by noise (samplers/bench/tail.py): a noise's share is its "
                "squared error over the run's sum of squared errors; errors are the noise's RMS error / data std. A "
                "few noises holding most of a side's share is what makes the RMSE verdict move with the noise set.",
                "", tails, ""]
    out += ["### At equal NFE: best of ours / best of ComfyUI's", "",
            "Cells: error ratio (our best / their best) at the same budget, with the two samplers (runs on grids "
            "ending no higher than the case's grid at that many intervals).", "",
            equal_nfe_table(cmp), ""]
    budgets = cmp["budgets"]
    for case, c in cmp["cases"].items():
        out += [f"### {case}: ComfyUI samplers, RMSE", "", _their_table(c, budgets), ""]
    return "\n".join(out)


def write_plot(path: str, cmp: Mapping[str, Any], median: bool = False) -> None:
    """Per case: the best of ours and the best of ComfyUI's at each NFE budget (error / data std), with the two
    compared points marked. Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stat = "median_err" if median else "rmse"
    cases = list(cmp["cases"])
    ncols = min(3, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows + 0.6), squeeze=False)
    for k, case in enumerate(cases):
        ax = axes[k // ncols][k % ncols]
        c = cmp["cases"][case]
        std = c["data_std"]
        for side, color, name in (("ours", "tab:blue", "ours (best per NFE)"),
                                  ("theirs", "tab:red", "ComfyUI (best per NFE)")):
            pts = c["envelope"][side][stat]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] / std for p in pts], color=color, marker="o", markersize=3,
                        label=name)
        s = c["summary"][stat]
        if s["theirs"]:
            ax.axhline(s["theirs"][stat] / std, color="tab:red", linestyle=":", linewidth=1)
            if s["ours"]:
                ax.plot([s["ours"]["nfe"]], [s["ours"][stat] / std], "*", color="tab:blue", markersize=12)
            ax.plot([s["theirs"]["nfe"]], [s["theirs"][stat] / std], "*", color="tab:red", markersize=12)
            ax.set_title(f"{case}\nratio {fmt_ratio(s['ratio'])}", fontsize=9)
        else:
            ax.set_title(case, fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [t for t in (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50) if t <= max(cmp["budgets"] + [20])]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("model calls (NFE budget)")
        ax.set_ylabel(("median sample error" if median else "RMSE") + " / data std")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for k in range(len(cases), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    fig.suptitle(f"Best of ours vs best of ComfyUI's built-in samplers per NFE budget (stars: ours at <= "
                 f"{cmp['our_budget']}, ComfyUI at <= {cmp['their_budget']}; dotted: ComfyUI's level)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
