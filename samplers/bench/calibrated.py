"""Calibrated grids on the benchmark cases: each sampler's error at an NFE budget on the standard grid and on a
grid calibrated for it (samplers/calibrate.py), calibrated on noises disjoint from the evaluation noises.

Calibration: CALIBRATION_SAMPLES initial noises drawn with seed CALIBRATION_SEED, against the exact reference of
those noises (DOP853 for the analytic cases, the converged chained solve for the demo networks). Evaluation: the
benchmark's own fixed noises (seed problems.SEED + 1) and references, so the "standard" column is the main
accuracy table's cell. Run `python -m samplers.bench.calibrated --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import grids
from ..calibrate import CalibratedGrid, calibrate_grid, intervals_for_nfe, save_grid
from ..registry import SAMPLERS
from .arguments import comma_list, names_in, positive_int, positive_ints
from .cases import Case, all_cases, select_cases
from .measure import DTYPE, CaseRunner, References, errors
from .networks import NetworkReferences, adopt_network_runners, is_network, network_cases, select_network_cases
from .problems import SEED
from .report import table

CALIBRATION_SEED = SEED + 1000
CALIBRATION_SAMPLES = 512
NETWORK_CALIBRATION_SAMPLES = 32
EVALUATION_SAMPLES = 4096
"""Evaluation noises of the analytic cases: those of the comparison runs (docs/comparison_lownfe.md); on 128 the
RMSE of these mixtures moved by several times with the noise sample."""
NETWORK_EVALUATION_SAMPLES = 128
"""Evaluation noises of the demo-network cases (docs/comparison_lownfe_networks.md's)."""
NFES = (10,)
MAX_EVALS = 400
LONG_FLOW_STEPS = 20
"""Flow cases are also calibrated on grids ending where the case's 20-interval grid ends: ComfyUI's 'simple' grid
with n intervals ends at shift(1/n), so 10 calls on it solve a shorter ODE than 20 calls (see long_flow_case)."""


@dataclass(frozen=True)
class Candidate:
    """A sampler with fixed options whose grid gets calibrated."""

    sampler: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return SAMPLERS[self.sampler].label + (f" ({extra})" if extra else "")

    @property
    def key(self) -> str:
        return self.sampler + "".join(f";{k}={v}" for k, v in sorted(self.options.items()))


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("dpm_solver_2m"),
    Candidate("dpm_solver_3m"),
    Candidate("dpm_solver_3m", {"third_order": "consistent"}),
    Candidate("dpm_solver_pp_3m"),
    Candidate("dpm_solver_pp_3m", {"third_order": "consistent"}),
    Candidate("dpm_solver_pp_pc"),
    Candidate("dpm_solver_pp_pc", {"third_order": "consistent"}),
    Candidate("dpm_solver_3"),
)
"""Our best deterministic samplers at NFE <= 10 (docs/bench.md) and the exact third-order variants. (DPM-Solver++
2M and 3S were calibrated too and gained least: at most 2.3x and 4.7x, never the best of a case.)"""


def long_flow_case(case: Case, steps: int = LONG_FLOW_STEPS) -> Case:
    """The flow case with grids sigma = shift(t), t uniform from 1 down to 1/steps (then 0) for every n: the ends of
    the case's `steps`-interval 'simple' grid, so fewer intervals solve the same ODE as that grid."""
    shift = case.problem.flow_shift

    last = [v for v in case.grid(steps).tolist() if v > 0][-1]

    def make(n: int) -> torch.Tensor:
        inner = [grids.flow_shift(1.0 + (1.0 / steps - 1.0) * i / (n - 1), shift) for i in range(n - 1)]
        return torch.tensor([*inner, last, 0.0] if n > 1 else [case.problem.sigma_max, 0.0], dtype=DTYPE)

    return dataclasses.replace(case, name=f"{case.name}@{steps}", grid_name=f"shift(t), t from 1 to 1/{steps}",
                               make_grid=make, _grids={})


def base_case_name(name: str) -> str:
    """The benchmark case a (possibly long_flow_case) name belongs to."""
    return name.split("@", 1)[0]


def calibration_noise(case: Case, n: int) -> torch.Tensor:
    """n initial noises of the case from CALIBRATION_SEED (disjoint from the evaluation noises of seed SEED + 1)."""
    if is_network(case):
        from dpmsolver_demo.sampling import initial_noise

        return initial_noise(case.problem.demo, n, CALIBRATION_SEED, DTYPE)
    if case.problem.data is None:
        raise ValueError(f"case {case.name} has no data mixture to draw noises from")
    g = torch.Generator().manual_seed(CALIBRATION_SEED)
    return case.problem.data.prior_noise(n, case.problem.sigma_max, g, dtype=DTYPE)


