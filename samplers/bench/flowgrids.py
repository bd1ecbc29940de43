"""Flow models at low NFE: is it the grid or the integrator? (issue 8 follow-up, docs/flow_lownfe.md)

ComfyUI's dpm_fast wins the flow comparison at 20 calls by ignoring the 'simple' grid: it steps uniformly in
-log(sigma) from sigma_max to the grid's last nonzero sigma with the DPM-Solver-fast orders, in the VE form. The
flow ODE dx/dsigma = (x - D(x, sigma)) / sigma has the VE ODE's form, so schedule="ve" (half-log-SNR
lambda = -log sigma, linear part x / sigma) is a valid exponential integrator for it, finite at sigma = 1.

This module measures our samplers in both forms (schedule "ve" / "flow") on grids from sigma_max to where the
case's 20-interval grid ends (shift(1/20) = 0.136 at shift 3): log-sigma-uniform, the 'simple' family with those
ends, and the DPM-Solver-fast step grid, with and without the final denoise; and offers the winners as
comparison candidates (`python -m samplers.bench --candidates samplers.bench.flowgrids`). Run
`python -m samplers.bench.flowgrids --help` to regenerate docs/flow_lownfe.md.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import grids
from ..calibrate import calibrate_grid
from ..plan import fast_orders
from ..registry import SAMPLERS
from .calibrated import (
    CALIBRATION_SAMPLES,
    CALIBRATION_SEED,
    EVALUATION_SAMPLES,
    MAX_EVALS,
    NETWORK_CALIBRATION_SAMPLES,
    NETWORK_EVALUATION_SAMPLES,
    add_evaluation_arguments,
    calibration_noise,
    calibration_references,
    evaluation_counts,
    evaluation_runner,
    long_flow_case,
)
from .cases import Case, all_cases
from .comparison import Candidate, equal_nfe_table, summary_table
from .measure import DTYPE, CaseRunner, errors
from .networks import is_network, network_cases
from .report import fmt_err, table

LONG_STEPS = 20
"""The ODE ends where the case's grid with this many intervals ends (the comparison's 20-call yardstick)."""
NFES = (10, 20)
FORMS = ("ve", "flow")
STUDY_SAMPLERS = ("dpm_solver_2", "dpm_solver_3", "dpm_solver_2m", "dpm_solver_3m", "dpm_solver_pp_2m",
                  "dpm_solver_pp_3m", "dpm_solver_pp_3s", "dpm_solver_fast", "dpm_solver_pp_pc")
CALIBRATED = (("dpm_solver_pp_pc", "ve"), ("dpm_solver_pp_pc", "flow"), ("dpm_solver_pp_3m", "ve"))
_FRACTIONS = {1: (), 2: (0.5,), 3: (1.0 / 3.0, 2.0 / 3.0)}
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "flow_lownfe.json"


def ode_end(case: Case, steps: int = LONG_STEPS) -> float:
    """The last nonzero sigma of the case's `steps`-interval grid (shift(1/steps) on flow 'simple')."""
    return [v for v in case.grid(steps).tolist() if v > 0][-1]


def log_sigma_grid(n: int, sigma_max: float, sigma_last: float, final_denoise: bool) -> torch.Tensor:
    """n intervals uniform in log sigma from sigma_max to sigma_last, then 0 when `final_denoise`."""
    if n < 1 or not 0 < sigma_last < sigma_max:
        raise ValueError(f"log_sigma_grid needs n >= 1 and 0 < sigma_last < sigma_max, got n={n}, "
                         f"sigma_last={sigma_last}, sigma_max={sigma_max}")
    return grids.exponential(n + 1, sigma_last, sigma_max, append_zero=final_denoise)


