"""Command line of the benchmark: `python -m samplers.bench [--quick] [--json PATH] [--plot PATH] ...`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from .. import SAMPLERS
from . import comparison
from .accuracy import deterministic, run_accuracy, run_adaptive
from .arguments import comma_list, names_in, positive_int, positive_ints
from .cases import select_cases
from .comfy_builtin import comfyui_path, load_comfy
from .comparison import comparison_markdown
from .distribution import run_distribution
from .machine import machine_info
from .measure import QUICK_LADDER, RTOL_LADDER, CaseRunner, is_adaptive
from .networks import NETWORK_SAMPLES, adopt_network_runners, is_network, select_network_cases
from .networks import run_distribution as run_network_distribution
from .noisecost import measure_noise_cost
from .overhead import measure_overhead
from .report import render
from .study import (
    corrector_study,
    current_threshold,
    lower_order_final_study,
    pc_order_study,
    solver_type_study,
    structure_of,
    third_order_study,
)

FULL = {"budgets": [4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50], "samples": 128, "study_steps": list(range(3, 31)),
        "overhead_steps": 20, "overhead_repeats": 15, "overhead_target_s": 0.01, "overhead_max_s": 20.0,
        "distribution_steps": [5, 10, 20, 50], "distribution_samples": 2048, "noise_batches": [1, 4],
        "noise_repeats": 5, "adaptive_orders": [2, 3]}
QUICK = {"budgets": [5, 10, 20, 40], "samples": 32, "study_steps": [5, 10, 20],
         "overhead_steps": 10, "overhead_repeats": 3, "overhead_target_s": 0.004, "overhead_max_s": 2.0,
         "distribution_steps": [10, 20], "distribution_samples": 256, "noise_batches": [1], "noise_repeats": 2,
         "adaptive_orders": [3]}
SECTIONS = ("accuracy", "study", "overhead", "adaptive", "distribution", "noise", "network_distribution", "comparison")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m samplers.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small subset (under a minute): budgets 5,10,20,40, 32 samples")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write the error-vs-NFE figure (PNG, needs matplotlib)")
    p.add_argument("--plot-median", metavar="PATH",
                   help="also write the figure of the median per-sample error (robust to outlier trajectories)")
    p.add_argument("--samplers", type=names_in(SAMPLERS), help="comma-separated registry names (default: all)")
    p.add_argument("--problems", type=comma_list,
                   help="comma-separated case names or shell patterns, e.g. 'flow_mixture/*,ve_mixture/karras'")
    p.add_argument("--budgets", type=positive_ints, help="comma-separated NFE budgets")
    p.add_argument("--samples", type=positive_int, help="initial noises per problem")
    p.add_argument("--study-steps", type=positive_ints, help="step counts of the lower_order_final study")
    p.add_argument("--threads", type=positive_ints,
                   help="torch thread counts for the overhead section (default: as is, plus 1 when that is more, "
                   "except in --quick)")
    p.add_argument("--device", default="cpu", help="device of the overhead section (default cpu)")
    p.add_argument("--skip", type=names_in(SECTIONS, "section"), default=[],
                   help=f"sections to skip, from {', '.join(SECTIONS)}")
    p.add_argument("--networks", action="store_true",
                   help="add the embedded demo networks (dpmsolver_demo): cases digits_eps/karras, "
                   "digits_eps/exponential, digits_flow/simple, and section network_distribution for the stochastic "
                   "samplers (needs scikit-learn)")
    p.add_argument("--network-samples", type=positive_int, default=NETWORK_SAMPLES,
                   help=f"initial noises per demo-network case (default {NETWORK_SAMPLES}; --samples sets those of "
                   "the analytic problems)")
    p.add_argument("--comfyui", metavar="PATH", default=None,
                   help="ComfyUI checkout to compare with (default: $COMFYUI_PATH): section 'comparison' runs "
                   "ComfyUI's built-in samplers on the same cases, grids, noises and references "
                   "(samplers/bench/comparison.py)")
    p.add_argument("--candidates", metavar="MODULE[:ATTR]", action="append", default=[],
                   help="extra entries for our side of the comparison: a module whose CANDIDATES (or ATTR) lists "
                   "samplers.bench.comparison.Candidate objects (repeatable)")
    p.add_argument("--plot-comparison", metavar="PATH", help="write the comparison figure (PNG, needs matplotlib)")
    return p


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread while the accuracy runs: their tensors are tiny (B x 16), and on a loaded machine
    torch's thread pool makes each call 10-50x slower. The overhead section keeps the host's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def overhead_thread_counts(host: int, device: str, quick: bool, chosen: Sequence[int] | None) -> list[int]:
    """The torch thread counts the overhead section times: --threads when given; else the host's count, and for a
    full CPU run on a host with more than one thread also 1 thread (the README's table has both columns)."""
    if chosen:
        return list(chosen)
    return [host, 1] if host > 1 and device == "cpu" and not quick else [host]


def _network_cases(args: argparse.Namespace) -> list[Any]:
    """The demo-network cases matching --problems when --networks is given (loads the networks), else []."""
    if not args.networks:
        return []
    return select_network_cases(args.problems, args.network_samples)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected sections; returns the JSON-ready result (with the Markdown under 'markdown')."""
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("budgets", "samples", "study_steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    chosen = {n: SAMPLERS[n] for n in args.samplers or SAMPLERS}
    ode = deterministic(chosen)
    cases = select_cases(args.problems, _network_cases(args))
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "machine": machine_info(),
        "config": {**cfg, "quick": bool(args.quick), "seed": "problems.SEED + 1 (Problem.prior_noise)",
                   "dtype": "float64", "accuracy_threads": 1, "reference": "DOP853 in log sigma, rtol = atol = 1e-12"},
        "samplers": {n: e.label for n, e in ode.items()},
        "labels": {n: e.label for n, e in chosen.items()},
        "structures": {n: structure_of(e) for n, e in ode.items()},
        "skipped_stochastic": [n for n in chosen if n not in ode],
        "cases": {c.name: {"problem": c.problem.name, "family": c.problem.family, "grid": c.grid_name,
                           "schedule": c.schedule, "sigma_max": c.problem.sigma_max,
                           "sigma_min": c.problem.sigma_min, "data_std": c.data_std, "dim": c.problem.dim}
                  for c in cases},
        "runtime_s": {},
    }
    rtols = QUICK_LADDER if args.quick else RTOL_LADDER
    runners = [CaseRunner(c, args.network_samples if is_network(c) else cfg["samples"], rtols)
               for c in cases]
    for r in runners:
        res["cases"][r.case.name]["samples"] = int(r.x0.shape[0])
    if args.networks:
        adopt_network_runners(runners)
    with single_thread():
        if "accuracy" not in args.skip:
            t = time.perf_counter()
            _log(f"accuracy: {len(ode)} samplers x {len(cases)} problems x {len(cfg['budgets'])} budgets")
            res["accuracy"] = run_accuracy(runners, ode, cfg["budgets"])
            res["runtime_s"]["accuracy"] = time.perf_counter() - t
        if "comparison" not in args.skip:
            t = time.perf_counter()
            res["comparison"] = _comparison(args, runners, ode, cfg["budgets"])
            res["runtime_s"]["comparison"] = time.perf_counter() - t
        if "study" not in args.skip:
            t = time.perf_counter()
            _log("defaults study: third_order, lower_order_final, solver_type")
            core = {n: e for n, e in ode.items() if e.spec is None or not e.spec.corrector}  # PC: own studies
            res["study"] = {
                "third_order": third_order_study(runners, core, cfg["budgets"]),
                "lower_order_final": lower_order_final_study(runners, core, cfg["study_steps"], cfg["budgets"]),
                "solver_type": solver_type_study(runners, core, cfg["budgets"]),
                "corrector": corrector_study(runners, ode, cfg["budgets"]),
                "pc_order": pc_order_study(runners, ode, cfg["budgets"]),
                "current_lower_order_final_below": current_threshold(),
            }
            res["runtime_s"]["study"] = time.perf_counter() - t
        adaptive = {n: e for n, e in ode.items() if is_adaptive(e)}
        if "adaptive" not in args.skip and adaptive:
            t = time.perf_counter()
            _log(f"adaptive: {len(adaptive)} samplers, rtol ladder, orders {cfg['adaptive_orders']}, 2 controllers")
            res["adaptive"] = run_adaptive(runners, adaptive, cfg["adaptive_orders"])
            res["runtime_s"]["adaptive"] = time.perf_counter() - t
        if "distribution" not in args.skip:
            t = time.perf_counter()
            _log(f"distribution: {cfg['distribution_samples']} samples, steps {cfg['distribution_steps']}")
            res["distribution"] = run_distribution(chosen, cfg["distribution_steps"], cfg["distribution_samples"])
            res["runtime_s"]["distribution"] = time.perf_counter() - t
    if "noise" not in args.skip:
        t = time.perf_counter()
        _log("noise: seeded Brownian path vs torchsde vs randn, per step")
        res["noise_cost"] = [measure_noise_cost(batch=b, repeats=cfg["noise_repeats"]) for b in cfg["noise_batches"]]
        res["runtime_s"]["noise"] = time.perf_counter() - t
    res["reference_ode_solves"] = {r.case.name: r.refs.ode_solves for r in runners}
    if args.networks and "network_distribution" not in args.skip:
        t = time.perf_counter()
        _log("network_distribution: demo networks, stochastic samplers, Frechet distance to the data set")
        with single_thread():
            res["network_distribution"] = run_network_distribution(chosen, quick=bool(args.quick))
        res["runtime_s"]["network_distribution"] = time.perf_counter() - t
    if "overhead" not in args.skip:
        t = time.perf_counter()
        res["overhead"] = []
        for threads in overhead_thread_counts(torch.get_num_threads(), args.device, bool(args.quick), args.threads):
            _log(f"overhead: per-call timing at 1x4x128x128 float32 on {args.device}, {threads} thread(s)")
            res["overhead"].append(measure_overhead(
                chosen, steps=cfg["overhead_steps"], repeats=cfg["overhead_repeats"],
                target_s=cfg["overhead_target_s"], threads=threads, device=args.device, max_s=cfg["overhead_max_s"]))
        res["runtime_s"]["overhead"] = time.perf_counter() - t
    res["runtime_s"]["total"] = time.perf_counter() - t_start
    return res


def markdown(res: dict[str, Any]) -> str:
    """The report of a run (or of its JSON): the measured sections, then the comparison with ComfyUI where it ran."""
    return render(res) + ("\n" + comparison_markdown(res) if "comparison" in res else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints the Markdown report; optional JSON and PNG outputs."""
    args = parser().parse_args(argv)
    res = run(args)
    print(markdown(res))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, separators=(",", ":"), allow_nan=False)
            f.write("\n")
        _log(f"wrote {args.json}")
    for path, median in ((args.plot, False), (args.plot_median, True)):
        if path:
            _figure(res, path, median)
    if args.plot_comparison:
        _comparison_figure(res, args.plot_comparison)
    return 0


