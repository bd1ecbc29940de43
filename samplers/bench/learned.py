"""Learned plans on the benchmark cases: a sampler on its calibrated grid (docs/calibrated.json) against the same
sampler and grid with learned coefficient corrections and sigma shifts (samplers/learned.py), learned on
LEARN_SAMPLES noises of the calibration seed and evaluated on the benchmark's evaluation noises, next to
ComfyUI's best sampler at 20 calls (docs/comparison.json). Run `python -m samplers.bench.learned --help`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..learned import LEARN_STEPS, LearnedPlan, learn_plan, save_learned
from ..registry import SAMPLERS
from .calibrated import CALIBRATION_SEED, EVALUATION_SAMPLES, calibration_noise, long_flow_case
from .cases import Case, select_cases
from .measure import DTYPE, CaseRunner, References
from .problems import SEED
from .report import table

DOCS = Path(__file__).resolve().parents[2] / "docs"
LEARN_SAMPLES = 4096
"""Calibration noises: with 512 the learned corrections overfit the few trajectories that dominate the RMSE
(ve_mixture_cfg7.5/karras, DPM-Solver++ PC: calibration 1.29e-2 -> 5.3e-3 but evaluation 8.3e-3 -> 1.2e-2)."""
CANDIDATES = ("dpm_solver_pp_pc", "dpm_solver_3m;third_order=consistent")
"""Keys of docs/calibrated.json rows: the best calibrated multistep samplers of the VE CFG cases."""
CASES = ("ve_mixture_cfg7.5/karras", "ve_mixture_cfg7.5/exponential", "ve_mixture/karras", "ve_mixture/exponential",
         "flow_mixture/simple@20")


def _case(name: str) -> Case:
    base, _, steps = name.partition("@")
    case = select_cases([base])[0]
    return long_flow_case(case, int(steps)) if steps else case


def _rmse(out: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    sq = ((out.to(DTYPE) - reference) ** 2).reshape(out.shape[0], -1).mean(1)
    rmse = float(sq.mean().sqrt())
    return (rmse, float(sq.sqrt().median())) if math.isfinite(rmse) else (math.inf, math.inf)


def comfyui_best(case_name: str, path: Path = DOCS / "comparison.json") -> dict[str, Any] | None:
    """ComfyUI's most accurate sampler at 20 calls on the case (docs/comparison.json summary), if recorded."""
    if not path.is_file():
        return None
    cases = json.loads(path.read_text()).get("comparison", {}).get("cases", {})
    summary = cases.get(case_name.split("@", 1)[0], {}).get("summary", {}).get("rmse", {})
    return summary.get("theirs")


def run_learned(case_names: Sequence[str] = CASES, keys: Sequence[str] = CANDIDATES, samples: int = LEARN_SAMPLES,
                steps: int = LEARN_STEPS, plans_dir: Path | None = None,
                calibrated: Path = DOCS / "calibrated.json") -> dict[str, Any]:
    """{case: {key: {label, nfe, calibrated_rmse, learned_rmse, ..., comfyui}}} at NFE 10."""
    rows_of = json.loads(calibrated.read_text())["cases"]
    results: dict[str, Any] = {}
    for name in case_names:
        case = _case(name)
        runner = CaseRunner(case, EVALUATION_SAMPLES)
        x = calibration_noise(case, samples)
        references = References(case, x)
        per_key: dict[str, Any] = {}
        for key in keys:
            row = rows_of[name]["nfes"]["10"][key]
            sigmas = torch.tensor(row["sigmas"], dtype=DTYPE)
            t0 = time.perf_counter()
            learned = learn_plan(case.problem.model, row["sampler"], sigmas, x, case.schedule,
                                 references.target(sigmas), row["options"], steps=steps,
                                 info={"problem": name, "calibration_seed": str(CALIBRATION_SEED),
                                       "calibration_samples": str(samples)})
            seconds = time.perf_counter() - t0
            plain, learnt = _evaluate(runner, learned, row["options"])
            per_key[key] = {"label": row["label"], "sampler": row["sampler"], "options": row["options"],
                            "nfe": learned.nfe, "calibrated_rmse": plain[0], "calibrated_median": plain[1],
                            "learned_rmse": learnt[0], "learned_median": learnt[1],
                            "objective_before": learned.objective_before, "objective_after": learned.objective_after,
                            "seconds": seconds, "shifts": list(learned.shifts)}
            if plans_dir is not None:
                save_learned(plans_dir / f"{name.replace('/', '_')}_{key}_10", learned)
        results[name] = {"candidates": per_key, "comfyui": comfyui_best(name)}
    return {"calibration_seed": CALIBRATION_SEED, "calibration_samples": samples, "evaluation_seed": SEED + 1,
            "evaluation_samples": EVALUATION_SAMPLES, "steps": steps, "cases": results}