def fast_step_grid(nfe: int, sigma_max: float, sigma_last: float) -> torch.Tensor:
    """The grid ComfyUI's dpm_fast steps on for `nfe` calls: K = nfe // 3 + 1 step ends uniform in log sigma from
    sigma_max to sigma_last, each step of order k (fast_orders) with interior points at lambda fractions 1/3, 2/3
    (k = 3) or 1/2 (k = 2); no final 0. dpm_solver_fast with schedule='ve' on it is the same method."""
    if nfe < 1 or not 0 < sigma_last < sigma_max:
        raise ValueError(f"fast_step_grid needs nfe >= 1 and 0 < sigma_last < sigma_max, got nfe={nfe}, "
                         f"sigma_last={sigma_last}, sigma_max={sigma_max}")
    orders = fast_orders(nfe)
    a, b = math.log(sigma_max), math.log(sigma_last)
    ends = [a + (b - a) * i / len(orders) for i in range(len(orders) + 1)]
    points = [sigma_max]
    for order, s, t in zip(orders, ends[:-1], ends[1:], strict=True):
        points += [math.exp(s + r * (t - s)) for r in _FRACTIONS[order]] + [math.exp(t)]
    points[-1] = sigma_last
    return torch.tensor(points, dtype=DTYPE)


GRID_FAMILIES: dict[str, Callable[[Case, int, bool], torch.Tensor | None]] = {
    "log σ": lambda case, n, final: log_sigma_grid(n - 1 if final else n, case.problem.sigma_max, ode_end(case),
                                                   final) if n > (1 if final else 0) else None,
    "simple (t to 1/20)": lambda case, n, final: _simple_long(case, n, final),
}


def _simple_long(case: Case, n: int, final: bool) -> torch.Tensor | None:
    """shift(t), t uniform from 1 to 1/LONG_STEPS: n intervals (the last one to 0 when `final`)."""
    full = long_flow_case(case, LONG_STEPS).grid(n if final else n + 1)
    return full if final else full[:-1]


def _is_flow(case: Case) -> bool:
    return case.schedule == "flow"


def _source(family: str, final: bool) -> Callable[[Case, int], torch.Tensor | None]:
    def grid(case: Case, n: int) -> torch.Tensor | None:
        return GRID_FAMILIES[family](case, n, final) if _is_flow(case) else None
    return grid


def _fast_source(case: Case, n: int) -> torch.Tensor | None:
    return fast_step_grid(n, case.problem.sigma_max, ode_end(case)) if _is_flow(case) else None


def candidates() -> list[Candidate]:
    """Comparison candidates (flow cases only): VE-form samplers on log-sigma grids to the 20-interval grid's end,
    with and without the final denoise; DPM-Solver++ PC in the flow form on the same grid; dpm_solver_fast in VE
    form on dpm_fast's own step grid (its twin)."""
    ve = {"schedule": "ve"}
    out = [Candidate(f"{SAMPLERS[s].label} [VE form, log σ to σ_20]", s, _source("log σ", False), ve)
           for s in ("dpm_solver_pp_pc", "dpm_solver_pp_3m", "dpm_solver_3m")]
    out += [Candidate("DPM-Solver++ PC [VE form, log σ to σ_20, final denoise]", "dpm_solver_pp_pc",
                      _source("log σ", True), ve),
            Candidate("DPM-Solver++ PC [flow form, log σ to σ_20]", "dpm_solver_pp_pc", _source("log σ", False),
                      {"schedule": "flow"}),
            Candidate("DPM-Solver-fast [VE form, dpm_fast step grid]", "dpm_solver_fast", _fast_source, ve)]
    return out + calibrated_candidates()


def calibrated_candidates(path: Path | None = None) -> list[Candidate]:
    """The calibrated grids of `path` (default docs/flow_lownfe.json, written by this module; none when absent)
    as fixed-grid candidates, one per (sampler, form), on the cases they were calibrated for."""
    path = RESULTS if path is None else path
    if not path.is_file():
        return []
    found: dict[tuple[str, str], dict[str, list[list[float]]]] = {}
    for name, case in json.loads(path.read_text())["cases"].items():
        for r in case.get("calibrated", []):
            found.setdefault((r["sampler"], r["schedule"]), {}).setdefault(name, []).append(r["sigmas"])
    return [Candidate(f"{SAMPLERS[sampler].label} [{'VE' if form == 've' else form} form, calibrated from log σ]",
                      sampler, grid, {"schedule": form}) for (sampler, form), grid in found.items()]


CANDIDATES = candidates


# --- study -----------------------------------------------------------------------------------------------------