def calibration_references(case: Case, x: torch.Tensor) -> Any:
    """The exact references of noises `x` on the case (the network's chained solve for the demo networks)."""
    if is_network(case):
        return NetworkReferences(case, x)  # type: ignore[arg-type]
    return References(case, x)


def _errors(runner: CaseRunner, candidate: Candidate, sigmas: torch.Tensor) -> tuple[float, float]:
    """(RMSE, median per-sample RMS error) of the candidate on `sigmas` over the evaluation noises."""
    entry = SAMPLERS[candidate.sampler]
    with torch.no_grad():
        out = entry(runner.case.problem.model, runner.x0.clone(), sigmas, disable=True,
                    schedule=runner.case.schedule, **candidate.options)
    return errors(out, runner.refs.target(sigmas))


def calibrate_case(case: Case, nfe: int, candidate: Candidate, calibration: torch.Tensor, references: Any,
                   max_evals: int = MAX_EVALS) -> CalibratedGrid:
    """The candidate's grid for `nfe` calls on the case, calibrated on `calibration` noises."""
    n = intervals_for_nfe(candidate.sampler, nfe, case.grid, case.schedule, candidate.options)
    initial = case.grid(n)
    info = {"problem": case.name, "initial_grid": case.grid_name, "calibration_seed": str(CALIBRATION_SEED),
            "calibration_samples": str(calibration.shape[0])}
    return calibrate_grid(case.problem.model, candidate.sampler, nfe, initial, calibration, case.schedule,
                          reference=references.target(initial), options=candidate.options, max_evals=max_evals,
                          info=info)


def evaluation_runner(case: Case | str,
                      evaluation: tuple[int, int] = (EVALUATION_SAMPLES, NETWORK_EVALUATION_SAMPLES)) -> CaseRunner:
    """The runner of the case (or of the results key case_named resolves) on its first evaluation noises: evaluation[0]
    for the analytic cases, evaluation[1] for the demo networks (the case's own cap still applies), with the network's
    reference there."""
    if isinstance(case, str):
        case = case_named(case, evaluation[1])
    network = is_network(case)
    runner = CaseRunner(case, evaluation[1] if network else evaluation[0])
    if network:
        adopt_network_runners([runner])
    return runner


def case_named(name: str, network_samples: int = NETWORK_EVALUATION_SAMPLES) -> Case:
    """The case of a results key: a benchmark or demo-network case (at most `network_samples` noises), or the
    long_flow_case of a flow one ('name@steps')."""
    base = base_case_name(name)
    pool = network_cases(network_samples) if is_network(base) else all_cases()
    case = next((c for c in pool if c.name == base), None)
    if case is not None and name != base:
        steps = name.split("@", 1)[1]
        case = long_flow_case(case, int(steps)) if steps.isdigit() and case.schedule == "flow" else None
    if case is None:
        raise KeyError(f"no benchmark case named {name!r}")
    return case


def measured_row(runner: CaseRunner, candidate: Candidate, n_steps: int, sigmas: torch.Tensor) -> dict[str, float]:
    """The candidate's RMSE and median per-sample error on the case's standard n_steps-interval grid and on the
    calibrated `sigmas`, over the runner's noises."""
    standard = _errors(runner, candidate, runner.case.grid(n_steps))
    calibrated = _errors(runner, candidate, sigmas)
    return {"standard_rmse": standard[0], "standard_median": standard[1],
            "calibrated_rmse": calibrated[0], "calibrated_median": calibrated[1]}


def run_calibrated(cases: Sequence[Case], nfes: Sequence[int] = NFES,
                   candidates: Sequence[Candidate] = CANDIDATES, samples: int = CALIBRATION_SAMPLES,
                   max_evals: int = MAX_EVALS, grids_dir: Path | None = None,
                   evaluation: tuple[int, int] = (EVALUATION_SAMPLES, NETWORK_EVALUATION_SAMPLES)) -> dict[str, Any]:
    """{case: {nfe: {candidate key: {label, n_steps, nfe, standard, calibrated, ..., sigmas}}}}, evaluated on
    `evaluation` noises (analytic cases, demo networks)."""
    results: dict[str, Any] = {}
    for case in cases:
        count = min(samples, NETWORK_CALIBRATION_SAMPLES) if is_network(case) else samples
        runner = evaluation_runner(case, evaluation)
        calibration = calibration_noise(case, count)
        references = calibration_references(case, calibration)
        per_nfe: dict[str, Any] = {}
        for nfe in nfes:
            rows: dict[str, Any] = {}
            for candidate in candidates:
                t0 = time.perf_counter()
                grid = calibrate_case(case, nfe, candidate, calibration, references, max_evals)
                n = len(grid.sigmas) - 1
                rows[candidate.key] = {
                    "label": candidate.label, "sampler": candidate.sampler, "options": dict(candidate.options),
                    "n_steps": n, "nfe": SAMPLERS[candidate.sampler].count_model_calls(
                        grid.sigmas, schedule=case.schedule, **candidate.options),
                    **measured_row(runner, candidate, n, grid.sigmas),
                    "calibration_before": grid.objective_before, "calibration_after": grid.objective_after,
                    "evaluations": grid.evaluations, "seconds": time.perf_counter() - t0,
                    "sigmas": grid.sigmas.tolist()}
                if grids_dir is not None:
                    save_grid(grids_dir / f"{case.name.replace('/', '_')}_{candidate.key}_{nfe}", grid)
            per_nfe[str(nfe)] = rows
        results[case.name] = {"grid": case.grid_name, "schedule": case.schedule, "data_std": runner.data_std,
                              "calibration_samples": count, "evaluation_samples": runner.x0.shape[0], "nfes": per_nfe}
    return {"calibration_seed": CALIBRATION_SEED, "evaluation_seed": SEED + 1,
            "evaluation_samples": evaluation[0], "max_evals": max_evals, "cases": results}