def _evaluate(runner: CaseRunner, learned: LearnedPlan, options: Mapping[str, Any]
              ) -> tuple[tuple[float, float], tuple[float, float]]:
    """(RMSE, median error) on the evaluation noises without and with the learned corrections."""
    entry = SAMPLERS[learned.sampler]
    reference = runner.refs.target(learned.grid)
    out = []
    for extra in ({}, {"learned_plan": learned}):
        with torch.no_grad():
            sample = entry(runner.case.problem.model, runner.x0.clone(), learned.grid, disable=True,
                           schedule=runner.case.schedule, **options, **extra)
        out.append(_rmse(sample, reference))
    return out[0], out[1]


def report(results: Mapping[str, Any]) -> str:
    """Markdown: per case, calibrated grid vs learned plan at NFE 10, and ComfyUI's best at 20 calls."""
    out = ["# Learned plans", "",
           f"RMSE against the exact ODE solution on the benchmark's {results['evaluation_samples']} evaluation noises "
           f"(seed {results['evaluation_seed']}). Each sampler runs on its calibrated grid of docs/calibrated.md; "
           "the learned plan adds coefficient corrections and per-call sigma shifts (samplers/learned.py) fitted "
           f"by {results['steps']} Adam steps on {results['calibration_samples']} noises of seed "
           f"{results['calibration_seed']} (disjoint). ComfyUI's best at 20 calls: the summary of "
           "docs/comparison.md (for flow_mixture/simple@20 that of flow_mixture/simple, whose rules decide which "
           "runs count). Regenerate: "
           "`python -m samplers.bench.learned`.", ""]
    body = []
    for name, case in results["cases"].items():
        theirs = case["comfyui"]
        for row in case["candidates"].values():
            ratio = f"{row['learned_rmse'] / theirs['rmse']:.2f}" if theirs else "—"
            before = f"{row['calibrated_rmse'] / theirs['rmse']:.2f}" if theirs else "—"
            body.append([name, row["label"], str(row["nfe"]), f"{row['calibrated_rmse']:.2e}",
                         f"{row['learned_rmse']:.2e}", f"{row['calibrated_rmse'] / row['learned_rmse']:.2f}x",
                         f"{row['calibrated_median']:.2e} -> {row['learned_median']:.2e}",
                         f"{theirs['label']} {theirs['rmse']:.2e}" if theirs else "—", f"{before} -> {ratio}"])
    out += [table(["case", "sampler", "NFE", "RMSE calibrated grid", "RMSE learned plan", "gain",
                   "median error", "ComfyUI best @20", "ratio to it (calibrated -> learned)"], body), "", *USAGE]
    return "\n".join(out)


USAGE = [
    "## What is learned", "",
    "Every stage of a deterministic multistep plan is y = a*x + sum_j b_j F_j (F = D or eps). A learned plan adds "
    "c_j to the b_j with sum_j c_j = 0 over the D terms and over the eps terms of each stage (constant predictions "
    "stay exact, so first order is kept) and calls the model at sigma*exp(tau) instead of sigma (one tau per "
    "call). c and tau minimise the RMS error against the exact solution on the calibration noises, by Adam "
    "(rate 2e-2, cosine-decayed) through a float64 re-implementation of the plan's recursion, with autograd through "
    "the model; the best iterate is kept. The grid is the calibrated one and stays fixed.", "",
    "With 512 calibration noises (as for the calibrated grids) the corrections fit the few trajectories that "
    "dominate the RMSE and did not carry over (ve_mixture_cfg7.5/karras, DPM-Solver++ PC: 8.3e-3 -> 1.2e-2 on the "
    "evaluation noises); hence 4096.", "",
    "## Use", "",
    "```python",
    "from samplers.learned import learn_plan, load_learned, save_learned",
    "learned = learn_plan(model, \"dpm_solver_pp_pc\", sigmas, noises, \"ve\")  # model: differentiable torch",
    "save_learned(\"my_plan\", learned)                                  # my_plan.safetensors",
    "learned = load_learned(\"my_plan.safetensors\", sampler=\"dpm_solver_pp_pc\")",
    "x0 = SAMPLERS[\"dpm_solver_pp_pc\"](model, x, learned.grid, learned_plan=learned)",
    "```", "",
    "Only deterministic multistep samplers accept `learned_plan`, on the grid and with the options it was learned "
    "with (anything else is an error naming the mismatch); with zero corrections the result is bit-identical to "
    "the plain sampler. Not wired into the ComfyUI or WebUI nodes.", "",
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m samplers.bench.learned", description=__doc__)
    parser.add_argument("--problems", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="docs/calibrated.json row keys")
    parser.add_argument("--samples", type=int, default=LEARN_SAMPLES, help="calibration noises per case")
    parser.add_argument("--steps", type=int, default=LEARN_STEPS, help="Adam steps")
    parser.add_argument("--plans", type=Path, default=None, help="folder to save the learned plans in")
    parser.add_argument("--out", type=Path, default=DOCS / "learned", help="output stem (.md and .json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = run_learned([c for c in args.problems.split(",") if c], [k for k in args.candidates.split(",") if k],
                          args.samples, args.steps, args.plans)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(report(results) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