def _error(case: Case, runner: CaseRunner, targets: Callable[[torch.Tensor], torch.Tensor], sampler: str,
           sigmas: torch.Tensor, schedule: str,
           ) -> dict[str, Any]:
    entry = SAMPLERS[sampler]
    with torch.no_grad():
        out = entry(case.problem.model, runner.x0.clone(), sigmas, disable=True, schedule=schedule)
    rmse, median = errors(out, targets(sigmas))
    return {"rmse": rmse, "rel_rmse": rmse / runner.data_std, "median_err": median}


def _largest(sampler: str, schedule: str, make: Callable[[int], torch.Tensor | None], nfe: int
             ) -> torch.Tensor | None:
    """The grid with the most intervals that costs `sampler` at most `nfe` calls (grids of 1..2*nfe intervals)."""
    best = None
    for n in range(1, 2 * nfe + 1):
        sigmas = make(n)
        if sigmas is not None and SAMPLERS[sampler].count_model_calls(sigmas, schedule=schedule) <= nfe:
            best = sigmas
    return best


def grid_form_study(case: Case, runner: CaseRunner, samplers: Sequence[str] = STUDY_SAMPLERS,
                    nfes: Sequence[int] = NFES) -> list[dict[str, Any]]:
    """Per NFE budget, grid family, final denoise or not, sampler and form: the error on the largest grid that fits
    (all grids run from sigma_max to ode_end(case))."""
    targets = runner.refs.target
    rows = []
    for nfe in nfes:
        for final in (False, True):
            plans = [(fam, s, lambda n, fam=fam, final=final: GRID_FAMILIES[fam](case, n, final))
                     for fam in GRID_FAMILIES for s in samplers]
            plans.append(("dpm_fast steps", "dpm_solver_fast", lambda n, nfe=nfe, final=final: (
                None if n != nfe - final else _with_zero(fast_step_grid(n, case.problem.sigma_max, ode_end(case)),
                                                         final))))
            for family, sampler, make in plans:
                for form in FORMS:
                    sigmas = _largest(sampler, form, make, nfe)
                    if sigmas is None:
                        continue
                    cell = _error(case, runner, targets, sampler, sigmas, form)
                    rows.append({"nfe": nfe, "grid": family, "final_denoise": final, "sampler": sampler,
                                 "schedule": form, "intervals": len(sigmas) - 1, "calls": SAMPLERS[sampler]
                                 .count_model_calls(sigmas, schedule=form), **cell})
    return rows


def _with_zero(sigmas: torch.Tensor, final: bool) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)]) if final else sigmas


def _start_grid(case: Case, sampler: str, form: str, nfe: int) -> torch.Tensor | None:
    """The log-sigma grid a calibration starts from: the largest that costs the sampler at most `nfe` calls."""
    return _largest(sampler, form, lambda n: GRID_FAMILIES["log σ"](case, n, False), nfe)


def calibrated_study(case: Case, runner: CaseRunner, nfe: int = 10, pairs: Sequence[tuple[str, str]] = CALIBRATED,
                     max_evals: int = MAX_EVALS) -> list[dict[str, Any]]:
    """Grids calibrated (calibrate_grid, from the log-sigma grid, ends kept, no final denoise) on noises of
    CALIBRATION_SEED and evaluated on the runner's noises."""
    network = is_network(case)
    count = NETWORK_CALIBRATION_SAMPLES if network else CALIBRATION_SAMPLES
    noise = calibration_noise(case, count)
    refs = calibration_references(case, noise)
    targets = runner.refs.target
    rows = []
    for sampler, form in pairs:
        start = _start_grid(case, sampler, form, nfe)
        if start is None:
            continue
        calls = SAMPLERS[sampler].count_model_calls(start, schedule=form)
        grid = calibrate_grid(case.problem.model, sampler, calls, start, noise, form, reference=refs.target(start),
                              max_evals=max_evals)
        rows.append({"sampler": sampler, "schedule": form, "nfe": calls, "calibration_samples": count,
                     "start": _error(case, runner, targets, sampler, start, form),
                     "calibrated": _error(case, runner, targets, sampler, grid.sigmas, form),
                     "sigmas": grid.sigmas.tolist()})
    return rows