def evaluate_calibrated(results: Mapping[str, Any],
                        evaluation: tuple[int, int] = (EVALUATION_SAMPLES, NETWORK_EVALUATION_SAMPLES)
                        ) -> dict[str, Any]:
    """`results` (run_calibrated's) with every saved grid and its standard grid measured again on `evaluation`
    noises (analytic cases, demo networks); nothing is calibrated, the calibration record is kept."""
    out = {**results, "evaluation_seed": SEED + 1, "evaluation_samples": evaluation[0], "cases": {}}
    for name, case in results["cases"].items():
        runner = evaluation_runner(name, evaluation)
        nfes = {nfe: {key: {**row, **measured_row(runner, Candidate(row["sampler"], row["options"]), row["n_steps"],
                                                  torch.tensor(row["sigmas"], dtype=DTYPE))}
                      for key, row in rows.items()}
                for nfe, rows in case["nfes"].items()}
        out["cases"][name] = {**case, "evaluation_samples": runner.x0.shape[0], "nfes": nfes}
    return out


def _cell(v: float | None, best: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "fail"
    text = f"{v:.2e}"
    return f"**{text}**" if best else text


def report(results: Mapping[str, Any]) -> str:
    """Markdown: per case and NFE, standard vs calibrated RMSE of every candidate (best calibrated in bold)."""
    out = ["# Calibrated grids", "",
           "RMSE against the exact ODE solution on the benchmark's evaluation noises (seed "
           f"{results['evaluation_seed']}, the main accuracy table's noises and references). Grids calibrated with "
           f"`samplers.calibrate.calibrate_grid` (Nelder-Mead, at most {results['max_evals']} sampler runs per "
           f"restart) on noises of seed {results['calibration_seed']} (disjoint), against their exact solution; "
           "the grid's ends are kept. The median per-sample error is shown too: the RMSE of these mixtures is often "
           "one or two trajectories that pass near a boundary between components. Regenerate: "
           f"`{results.get('command', COMMAND)}` (`--evaluate-only` added measures the saved grids again, "
           "calibrating nothing).", ""]
    for name, case in results["cases"].items():
        for nfe, rows in case["nfes"].items():
            finite = [r["calibrated_rmse"] for r in rows.values() if r["calibrated_rmse"] is not None
                      and math.isfinite(r["calibrated_rmse"])]
            best = min(finite) if finite else None
            body = [[r["label"], f"{r['nfe']} ({r['n_steps']} steps)", _cell(r["standard_rmse"]),
                     _cell(r["calibrated_rmse"], r["calibrated_rmse"] == best),
                     f"{r['standard_rmse'] / r['calibrated_rmse']:.2f}x" if r["calibrated_rmse"] else "—",
                     f"{_cell(r['standard_median'])} -> {_cell(r['calibrated_median'])}",
                     f"{r['calibration_before']:.2e} -> {r['calibration_after']:.2e}"]
                    for r in rows.values()]
            evaluated = case.get("evaluation_samples", results["evaluation_samples"])
            out += [f"## {name} at NFE {nfe}", "",
                    f"grid `{case['grid']}`, schedule `{case['schedule']}`, data std {case['data_std']:.4f}; "
                    f"{case['calibration_samples']} calibration noises, {evaluated} evaluation noises", "",
                    table(["sampler", "NFE", "RMSE standard grid", "RMSE calibrated grid", "gain",
                           "median error standard -> calibrated", "calibration objective"], body), ""]
    return "\n".join(out)


COMMAND = "python -m samplers.bench.calibrated"
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "calibrated.json"
NETWORK_RESULTS = RESULTS.with_name("calibrated_networks.json")


def comparison_candidates(paths: Sequence[Path] = (RESULTS, NETWORK_RESULTS)) -> list[Any]:
    """The calibrated grids of `paths` (written by this module; absent files are skipped) as candidates of
    samplers/bench/comparison.py: `python -m samplers.bench --candidates
    samplers.bench.calibrated:comparison_candidates` (with --networks also on the demo networks)."""
    from .comparison import Candidate as ComparisonCandidate

    cases = {name: case for path in paths if Path(path).is_file()
             for name, case in json.loads(Path(path).read_text())["cases"].items()}
    found: dict[str, tuple[str, str, dict[str, Any], dict[str, list[list[float]]]]] = {}
    for case_name, case in cases.items():
        for rows in case["nfes"].values():
            for key, row in rows.items():
                label = f"{row['label']}, calibrated grid"
                entry = found.setdefault(key, (label, row["sampler"], row["options"], {}))
                entry[3].setdefault(base_case_name(case_name), []).append(row["sigmas"])
    return [ComparisonCandidate(label, sampler, grid=grids, options=options)
            for label, sampler, options, grids in found.values()]


def _sanitize(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_sanitize(v) for v in obj]
    return obj


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """--evaluation-samples and --network-evaluation-samples: the evaluation noises of the analytic cases and of the
    demo networks (read back by evaluation_counts)."""
    parser.add_argument("--evaluation-samples", type=int, default=EVALUATION_SAMPLES,
                        help=f"evaluation noises per analytic case (default {EVALUATION_SAMPLES})")
    parser.add_argument("--network-evaluation-samples", type=int, default=NETWORK_EVALUATION_SAMPLES,
                        help=f"evaluation noises per demo-network case (default {NETWORK_EVALUATION_SAMPLES})")


def evaluation_counts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[int, int]:
    """(analytic, network) evaluation noises from the parsed arguments; a count below 1 is a usage error."""
    evaluation = (args.evaluation_samples, args.network_evaluation_samples)
    if min(evaluation) < 1:
        parser.error(f"--evaluation-samples and --network-evaluation-samples must be >= 1, got {evaluation}")
    return evaluation


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m samplers.bench.calibrated", description=__doc__)
    parser.add_argument("--problems", type=comma_list, default=[],
                        help="comma-separated case patterns (default: all analytic cases)")
    parser.add_argument("--networks", action="store_true", help="also the demo-network cases")
    parser.add_argument("--nfe", type=positive_ints, default=",".join(map(str, NFES)),
                        help="comma-separated NFE budgets")
    parser.add_argument("--samplers", type=names_in(dict.fromkeys(c.sampler for c in CANDIDATES)), default=[],
                        help="comma-separated sampler names (default: all candidates)")
    parser.add_argument("--samples", type=positive_int, default=CALIBRATION_SAMPLES,
                        help="calibration noises per case")
    parser.add_argument("--max-evals", type=int, default=MAX_EVALS, help="sampler runs per Nelder-Mead restart")
    parser.add_argument("--no-long-flow", action="store_true",
                        help=f"skip the flow grids that end where the {LONG_FLOW_STEPS}-interval grid ends")
    parser.add_argument("--grids", type=Path, default=None, help="folder to save the calibrated grids in")
    parser.add_argument("--out", type=Path, default=Path("docs/calibrated"), help="output stem (.md and .json)")
    add_evaluation_arguments(parser)
    parser.add_argument("--evaluate-only", action="store_true",
                        help="calibrate nothing: measure the grids of OUT.json again on the evaluation noises "
                             "(all its cases; the selection options do not apply)")
    args = parser.parse_args(argv)
    evaluation = evaluation_counts(parser, args)
    torch.set_num_threads(1)
    if args.evaluate_only:
        old = args.out.with_suffix(".json")
        if not old.is_file():
            parser.error(f"--evaluate-only: no results to measure again ({old} does not exist)")
        results = evaluate_calibrated(json.loads(old.read_text()), evaluation)
    else:
        patterns = args.problems
        extra: list[Case] = []
        if args.networks:
            extra = list(select_network_cases(patterns, args.network_evaluation_samples))
        cases = select_cases(patterns, extra)
        if not args.no_long_flow:
            cases += [long_flow_case(c) for c in cases if c.schedule == "flow"]
        candidates = [c for c in CANDIDATES if not args.samplers or c.sampler in args.samplers]
        results = run_calibrated(cases, args.nfe, candidates, args.samples,
                                 args.max_evals, args.grids, evaluation)
        results["command"] = shlex.join([*COMMAND.split(), *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(_sanitize(results), indent=1) + "\n")
    args.out.with_suffix(".md").write_text(report(results) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