def _comparison(args: argparse.Namespace, runners: Sequence[CaseRunner], ode: dict[str, Any], budgets: list[int]
                ) -> dict[str, Any]:
    """The comparison with ComfyUI's built-in samplers when a checkout is given, else how to enable it."""
    path = comfyui_path(args.comfyui)
    if path is None:
        return comparison.disabled()
    for spec in args.candidates:
        comparison.load_candidates(spec)
    _log(f"comparison: ComfyUI's built-in samplers from {path} vs ours (NFE <= {comparison.OUR_BUDGET} vs "
         f"<= {comparison.THEIR_BUDGET})")
    return comparison.run_comparison(runners, ode, load_comfy(path), budgets, comparison.registered_candidates())


def _comparison_figure(res: dict[str, Any], path: str) -> None:
    if not res.get("comparison", {}).get("enabled"):
        _log("--plot-comparison needs the comparison section (ComfyUI); no figure written")
        return
    try:
        comparison.write_plot(path, res["comparison"])
        _log(f"wrote {path}")
    except ImportError as exc:
        _log(f"--plot-comparison: matplotlib is not available ({exc}); no figure written")


def _figure(res: dict[str, Any], path: str, median: bool) -> None:
    if "accuracy" not in res:
        _log("--plot needs the accuracy section; no figure written")
        return
    from .plot import write_plot

    try:
        write_plot(path, res["accuracy"], res["samplers"], res["structures"],
                   {c: v["data_std"] for c, v in res["cases"].items()}, median=median)
        _log(f"wrote {path}")
    except ImportError as exc:
        _log(f"--plot: matplotlib is not available ({exc}); no figure written")