# --- report ----------------------------------------------------------------------------------------------------

def _study_table(rows: Sequence[dict[str, Any]], nfe: int) -> str:
    cells: dict[tuple[str, str], dict[tuple[str, bool], float]] = {}
    cols = [(g, f) for g in [*GRID_FAMILIES, "dpm_fast steps"] for f in FORMS]
    for r in rows:
        if r["nfe"] == nfe and not r["final_denoise"]:
            cells.setdefault((r["sampler"], r["grid"]), {})[(r["schedule"], False)] = r["rel_rmse"]
    best = min((v for d in cells.values() for v in d.values() if math.isfinite(v)), default=None)
    body = []
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        line = [SAMPLERS[sampler].label]
        for grid, form in cols:
            v = cells.get((sampler, grid), {}).get((form, False))
            text = "—" if v is None else fmt_err(v)
            line.append(f"**{text}**" if v is not None and v == best else text)
        body.append(line)
    return table(["sampler", *[f"{g}, {f}" for g, f in cols]], body)


def _final_table(rows: Sequence[dict[str, Any]], std: float) -> str:
    body = []
    for nfe in sorted({r["nfe"] for r in rows}):
        for r in rows:
            if r["nfe"] == nfe and r["sampler"] == "dpm_solver_pp_pc" and r["grid"] == "log σ":
                body.append([str(nfe), r["schedule"], "yes" if r["final_denoise"] else "no", str(r["calls"]),
                             fmt_err(r["rel_rmse"]), fmt_err(r["median_err"] / std)])
    return table(["NFE", "form", "final denoise", "calls", "RMSE / data std", "median error / data std"], body)


