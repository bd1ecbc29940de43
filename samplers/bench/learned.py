"""Learned plans on the benchmark cases: a sampler on its calibrated grid (GRID_SOURCES) against the same sampler
and grid with learned coefficient corrections and sigma shifts (samplers/learned.py), learned on noises of the
calibration seed and evaluated on the benchmark's evaluation noises, next to ComfyUI's best sampler at 20 calls
(docs/comparison.json, docs/comparison_networks.json). The plans are saved to PLANS, where
`comparison_candidates` finds them for the comparison run. Run `python -m samplers.bench.learned --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..learned import LEARN_RATE, LearnedPlan, learn_plan, load_learned, plan_objective, save_learned
from ..registry import SAMPLERS
from .arguments import names_in, positive_int
from .calibrated import (
    CALIBRATION_SEED,
    EVALUATION_SAMPLES,
    NETWORK_EVALUATION_SAMPLES,
    add_evaluation_arguments,
    calibration_noise,
    calibration_references,
    evaluation_counts,
    evaluation_runner,
)
from .comparison import Candidate
from .measure import DTYPE, CaseRunner, errors
from .networks import is_network
from .problems import SEED
from .report import table

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLANS = DOCS / "learned_plans"
"""The learned plans of the runs (small safetensors files; comparison_candidates reads them)."""
LEARN_SAMPLES = 4096
"""Calibration noises: with 512 the learned corrections overfit the few trajectories that dominate the RMSE
(ve_mixture_cfg7.5/karras, DPM-Solver++ PC: calibration 1.29e-2 -> 5.3e-3 but evaluation 8.3e-3 -> 1.2e-2)."""
NETWORK_LEARN_SAMPLES = 256
"""Demo networks, by default and at most through --samples: each Adam step runs the network forward and backward on
every noise at every call (a run's own `samples` may ask for more)."""
GRID_SOURCES = ("calibrated.json", "calibrated_networks.json", "flow_lownfe.json")
"""Where the calibrated grids come from (docs/): samplers.bench.calibrated (analytic and network cases) and
samplers.bench.flowgrids (flow cases from a log-sigma grid, row keys 'sampler@form')."""


class LearnRun(NamedTuple):
    """One learned plan: the case, the calibrated-grid row key it starts from, Adam steps and rate, whether the
    grid's interior moves too (learn_plan's learn_grid), the case whose calibrated grid it starts from (default:
    its own; another case of the same ODE, i.e. the same grid ends, is allowed), the number of calibration
    noises (default: LEARN_SAMPLES, demo networks NETWORK_LEARN_SAMPLES), the objective (learn_plan's: "rmse"
    or "mean") and the history width (learn_plan's `history`: 0 keeps the sampler's own terms)."""

    case: str
    key: str
    steps: int
    lr: float
    learn_grid: bool = False
    start: str | None = None
    samples: int | None = None
    objective: str = "rmse"
    history: int = 0

    @property
    def row(self) -> str:
        """The run's key in the results: its calibrated-grid row key, plus the objective where not "rmse" and the
        history where not 0."""
        key = self.key if self.objective == "rmse" else f"{self.key};objective={self.objective}"
        return key if self.history == 0 else f"{key};history={self.history}"


RUNS = (
    LearnRun("ve_mixture/karras", "dpm_solver_pp_pc;third_order=consistent", 1800, 0.02, True, samples=16384),
    LearnRun("ve_mixture/exponential", "dpm_solver_pp_pc", 1800, 0.02, True, samples=16384),
    LearnRun("ve_mixture_cfg7.5/karras", "dpm_solver_pp_pc", 5000, 0.04, True),
    LearnRun("ve_mixture_cfg7.5/exponential", "dpm_solver_pp_pc", 5000, 0.04, True, "ve_mixture_cfg7.5/karras"),
    LearnRun("flow_mixture/simple", "dpm_solver_pp_pc@ve", 5000, 0.04, True, samples=8192),
    LearnRun("digits_eps/karras", "dpm_solver_pp_pc", 1800, 0.02, True, samples=1024),
    LearnRun("digits_eps/exponential", "dpm_solver_pp_pc", 1800, 0.02, True, "digits_eps/karras", 1024),
    LearnRun("digits_flow/simple", "dpm_solver_pp_pc@ve", 600, 0.02, True),
    LearnRun("ve_mixture/karras", "dpm_solver_pp_pc;third_order=consistent", 1800, 0.02, True, objective="mean"),
    LearnRun("ve_mixture/exponential", "dpm_solver_pp_pc", 1800, 0.02, True, objective="mean"),
    LearnRun("ve_mixture_cfg7.5/karras", "dpm_solver_pp_pc", 5000, 0.04, True, objective="mean"),
    LearnRun("ve_mixture_cfg7.5/exponential", "dpm_solver_pp_pc", 5000, 0.04, True, "ve_mixture_cfg7.5/karras",
             objective="mean"),
    LearnRun("flow_mixture/simple", "dpm_solver_pp_pc@ve", 5000, 0.04, True, samples=8192, objective="mean"),
    LearnRun("digits_eps/karras", "dpm_solver_pp_pc", 1800, 0.02, True, objective="mean"),
    LearnRun("digits_eps/exponential", "dpm_solver_pp_pc", 1800, 0.02, True, "digits_eps/karras", objective="mean"),
    LearnRun("digits_flow/simple", "dpm_solver_pp_pc@ve", 600, 0.02, True, objective="mean"),
    LearnRun("digits_eps/karras", "dpm_solver_3m", 2400, 0.02, True, samples=512, objective="mean", history=4),
    LearnRun("digits_eps/exponential", "dpm_solver_3m", 2400, 0.02, True, "digits_eps/karras", 512, "mean", 4),
)
"""Per case the calibrated sampler whose learned plan was most accurate at 10 calls, with the grid learned too (held-out
figures here on the 128 evaluation noises, networks 32, used when each was tried): against
the calibrated grid kept fixed, held-out RMSE ve_mixture/karras 3.74e-3 -> 3.56e-3, exponential 3.24e-3 -> 3.23e-3,
ve_mixture_cfg7.5/karras 2.50e-3 -> 1.67e-3, flow_mixture 8.50e-4 -> 8.12e-4 (7.16e-4 with 8192 noises),
digits_eps/karras 2.06e-2 -> 8.92e-3 (256 noises; 7.96e-3 with 1024), digits_flow 2.58e-3 -> 2.18e-3. With the grid
free, the Karras and the exponential case of a problem are one ODE (same ends), and the learned grid depends on where it
starts: the exponential cases start from the Karras case's grid (ve_mixture_cfg7.5/exponential from its own PC grid
2.75e-3, from its 3M (consistent) grid 2.24e-3, from the Karras PC grid 1.67e-3; digits_eps/exponential from its own
1.29e-2, on its fixed grid 1.16e-2, from the Karras grid 8.92e-3). Steps: 600 (the library default) left the CFG cases
short of convergence (ve_mixture_cfg7.5/karras, DPM-Solver++ PC, fixed grid: 3.63e-3 at 600 steps, 3.01e-3 at 1800,
2.50e-3 at 5000 with rate 0.04); more is not better everywhere (ve_mixture_cfg7.5/exponential, 3M (consistent), fixed
grid, at 10000 steps: calibration objective 2.73e-3 against 2.78e-3 at 5000, held out 2.52e-3 against 2.24e-3;
flow_mixture, grid learned, at 10000 steps against 5000: calibration objective 6.52e-4 against 6.84e-4, held out 7.43e-4
against 7.16e-4). On the demo networks each step is a forward and backward pass of the network per noise and call (1800
steps: about 20 min per run with 256 noises, 72 min with 1024); digits_eps overfits 256 noises (calibration objective
5.0e-3, held out 8.92e-3) and learns on 1024 (5.37e-3, held out 7.96e-3). Measured on fixed grids at 600 steps and not
kept: DPM-Solver 3M (consistent) on every VE case (1.12, 1.10, 1.46 of ComfyUI's best at 20 calls), DPM-Solver++ PC on
ve_mixture/karras (1.08; the consistent variant 1.06) and on ve_mixture_cfg7.5/exponential (2.69), DPM-Solver++ 3M
(consistent) on ve_mixture (1.32, 1.34), and the flow form on the flow 'simple' grid ending at sigma_20 (PC 8.64, 3M
consistent 9.83). The objective="mean" runs repeat the analytic ones fitted to the typical sample: on 4096 held-out
noises (docs/comparison_lownfe.md) the median error falls 3.2x (VE Karras), 2.2x (CFG 7.5), 2.5x (flow mixture) and the
RMSE rises (VE Karras 4.68e-3, the default plan learned on 4096 noises, -> 7.16e-3; CFG 2.71e-3 -> 2.77e-3). On the
demo networks (256 noises; 128 held out) the median error falls 4.01e-3 -> 3.46e-3 with the eps network (RMSE
6.34e-3 -> 8.26e-3) and 9.03e-4 -> 6.34e-4 with the flow network, whose RMSE falls too (1.74e-3 -> 1.41e-3). The VE
cases without CFG learn on 16384 noises instead of 4096: held out on 4096, RMSE 4.68e-3 -> 4.20e-3 (Karras) and
4.60e-3 -> 4.27e-3 (exponential), calibration objective 3.89e-3 and 3.59e-3 (11 min per run). The history-4 runs (every
stage also reads the D and eps of the 4 newest calls) of the demo eps network: on 256 noises and 600 steps, mean
objective, DPM-Solver 3M reached a held-out median error of 2.90e-3 (RMSE 5.31e-3; with the RMSE objective 3.91e-3 and
5.30e-3, so the mean plan is the one kept), with history 6 2.89e-3 (5.69e-3), DPM-Solver++ PC with history 4 2.99e-3
(8.94e-3), against 3.61e-3 (1.06e-2) for PC without history under the same settings; on 1024 noises with 600 steps 3M
with history 4 reaches 2.62e-3 (RMSE 5.42e-3; 31 min), on 256 noises with 1800 steps 2.38e-3 (RMSE 5.33e-3;
22 min), and on 512 noises with 2400 steps 2.27e-3 (RMSE 4.76e-3; calibration objective 3.03e-3 against 3.05e-3 on 256
noises; 55 min), the run kept here. On ve_mixture/karras (4096 noises, 600 steps, RMSE objective) history 4 did not
help: PC (consistent) 5.38e-3 -> 9.70e-3 held out (5.27e-3 at rate 0.005), 3M (consistent) 6.73e-3 -> 6.20e-3, both
short of PC without history."""


def grid_rows(name: str, docs: Path = DOCS) -> dict[str, dict[str, Any]]:
    """The calibrated 10-call grids of case `name`: {key: {label, sampler, schedule, options, sigmas}}."""
    rows: dict[str, dict[str, Any]] = {}
    for source in GRID_SOURCES:
        path = docs / source
        if not path.is_file():
            continue
        case = json.loads(path.read_text())["cases"].get(name)
        if case is None:
            continue
        for key, row in case.get("nfes", {}).get("10", {}).items():
            rows[key] = {"label": row["label"], "sampler": row["sampler"], "schedule": case["schedule"],
                         "options": row["options"], "sigmas": row["sigmas"]}
        for row in case.get("calibrated", []):
            if row["nfe"] == 10:
                form = "VE" if row["schedule"] == "ve" else row["schedule"]
                rows[f"{row['sampler']}@{row['schedule']}"] = {
                    "label": f"{SAMPLERS[row['sampler']].label} [{form} form, from a log σ grid]",
                    "sampler": row["sampler"], "schedule": row["schedule"], "options": {}, "sigmas": row["sigmas"]}
    return rows


def start_row(run: LearnRun, docs: Path) -> dict[str, Any]:
    """The calibrated grid row `run` starts from; one of another case must have the same ends as the run's own."""
    source = run.start or run.case
    rows = grid_rows(source, docs)
    if run.key not in rows:
        raise KeyError(f"{source}: no calibrated 10-call grid {run.key!r} in docs/{', docs/'.join(GRID_SOURCES)}")
    row = rows[run.key]
    own = next(iter(grid_rows(run.case, docs).values()), None)
    if source != run.case and (own is None or not all(
            math.isclose(a, b, rel_tol=1e-9) for a, b in zip(_ends(row["sigmas"]), _ends(own["sigmas"]), strict=True))):
        raise ValueError(f"{run.case}: the grid of {source} ({run.key}) does not have the case's ends")
    return row


def _ends(grid: Sequence[float]) -> tuple[float, float, float]:
    """First, last nonzero and last sigma of a grid."""
    return grid[0], min(v for v in grid if v > 0), grid[-1]


def comfyui_best(case_name: str, docs: Path = DOCS) -> dict[str, Any] | None:
    """ComfyUI's most accurate sampler at 20 calls on the case (summary of docs/comparison.json, or of
    docs/comparison_networks.json for the demo networks), if recorded."""
    path = docs / ("comparison_networks.json" if is_network(case_name) else "comparison.json")
    if not path.is_file():
        return None
    cases = json.loads(path.read_text()).get("comparison", {}).get("cases", {})
    summary = cases.get(case_name, {}).get("summary", {}).get("rmse", {})
    return summary.get("theirs")


def plan_file(name: str, key: str) -> str:
    """File stem of the learned plan of (case, result key: LearnRun.row) in PLANS."""
    return f"{name.replace('/', '_')}_{key.replace(';', '_').replace('=', '-').replace('@', '_')}_10"


def run_learned(runs: Sequence[LearnRun] = RUNS, samples: int | None = None,
                steps: int | None = None,
                plans_dir: Path | None = None, docs: Path = DOCS,
                evaluation: tuple[int, int] = (EVALUATION_SAMPLES, NETWORK_EVALUATION_SAMPLES)) -> dict[str, Any]:
    """{case: {candidates: {key: {label, nfe, calibrated_rmse, learned_rmse, ...}}, comfyui}} at NFE 10.

    `samples`/`steps`: calibration noises and Adam steps of every run instead of each run's own (networks: at most
    NETWORK_LEARN_SAMPLES noises). A run that would repeat an earlier one (same problem, starting grid, sampler,
    steps, rate and noises: a case starting from another case's grid) takes its plan instead of learning it again
    (recorded as `learned_with`). `evaluation`: evaluation noises of the problems and of the network cases."""
    results: dict[str, Any] = {}
    done: dict[tuple[Any, ...], tuple[LearnedPlan, str, float]] = {}
    for name in dict.fromkeys(r.case for r in runs):
        runner = evaluation_runner(name, evaluation)
        case = runner.case
        network = is_network(case)
        default = NETWORK_LEARN_SAMPLES if network else LEARN_SAMPLES
        per_key: dict[str, Any] = {}
        noises: dict[int, tuple[torch.Tensor, Any]] = {}  # the case's calibration noises and references, by count
        for run in [r for r in runs if r.case == name]:
            key, lr = run.key, run.lr
            if samples is None:
                count = run.samples or default
            else:
                count = min(samples, NETWORK_LEARN_SAMPLES) if network else samples
            case_steps = run.steps if steps is None else steps
            row = start_row(run, docs)
            sigmas = torch.tensor(row["sigmas"], dtype=DTYPE)
            same = (case.problem.name, run.start or run.case, key, case_steps, lr, run.learn_grid, count, run.objective,
                    run.history)
            if same in done:
                first, learned_with, seconds = done[same]
                learned = dataclasses.replace(first, info=tuple(sorted({**dict(first.info), "problem": name}.items())))
            else:
                if count not in noises:
                    x = calibration_noise(case, count)
                    noises[count] = x, calibration_references(case, x)
                x, references = noises[count]
                t0 = time.perf_counter()
                learned = learn_plan(case.problem.model, row["sampler"], sigmas, x, row["schedule"],
                                     references.target(sigmas), row["options"], steps=case_steps, lr=lr,
                                     max_sigma=case.problem.sigma_max if case.schedule == "flow" else None,
                                     learn_grid=run.learn_grid, objective=run.objective, history=run.history,
                                     info={"problem": name, "problem_schedule": case.schedule,
                                           "calibration_seed": str(CALIBRATION_SEED),
                                           "calibration_samples": str(count)})
                learned_with, seconds = name, time.perf_counter() - t0
                done[same] = learned, name, seconds
            plain, learnt = _evaluate(runner, learned, sigmas, row["options"])
            per_key[run.row] = {"label": row["label"], "sampler": row["sampler"], "schedule": row["schedule"],
                                "options": row["options"], "nfe": learned.nfe, "calibration_samples": count,
                                "objective": run.objective, "history": run.history,
                                "steps": case_steps, "lr": lr, "learn_grid": run.learn_grid, "start": run.start,
                                "sigmas": list(learned.sigmas),
                                "calibrated_rmse": plain[0], "calibrated_median": plain[1],
                                "learned_rmse": learnt[0], "learned_median": learnt[1],
                                "objective_before": learned.objective_before,
                                "objective_after": learned.objective_after,
                                "seconds": seconds, "learned_with": learned_with, "shifts": list(learned.shifts)}
            if plans_dir is not None:
                save_learned(plans_dir / plan_file(name, run.row), learned)
        results[name] = {"evaluation_samples": runner.x0.shape[0], "candidates": per_key,
                         "comfyui": comfyui_best(name, docs)}
    return {"calibration_seed": CALIBRATION_SEED, "calibration_samples": samples or LEARN_SAMPLES,
            "evaluation_seed": SEED + 1,
            "evaluation_samples": evaluation[0], "cases": results}


def evaluate_learned(results: Mapping[str, Any], plans_dir: Path = PLANS, docs: Path = DOCS,
                     evaluation: tuple[int, int] = (EVALUATION_SAMPLES, NETWORK_EVALUATION_SAMPLES)
                     ) -> dict[str, Any]:
    """`results` (run_learned's) with every run's saved plan and starting grid measured again on `evaluation`
    noises (problems, networks) and ComfyUI's best read again from `docs`; nothing is learned. Every row must be
    one of RUNS and have its plan in `plans_dir`."""
    out = {**results, "evaluation_seed": SEED + 1, "evaluation_samples": evaluation[0], "cases": {}}
    for name, case in results["cases"].items():
        runner = evaluation_runner(name, evaluation)
        rows = {}
        for key, row in case["candidates"].items():
            run = next((r for r in RUNS if r.case == name and r.row == key), None)
            if run is None:
                raise KeyError(f"{name}: {key!r} is not one of RUNS")
            learned = load_learned(plans_dir / f"{plan_file(name, key)}.safetensors")
            start = torch.tensor(start_row(run, docs)["sigmas"], dtype=DTYPE)
            plain, learnt = _evaluate(runner, learned, start, row["options"])
            rows[key] = {**row, "calibrated_rmse": plain[0], "calibrated_median": plain[1],
                         "learned_rmse": learnt[0], "learned_median": learnt[1]}
        out["cases"][name] = {**case, "evaluation_samples": runner.x0.shape[0], "candidates": rows,
                              "comfyui": comfyui_best(name, docs)}
    return out


def comparison_candidates(plans: Path = PLANS) -> list[Candidate]:
    """The learned plans in `plans` (written by this module) as fixed-grid candidates of the comparison run
    (`--candidates samplers.bench.learned:comparison_candidates`), each on the case it was learned for; one
    candidate per sampler, options, form (the schedule sampled with, against the problem's own) and objective."""
    groups: dict[tuple[Any, ...], list[LearnedPlan]] = {}
    for path in sorted(plans.glob("*.safetensors")) if plans.is_dir() else []:
        learned = load_learned(path)
        problem_schedule = dict(learned.info).get("problem_schedule", learned.schedule)
        group = (learned.sampler, learned.schedule, learned.options, problem_schedule, plan_objective(learned),
                 learned.history)
        groups.setdefault(group, []).append(learned)
    out = []
    for (sampler, schedule, options, problem_schedule, objective, history), members in groups.items():
        by_case: dict[str, LearnedPlan] = {}
        for learned in members:
            case = dict(learned.info).get("problem", "")
            if case in by_case:
                raise ValueError(f"{plans}: two learned plans of {sampler} ({schedule}) for case {case!r}")
            by_case[case] = learned
        form = f", {'VE' if schedule == 've' else schedule} form" if problem_schedule != schedule else ""
        form += "" if objective == "rmse" else f", {objective} objective"
        form += "" if history == 0 else f", history {history}"
        entry = SAMPLERS[sampler]
        changed = ", ".join(f"{k}={v}" for k, v in options if k in entry.defaults and entry.defaults[k] != v)
        out.append(Candidate(f"{entry.label}{f' ({changed})' if changed else ''} [learned plan{form}]", sampler,
                             {case: [learned.grid] for case, learned in by_case.items()},
                             {**dict(options), "schedule": schedule},
                             {case: {"learned_plan": learned} for case, learned in by_case.items()}))
    return out


def _evaluate(runner: CaseRunner, learned: LearnedPlan, calibrated: torch.Tensor, options: Mapping[str, Any]
              ) -> tuple[tuple[float, float], tuple[float, float]]:
    """(RMSE, median error) on the evaluation noises: the plain sampler on the `calibrated` grid, and the learned
    plan on its own grid (the same ends, so the same reference)."""
    entry = SAMPLERS[learned.sampler]
    out = []
    for grid, extra in ((calibrated, {}), (learned.grid, {"learned_plan": learned})):
        with torch.no_grad():
            sample = entry(runner.case.problem.model, runner.x0.clone(), grid, disable=True,
                           schedule=learned.schedule, **options, **extra)
        out.append(errors(sample, runner.refs.target(grid)))
    return out[0], out[1]


def report(results: Mapping[str, Any]) -> str:
    """Markdown: per case, calibrated grid vs learned plan at NFE 10, and ComfyUI's best at 20 calls."""
    out = ["# Learned plans", "",
           "RMSE against the exact ODE solution on the benchmark's evaluation noises "
           f"(seed {results['evaluation_seed']}). Each sampler runs on its calibrated grid of docs/calibrated.md "
           "(demo networks: docs/calibrated_networks.md; '[VE form, from a log σ grid]': docs/flow_lownfe.md); "
           "the learned plan adds coefficient corrections and per-call sigma shifts (samplers/learned.py), and where "
           "marked 'grid learned' moves the grid's interior sigmas, all fitted by Adam on noises of seed "
           f"{results['calibration_seed']} (disjoint). ComfyUI's best at 20 calls: the summary of "
           "docs/comparison.md (demo networks: docs/comparison_networks.md), whose rules decide which runs count; "
           "every grid here ends no higher than the case's 20-interval grid. The same plans on our side of the "
           "comparison run, side by side with ComfyUI's samplers: docs/comparison_lownfe.md. Regenerate: "
           "`python -m samplers.bench.learned` (`--evaluate-only` measures the saved plans again, learning nothing).",
           "",
           "These RMSEs are held by rare trajectories that pass near a boundary between components, on both sides, "
           "so they move with the noise sample (by several times on the VE problems without CFG between 128 and 4096 "
           "noises). The evaluation noises are those of the comparison runs (see the table), whose bootstrap "
           "intervals give the verdict against ComfyUI: docs/comparison_lownfe.md and "
           "docs/comparison_lownfe_networks.md.", ""]
    body = []
    for name, case in results["cases"].items():
        theirs = case["comfyui"]
        evaluated = case.get("evaluation_samples", results["evaluation_samples"])
        for row in case["candidates"].values():
            ratio = f"{row['learned_rmse'] / theirs['rmse']:.2f}" if theirs else "—"
            before = f"{row['calibrated_rmse'] / theirs['rmse']:.2f}" if theirs else "—"
            fitted = row.get("calibration_samples", results["calibration_samples"])
            objective = row.get("objective", "rmse")
            label = row["label"] + (", grid learned" if row.get("learn_grid") else "") + (
                "" if objective == "rmse" else f", {objective} objective") + (
                f", history {row['history']}" if row.get("history") else "") + (
                f" (starting from the grid of {row['start']})" if row.get("start") else "")
            body.append([name, label, str(row["nfe"]),
                         f"{fitted} / {evaluated} / {row['steps']} ({row.get('lr', LEARN_RATE)})",
                         f"{row['calibrated_rmse']:.2e}", f"{row['learned_rmse']:.2e}",
                         f"{row['calibrated_rmse'] / row['learned_rmse']:.2f}x",
                         f"{row['calibrated_median']:.2e} -> {row['learned_median']:.2e}",
                         f"{theirs['label']} {theirs['rmse']:.2e}" if theirs else "—", f"{before} -> {ratio}"])
    out += [table(["case", "sampler", "NFE", "noises fit / evaluated / Adam steps (rate)",
                   "RMSE calibrated grid",
                   "RMSE learned plan", "gain", "median error", "ComfyUI best @20",
                   "ratio to it on these noises (calibrated -> learned)"], body),
            "", *USAGE]
    return "\n".join(out)


USAGE = [
    "## What is learned", "",
    "Every stage of a deterministic multistep plan is y = a*x + sum_j b_j F_j (F = D or eps). A learned plan adds "
    "c_j to the b_j with sum_j c_j = 0 over the D terms and over the eps terms of each stage (constant predictions "
    "stay exact, so first order is kept) and calls the model at sigma*exp(tau) instead of sigma (one tau per "
    "call). c and tau minimise the RMS error against the exact solution on the calibration noises, by Adam "
    "(cosine-decayed rate) through a float64 re-implementation of the plan's recursion, with autograd through "
    "the model; the best iterate is kept. The grid starts as the calibrated one; in the runs marked 'grid "
    "learned' (`learn_grid=True`) its interior sigmas move too (ends fixed): log sigma falls in intervals "
    "proportional to softmax(w), and the plan's dependence on w enters the gradient through a finite-difference "
    "Jacobian of the plan builder (the plan itself is rebuilt exactly at every step). In the runs marked 'history "
    "K' (`history=K`) every committed stage also reads the D and the eps of the K newest model calls, their "
    "coefficients learned from 0 with the same zero-sum rule (with eps = (x - alpha D)/sigma this reaches the earlier "
    "states too, as an Adams-Bashforth rule on eps in sigma such as ComfyUI's ipndm does). The objective is the RMS "
    "error over all noises (`objective=\"rmse\"`, held by the few worst trajectories) or, in the runs marked 'mean "
    "objective', the mean of the per-noise RMS errors (`objective=\"mean\"`, the typical sample).", "",
    "With 512 calibration noises (as for the calibrated grids) the corrections fit the few trajectories that "
    "dominate the RMSE and did not carry over (ve_mixture_cfg7.5/karras, DPM-Solver++ PC: 8.3e-3 -> 1.2e-2 on 128 "
    "evaluation noises); hence 4096 (8192 on flow_mixture/simple, grid learned: 8.1e-4 -> 7.2e-4 held out). The demo "
    "eps network learns on 1024 (256: 8.9e-3 held out, 1024: 8.0e-3, on 32 noises).", "",
    "## Use", "",
    "```python",
    "from samplers.learned import learn_plan, load_learned, save_learned",
    "learned = learn_plan(model, \"dpm_solver_pp_pc\", sigmas, noises, \"ve\", learn_grid=True)  # torch model",
    "# also reading the 4 newest calls: learn_plan(..., history=4)",
    "save_learned(\"my_plan\", learned)                                                   # my_plan.safetensors",
    "learned = load_learned(\"my_plan.safetensors\", sampler=\"dpm_solver_pp_pc\")",
    "x0 = SAMPLERS[\"dpm_solver_pp_pc\"](model, x, learned.grid, learned_plan=learned)",
    "```", "",
    "Only deterministic multistep samplers accept `learned_plan`, on the grid and with the options it was learned "
    "with (anything else is an error naming the mismatch); with zero corrections the result is bit-identical to "
    "the plain sampler. `max_sigma` keeps every call at or below a sigma (a flow model sampled in the VE form "
    "is defined up to 1).", "",
    "Not in the ComfyUI or WebUI nodes: learning runs the model forward and backward on thousands of noises at "
    "every call of every Adam step (4096 noises x 10 calls x 1800 to 5000 steps here); that is seconds to minutes for "
    "the benchmark mixtures and the 8x8 demo networks, and far beyond a session for an SD- or Flux-sized network, "
    "whose users get the calibrated grids (DPM-Solver Calibrate Grid) instead.", "",
]


def merged_cases(kept: Mapping[str, Any], fresh: Mapping[str, Any]) -> dict[str, Any]:
    """The cases of an earlier result with `fresh` runs replacing or joining theirs, in the order of RUNS."""
    out = {}
    for name in dict.fromkeys(r.case for r in RUNS):
        if name not in kept and name not in fresh:
            continue
        case = {**kept.get(name, {}), **fresh.get(name, {})}
        candidates = {**kept.get(name, {}).get("candidates", {}), **fresh.get(name, {}).get("candidates", {})}
        order = [r.row for r in RUNS if r.case == name]
        case["candidates"] = dict(sorted(candidates.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                                         else len(order)))
        out[name] = case
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m samplers.bench.learned", description=__doc__)
    cases = list(dict.fromkeys(r.case for r in RUNS))
    parser.add_argument("--problems", type=names_in(cases, "case"), default=None,
                        help=f"comma-separated case names (default: all of {', '.join(cases)})")
    rows = list(dict.fromkeys(r.row for r in RUNS))
    parser.add_argument("--runs", type=names_in(rows, "run"), default=None,
                        help=f"comma-separated result keys of the runs to do (default: all of the cases'; one of "
                             f"{', '.join(rows)})")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help=f"calibration noises of every run (default: each run's own; demo networks: at most "
                             f"{NETWORK_LEARN_SAMPLES})")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps of every run (default: each run's own)")
    parser.add_argument("--plans", type=Path, default=PLANS, help="folder to save the learned plans in")
    parser.add_argument("--out", type=Path, default=DOCS / "learned", help="output stem (.md and .json)")
    parser.add_argument("--update", action="store_true",
                        help="keep the other cases and runs of an existing OUT.json (run only --problems, --runs)")
    add_evaluation_arguments(parser)
    parser.add_argument("--evaluate-only", action="store_true",
                        help="learn nothing: measure the plans of OUT.json (saved in --plans) again, on the evaluation "
                             "noises, and read ComfyUI's best again")
    args = parser.parse_args(argv)
    evaluation = evaluation_counts(parser, args)
    wanted = args.problems
    torch.set_num_threads(1)
    old = args.out.with_suffix(".json")
    if args.evaluate_only:
        if not old.is_file():
            parser.error(f"--evaluate-only: no results to measure again ({old} does not exist)")
        results = json.loads(old.read_text())
        cases = {n: c for n, c in results["cases"].items() if wanted is None or n in wanted}
        fresh = evaluate_learned({**results, "cases": cases}, args.plans, evaluation=evaluation)
        results = {**fresh, "cases": {n: fresh["cases"].get(n, c) for n, c in results["cases"].items()}}
    else:
        args.plans.mkdir(parents=True, exist_ok=True)
        chosen = [r for r in RUNS if (wanted is None or r.case in wanted) and (args.runs is None or r.row in args.runs)]
        if not chosen:
            parser.error("--problems and --runs leave no run to do")
        results = run_learned(chosen, args.samples, args.steps, args.plans, evaluation=evaluation)
        if args.update and old.is_file():
            results["cases"] = merged_cases(json.loads(old.read_text())["cases"], results["cases"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old.write_text(json.dumps(results, indent=1) + "\n")
    text = report(results)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
