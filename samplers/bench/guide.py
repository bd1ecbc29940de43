"""The README's sampler guide ("Which sampler to pick"), computed from the committed benchmark documents.

Each recommendation is checked before it is printed: the pick must have the lowest median per-sample error of our
deterministic samplers that run the step count the user sets, at that number of model calls (among runs that solve
the same ODE: both ends of the problem's grids, or no shorter). Each figure is a ratio of median errors against the
exact ODE solution, ComfyUI's own sampler (run in the same process, docs/comparison*.json) over ours, or a Fréchet
distance of docs/bench_networks.json. `python -m samplers.bench.guide` prints the table; tests/test_readme_guide.py
holds the README to it, so re-measured documents cannot leave the guide behind. `--measure-guidance` measures the
SD-type picks again on the mixture at other guidance scales (docs/guide_guidance.json), and the guide's last
sentence states, once checked, what that shows.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..registry import SAMPLERS, AdaptiveEntry
from .cases import ve_cases
from .comfy_builtin import STOPS_AT_LAST_NONZERO
from .comparison import ends_by
from .measure import CaseRunner
from .problems import ve_mixture
from .report import table

DOCS = Path(__file__).resolve().parents[2] / "docs"
ANALYTIC, NETWORKS, NETWORK_BENCH = "comparison.json", "comparison_networks.json", "bench_networks.json"
GUIDANCE = "guide_guidance.json"
GUIDANCE_SCALES = (3.0, 12.0, 20.0)
GUIDANCE_SAMPLERS = ("dpm_solver_2m", "dpm_solver_3m", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "dpm_solver_pp_pc")
GUIDANCE_STEPS = (8, 10, 20)
PROBLEMS = {"ve_mixture": (ANALYTIC, "mixture"), "ve_mixture_cfg7.5": (ANALYTIC, "mixture with CFG 7.5"),
            "digits_eps": (NETWORKS, "digits network"), "flow_mixture": (ANALYTIC, "flow mixture"),
            "digits_flow": (NETWORKS, "digits flow network")}
"""Benchmark problem -> (its comparison document, its name in the guide)."""
STEP_COUNT_LABELS = frozenset(e.label for e in SAMPLERS.values() if not isinstance(e, AdaptiveEntry))
"""Our samplers that run the step count the user sets (the adaptive ones choose their own steps)."""


class GuideClaimError(AssertionError):
    """A recommendation that the committed documents no longer support."""


@dataclass(frozen=True)
class Pick:
    """Recommend `label` on `grid` for `problems`, with figures at `calls` model calls against ComfyUI's `baseline`
    on `baseline_grid`. At `calls` the pick on `grid` must win among our samplers on every grid of `contest`; at
    every count of `checked` the pick on the best of the contest grids must."""

    models: str
    steps: str
    label: str
    grid: str
    calls: tuple[int, ...]
    problems: tuple[str, ...]
    baseline: str
    baseline_grid: str
    contest: tuple[str, ...]
    checked: tuple[int, ...]
    settings: str


SD_TYPE = ("ve_mixture", "ve_mixture_cfg7.5", "digits_eps")
FLOW_PROBLEMS = ("flow_mixture", "digits_flow")
PICKS = (
    Pick(models="SD1.x / SDXL", steps="8–12 steps", label="DPM-Solver 3M", grid="karras", settings="Karras",
         problems=SD_TYPE, calls=(10,), checked=(8, 10, 12), contest=("karras",),
         baseline="dpmpp_2m", baseline_grid="karras"),
    Pick(models="SD1.x / SDXL", steps="20 steps or more", label="DPM-Solver++ PC", grid="exponential",
         settings="*logSNR uniform* (WebUI), `exponential` (ComfyUI)",
         problems=SD_TYPE, calls=(20,), checked=(20, 25, 30, 40, 50), contest=("karras", "exponential"),
         baseline="dpmpp_2m", baseline_grid="karras"),
    Pick(models="rectified flow (SD3, Flux, Wan)", steps="10 steps or more", label="DPM-Solver 3M", grid="simple",
         settings="the model's usual one (*Simple*, `simple`)",
         problems=FLOW_PROBLEMS, calls=(10, 20), checked=(10, 12, 15, 20, 25, 30, 40, 50), contest=("simple",),
         baseline="euler", baseline_grid="simple"),
)
GRID_NAMES = {"karras": "Karras", "exponential": "exponential", "simple": "simple"}
NAME_OF = {e.label: name for name, e in SAMPLERS.items()}


def load(docs: Path) -> dict[str, Any]:
    """The documents the guide reads, by file name."""
    return {name: json.loads((docs / name).read_text()) for name in (ANALYTIC, NETWORKS, NETWORK_BENCH, GUIDANCE)}


def measure_guidance(samples: int = 512) -> dict[str, Any]:
    """Median error / data std of GUIDANCE_SAMPLERS on the CFG mixture at GUIDANCE_SCALES, both VE grids and
    GUIDANCE_STEPS steps (the benchmark's noises and exact references): {cfg: {grid: {sampler: {steps: error}}}}."""
    table_: dict[str, Any] = {}
    for scale in GUIDANCE_SCALES:
        for case in ve_cases(ve_mixture(scale)):
            runner = CaseRunner(case, samples)
            table_.setdefault(f"{scale:g}", {})[case.grid_name] = {
                name: {str(n): runner.run(SAMPLERS[name], n).median_err / runner.data_std for n in GUIDANCE_STEPS}
                for name in GUIDANCE_SAMPLERS}
    return {"samples": samples, "torch": torch.__version__, "median_error_over_data_std": table_}


def _cases(documents: dict[str, Any], problem: str) -> dict[str, Any]:
    return documents[PROBLEMS[problem][0]]["comparison"]["cases"]


def _run(runs: dict[str, list[dict[str, Any]]], label: str, calls: int) -> dict[str, Any]:
    """The run of `label` on `calls` steps of one model call each."""
    found = [r for r in runs.get(label, ()) if r["n_steps"] == calls and r["nfe"] == calls]
    if not found:
        raise GuideClaimError(f"no {calls}-step run of {label}")
    return found[0]


def _error(case: dict[str, Any], side: str, label: str, calls: int) -> float:
    return _run(case[f"{side}_runs"], label, calls)["median_err"]


def _rivals(pick: Pick, cases: dict[str, Any], problem: str, side: str, mine: dict[str, Any], calls: int
            ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(label, grid, run) of `side`'s runs on the pick's contest grids within `calls` model calls that end no higher
    than `mine` (a smaller error on a shorter ODE is no win)."""
    for grid in pick.contest:
        for label, runs in cases[f"{problem}/{grid}"][f"{side}_runs"].items():
            for r in runs:
                if r["nfe"] <= calls and ends_by(r, mine["sigma_last"]):
                    yield label, grid, r


def _check_best(pick: Pick, cases: dict[str, Any], problem: str, calls: int, grids: tuple[str, ...]) -> None:
    """The pick's `calls`-step run on the best of `grids` has the lowest median error of our step-count rivals."""
    mine = min((_run(cases[f"{problem}/{g}"]["ours_runs"], pick.label, calls) for g in grids),
               key=lambda r: r["median_err"])
    for label, grid, r in _rivals(pick, cases, problem, "ours", mine, calls):
        if label not in STEP_COUNT_LABELS or (label == pick.label and grid in grids):
            continue
        if r["median_err"] < mine["median_err"]:
            raise GuideClaimError(f"{problem}: {label} on {grid} ({r['nfe']} calls) beats {pick.label} at "
                                  f"{calls} calls: {r['median_err']:.3e} < {mine['median_err']:.3e}")


def _join(items: Sequence[str], last: str = " and ") -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + last + items[-1]


def _pick_row(pick: Pick, docs: dict[str, Any]) -> list[str]:
    """Checks the pick at every count of `checked` and measures it against the host's sampler at `calls`."""
    for problem in pick.problems:
        for calls in pick.checked:
            _check_best(pick, _cases(docs, problem), problem, calls, pick.contest)
    parts = []
    for calls in pick.calls:
        ratios = []
        for problem in pick.problems:
            cases = _cases(docs, problem)
            _check_best(pick, cases, problem, calls, (pick.grid,))
            ours = _error(cases[f"{problem}/{pick.grid}"], "ours", pick.label, calls)
            theirs = _error(cases[f"{problem}/{pick.baseline_grid}"], "theirs", pick.baseline, calls)
            ratios.append(f"{theirs / ours:.1f}× ({PROBLEMS[problem][1]})")
        parts.append(f"{_join(ratios)} our error at {calls} steps")
    grid = "" if pick.baseline_grid == pick.grid else f" on {GRID_NAMES[pick.baseline_grid]}"
    return [f"{pick.models}, {pick.steps}", f"{pick.label} (`{NAME_OF[pick.label]}`)", pick.settings,
            f"ComfyUI's `{pick.baseline}`{grid} has {_join(parts, '; ')}"]


def _against_their_best(pick: Pick, docs: dict[str, Any]) -> str:
    """Our pick's median error over the best of ComfyUI's samplers (those that return the denoised image) at the
    same number of model calls, on the contest grids, among runs that end no higher: the range over problems."""
    ratios, names = [], set()
    for calls in pick.calls:
        for problem in pick.problems:
            cases = _cases(docs, problem)
            mine = _run(cases[f"{problem}/{pick.grid}"]["ours_runs"], pick.label, calls)
            best, name = min((r["median_err"], label) for label, _, r in
                             _rivals(pick, cases, problem, "theirs", mine, calls)
                             if label.split()[0] not in STOPS_AT_LAST_NONZERO)
            ratios.append(mine["median_err"] / best)
            names.add(name)
    steps = _join([str(c) for c in pick.calls])
    return (f"{pick.label} on {pick.models} at {steps} steps {min(ratios):.2f}–{max(ratios):.2f}× "
            f"({', '.join(sorted(names))})")


def _familiar_row(docs: dict[str, Any]) -> list[str]:
    """DPM-Solver++ 2M against the host's DPM++ 2M: equal on the SD-type problems, the ratio on the flow ones."""
    same, flow = 0, []
    for problem, (_, name) in PROBLEMS.items():
        for case, data in _cases(docs, problem).items():
            if not case.startswith(f"{problem}/"):
                continue
            ours, theirs = _error(data, "ours", "DPM-Solver++ 2M", 10), _error(data, "theirs", "dpmpp_2m", 10)
            if problem in FLOW_PROBLEMS:
                flow.append(f"{ours / theirs:.2f}× ({name})")
            elif abs(ours - theirs) > 1e-6 * theirs:
                raise GuideClaimError(f"{case}: DPM-Solver++ 2M {ours:.6e} differs from dpmpp_2m {theirs:.6e}")
            else:
                same += 1
    return ["the images you know", "DPM-Solver++ 2M (`dpm_solver_pp_2m`)", "any",
            f"the host's DPM++ 2M on SD-type models (the same error in all {same} cases); on flow models ours "
            f"solves the flow form: {_join(flow)} the error of ComfyUI's `dpmpp_2m` at 10 steps"]


def _stochastic_row(docs: dict[str, Any]) -> list[str]:
    """The stochastic pick per model family: the lowest Fréchet distance to the data set at 10 model calls."""
    dist = docs[NETWORK_BENCH]["network_distribution"]
    picks, parts = [], []
    for model, family in (("digits_eps", "SD-type"), ("digits_flow", "flow")):
        rows = dist["models"][model]["rows"]
        fd = {name: next(c["fd"] for c in cells if c["budget"] == 10)
              for name, cells in rows.items() if SAMPLERS[name].stochastic}
        best = min(fd, key=fd.__getitem__)
        others = sorted(v for n, v in fd.items() if n != best)
        picks.append(f"{SAMPLERS[best].label} (`{best}`, {family})")
        parts.append(f"{fd[best]:.2f} on the {PROBLEMS[model][1]}, the exact ODE's "
                     f"{dist['models'][model]['ode_fd']:.2f} (the other stochastic samplers "
                     f"{others[0]:.2f}–{others[-1]:.2f})")
    return ["variety from the seed (stochastic)", _join(picks, " / "), "as above",
            f"distance to the data set at 10 steps (Fréchet, pixel statistics): {_join(parts, '; ')}"]


def _guidance_sentence(docs: dict[str, Any]) -> str:
    """At other guidance scales: DPM-Solver 3M on Karras the best of GUIDANCE_SAMPLERS at 8 and 10 steps (checked),
    and how far PC is from the best at 20 steps on either grid."""
    measured = docs[GUIDANCE]["median_error_over_data_std"]
    worst_pc = 1.0
    for scale, by_grid in measured.items():
        for steps in ("8", "10"):
            karras = by_grid["karras"]
            best = min(karras, key=lambda name: karras[name][steps])
            if best != "dpm_solver_3m":
                raise GuideClaimError(f"CFG {scale}, Karras, {steps} steps: {best} beats dpm_solver_3m")
        errors = [e[name]["20"] for e in by_grid.values() for name in e]
        worst_pc = max(worst_pc, min(e["dpm_solver_pp_pc"]["20"] for e in by_grid.values()) / min(errors))
    names = _join([SAMPLERS[n].label for n in GUIDANCE_SAMPLERS])
    return (f"At CFG {_join(list(measured))} on the mixture ({docs[GUIDANCE]['samples']} noises, "
            f"`docs/{GUIDANCE}`), of the multistep samplers ({names}) DPM-Solver 3M on Karras stays the most "
            f"accurate at 8 and 10 steps, and at 20 steps DPM-Solver++ PC on its better grid has at most "
            f"{worst_pc:.2f}× the best median error.")


def render(docs: Path = DOCS) -> str:
    """The guide table, every row checked against the documents in `docs`, and the counts it was checked at."""
    documents = load(docs)
    rows = [*(_pick_row(p, documents) for p in PICKS), _familiar_row(documents), _stochastic_row(documents)]
    checked = "; ".join(f"{p.label} on {p.models} at {_join([str(c) for c in p.checked])} steps"
                        for p in PICKS)
    theirs = "; ".join(_against_their_best(p, documents) for p in PICKS)
    notes = [f"Each pick has the lowest median error of our samplers that take a step count, on every problem of its "
             f"row, at every step count checked: {checked}.",
             _guidance_sentence(documents),
             "Against the best of all of ComfyUI's samplers at the same number of model calls (dpm_fast and "
             "dpm_adaptive left out: they return the state before the last denoise), each pick has this share of "
             f"their median error: {theirs}."]
    return (table(["you run", "pick", "schedule", "measured against the exact solution (median error)"], rows,
                  ["l", "l", "l", "l"]) + "\n\n" + "\n".join(f"- {note}" for note in notes))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder of the benchmark documents (default: docs/)")
    parser.add_argument("--measure-guidance", action="store_true",
                        help=f"measure the picks at CFG {GUIDANCE_SCALES} first and write DOCS/{GUIDANCE} (about 10 s)")
    args = parser.parse_args(argv)
    if args.measure_guidance:
        torch.set_num_threads(1)
        (args.docs / GUIDANCE).write_text(json.dumps(measure_guidance(), indent=1) + "\n")
    print(render(args.docs))


if __name__ == "__main__":
    main()