def _best(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The row of smallest finite rel_rmse among those whose fields equal `match`."""
    kept = [r for r in rows if all(r[k] == v for k, v in match.items()) and math.isfinite(r["rel_rmse"])]
    return min(kept, key=lambda r: r["rel_rmse"], default=None)


def _say(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    final = ", final denoise" if r["final_denoise"] else ""
    return f"{SAMPLERS[r['sampler']].label}, {r['schedule']} form, {r['grid']}{final}: {fmt_err(r['rel_rmse'])}"


def findings(case: dict[str, Any]) -> list[str]:
    """The headline numbers of one case: the dpm_fast twin at 20 calls against our best at 10 and 20, per grid
    family and form."""
    rows = case["study"]
    twin = _best(rows, nfe=20, grid="dpm_fast steps", schedule="ve", final_denoise=False)
    lines = [f"- ComfyUI's dpm_fast at 20 calls (its twin: DPM-Solver-fast, VE form, dpm_fast steps): "
             f"{fmt_err(twin['rel_rmse']) if twin else '—'}."]
    for nfe in NFES:
        for grid in GRID_FAMILIES:
            for form in FORMS:
                best = _best(rows, nfe=nfe, grid=grid, schedule=form)
                ratio = f" ({best['rel_rmse'] / twin['rel_rmse']:.2f}x dpm_fast@20)" if best and twin else ""
                lines.append(f"- NFE {nfe}, {grid}, {form} form: best {_say(best)}{ratio}.")
    for grid in GRID_FAMILIES:
        pairs = [(r, _best(rows, nfe=r["nfe"], grid=grid, sampler=r["sampler"], final_denoise=r["final_denoise"],
                           schedule="flow")) for r in rows if r["grid"] == grid and r["schedule"] == "ve"]
        wins = [ve["rel_rmse"] < flow["rel_rmse"] for ve, flow in pairs if flow is not None]
        gains = [flow["rel_rmse"] / ve["rel_rmse"] for ve, flow in pairs if flow is not None]
        if gains:
            lines.append(f"- {grid}: the VE form beats the flow form in {sum(wins)} of {len(wins)} (sampler, NFE, "
                         f"final denoise) pairs; error ratio flow / VE from {min(gains):.2f} to {max(gains):.2f}.")
    for r in case.get("calibrated", []):
        ratio = f" ({r['calibrated']['rel_rmse'] / twin['rel_rmse']:.2f}x dpm_fast@20)" if twin else ""
        lines.append(f"- NFE {r['nfe']}, calibrated from log σ, {SAMPLERS[r['sampler']].label}, {r['schedule']} "
                     f"form: {fmt_err(r['calibrated']['rel_rmse'])}{ratio}.")
    return lines


def comparison_command(networks: bool = False) -> str:
    """The benchmark run whose ComfyUI comparison section this module renders: on the flow mixture, or with
    `networks` on the demo flow network, on the comparison's noises."""
    cases = (f"--networks --problems 'digits_flow/*' --network-samples {NETWORK_EVALUATION_SAMPLES}" if networks
             else f"--problems 'flow_mixture/*' --samples {EVALUATION_SAMPLES}")
    skip = "study,overhead,adaptive,distribution,noise" + (",network_distribution" if networks else "")
    return (f"COMFYUI_PATH=/tmp/ComfyUI python -m samplers.bench {cases} --skip {skip} "
            "--candidates samplers.bench.flowgrids --json PATH")



def comparison_section(bench: dict[str, Any]) -> list[str]:
    """The ComfyUI comparison (summary and equal-NFE tables) of a benchmark run with these candidates."""
    cmp = bench.get("comparison") or {}
    if not cmp.get("enabled"):
        return []
    cases = ", ".join(cmp["cases"])
    command = comparison_command(any(is_network(name) for name in cmp["cases"]))
    return [f"## ComfyUI comparison with these candidates: {cases}", "",
            f"`{command}` (ComfyUI {cmp['comfyui']['version']}); see docs/comparison.md for the rules.",
            "", f"Our best at NFE <= {cmp['our_budget']} vs ComfyUI's best at NFE <= {cmp['their_budget']}:", "",
            summary_table(cmp), "", "At equal NFE (our best / their best):", "", equal_nfe_table(cmp), ""]


def report(res: dict[str, Any]) -> str:
    """docs/flow_lownfe.md from the results."""
    out = ["# Flow models at 10 calls: grid or integrator?", "",
           "Regenerate: `python -m samplers.bench.flowgrids --networks [--comparison BENCH.json ...]` (writes "
           "docs/flow_lownfe.md and .json; `--render` re-renders them only, `--evaluate-only` measures the saved "
           "grids again and runs the study again, calibrating nothing). Every run "
           f"solves the ODE from sigma_max = 1 to the end of the case's {LONG_STEPS}-interval 'simple' grid "
           "(shift(1/20) = 0.136), the runs the ComfyUI comparison counts against dpm_fast at 20 calls. Error: "
           "RMSE / data std against the exact ODE state there (or its denoised value with the final denoise), "
           "on the benchmark's noises (their number is given per case). Form 've': schedule='ve' (exponential "
           "integrator in lambda = -log sigma, linear part x / sigma, a valid solver of the flow ODE "
           "dx/dsigma = (x - D)/sigma); "
           "'flow': schedule='flow' (lambda = log((1 - sigma)/sigma)). Grids: 'log σ' uniform in log sigma; "
           "'simple (t to 1/20)' sigma = shift(t), t uniform from 1 to 1/20; 'dpm_fast steps' the step grid "
           "ComfyUI's dpm_fast uses (dpm_solver_fast on it in VE form is the same method). Cell: the largest grid "
           "whose calls fit the budget; no final denoise unless stated.", ""]
    for name, case in res["cases"].items():
        out += [f"## {name} (data std {case['data_std']:.4g}, {case['evaluation_samples']} evaluation noises)", "",
                "RMSE / data std:", "", *findings(case), ""]
        for nfe in NFES:
            out += [f"### NFE <= {nfe}", "", _study_table(case["study"], nfe), ""]
        out += ["### DPM-Solver++ PC on the log σ grid: form and final denoise", "",
                _final_table(case["study"], case["data_std"]), ""]
        if case.get("calibrated"):
            body = [[SAMPLERS[r["sampler"]].label, r["schedule"], str(r["nfe"]), fmt_err(r["start"]["rel_rmse"]),
                     fmt_err(r["calibrated"]["rel_rmse"]), fmt_err(r["calibrated"]["median_err"] / case["data_std"])]
                    for r in case["calibrated"]]
            out += [f"### Calibrated grids (from log σ, {case['calibrated'][0]['calibration_samples']} noises of seed "
                    f"{CALIBRATION_SEED}, evaluated on the benchmark's)", "",
                    table(["sampler", "form", "NFE", "log σ", "calibrated", "median / data std, calibrated"], body), ""]
    out += res.get("comparison_section", [])
    return "\n".join(out)


def run(cases: Sequence[Case], calibrate: bool = True,
        evaluation: tuple[int, int] = (EVALUATION_SAMPLES, NETWORK_EVALUATION_SAMPLES)) -> dict[str, Any]:
    """The study (and calibrated grids) on each flow case, on `evaluation` noises (analytic cases, networks)."""
    res: dict[str, Any] = {"cases": {}}
    for case in cases:
        if not _is_flow(case):
            continue
        runner = evaluation_runner(case, evaluation)
        res["cases"][case.name] = {"data_std": runner.data_std, "ode_end": ode_end(case),
                                   "evaluation_samples": runner.x0.shape[0], "study": grid_form_study(case, runner),
                                   "calibrated": calibrated_study(case, runner) if calibrate else []}
    return res


def evaluate(res: dict[str, Any], evaluation: tuple[int, int] = (EVALUATION_SAMPLES, NETWORK_EVALUATION_SAMPLES)
             ) -> dict[str, Any]:
    """`res` (run's) measured again on `evaluation` noises: the study run again, the saved calibrated grids and
    their starting grids measured again; nothing is calibrated."""
    out: dict[str, Any] = {**res, "cases": {}}
    for name, old in res["cases"].items():
        runner = evaluation_runner(name, evaluation)
        case = runner.case
        targets = runner.refs.target
        rows = []
        for row in old["calibrated"]:
            sampler, form = row["sampler"], row["schedule"]
            start = _start_grid(case, sampler, form, row["nfe"])
            if start is None:
                raise ValueError(f"{name}: no log σ grid of {sampler} ({form}) fits {row['nfe']} calls")
            rows.append({**row, "start": _error(case, runner, targets, sampler, start, form),
                         "calibrated": _error(case, runner, targets, sampler, torch.tensor(row["sigmas"], dtype=DTYPE),
                                              form)})
        out["cases"][name] = {**old, "evaluation_samples": runner.x0.shape[0], "study": grid_form_study(case, runner),
                              "calibrated": rows}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m samplers.bench.flowgrids", description=__doc__.split("\n")[0])
    p.add_argument("--networks", action="store_true", help="also the demo flow network digits_flow/simple")
    p.add_argument("--no-calibrate", action="store_true", help="skip the calibrated grids")
    p.add_argument("--comparison", type=Path, metavar="JSON", action="append", default=[],
                   help=f"add the comparison section of a benchmark JSON written by: {comparison_command()} "
                        "(repeatable; with --networks --problems 'digits_flow/*' for the demo flow network)")
    p.add_argument("--render", action="store_true",
                   help="no runs: re-render the .md from the --out JSON (plus any --comparison sections)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="calibrate nothing: run the study again and measure the calibrated grids of the --out JSON "
                        "again on the evaluation noises (its cases; comparison sections only from --comparison)")
    add_evaluation_arguments(p)
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON path (the .md is written beside it)")
    args = p.parse_args(argv)
    evaluation = evaluation_counts(p, args)
    if (args.render or args.evaluate_only) and not args.out.is_file():
        p.error(f"no results to read ({args.out} does not exist)")
    torch.set_num_threads(1)
    if args.render:
        res = json.loads(args.out.read_text())
    elif args.evaluate_only:
        res = evaluate(json.loads(args.out.read_text()), evaluation)
    else:
        cases: list[Case] = list(all_cases())
        if args.networks:
            cases += network_cases(evaluation[1])
        res = run(cases, calibrate=not args.no_calibrate, evaluation=evaluation)
    if args.comparison or not args.render:
        res["comparison_section"] = [line for path in args.comparison
                                     for line in comparison_section(json.loads(path.read_text()))]
    args.out.write_text(json.dumps(res, indent=1))
    args.out.with_suffix(".md").write_text(report(res))
    print(report(res))


if __name__ == "__main__":
    main()
