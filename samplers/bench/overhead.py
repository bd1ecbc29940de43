"""Per-model-call sampler overhead with a trivial model, against a plain Euler loop and ComfyUI's own twins.

overhead per call = (time of one sampling run - its model calls * time of one model call) / model calls.
Runs are timed round-robin (every sampler, the Euler loop and the bare model once per repeat) so that load
from other processes hits them alike; each number is the median over repeats of the mean over a batch of runs.
With COMFYUI_PATH set, ComfyUI's sample_dpmpp_2m, sample_dpmpp_2m_sde and sample_dpmpp_3m_sde (loaded in-process,
see comfytwin.py; SDE twins at their defaults eta = 1 with their torchsde Brownian tree; on CUDA also
sample_dpmpp_2m_sde_gpu and sample_dpmpp_3m_sde_gpu, whose tree lives on the GPU) join the round robin on the same
model, latent and grid, and each of our twins is reported against them.

    COMFYUI_PATH=/path/to/ComfyUI python -m samplers.bench.overhead [--steps 20] [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .. import grids
from ..deterministic import build_plan
from ..options import parse_options
from ..registry import SAMPLERS, SamplerEntry
from ..sigmas import read_grid
from .arguments import names_in
from .comfytwin import TWINS, comfyui_path, twin_pairs, twin_runs
from .measure import is_adaptive
from .problems import SD_SIGMA_MAX, SD_SIGMA_MIN

SHAPE = (1, 4, 128, 128)
MIN_REPEATS = 3


def timing_grid(steps: int) -> torch.Tensor:
    """The grid every timing runs on: Karras (rho 7) over Stable Diffusion's sigma range, 14.6 to 0.029, then 0."""
    return grids.karras(steps, SD_SIGMA_MIN, SD_SIGMA_MAX)


def trivial_model(x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
    """D = x / 2: as cheap as a model can be, so the sampler's own arithmetic is what gets measured."""
    return x * 0.5


def euler_loop(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The baseline: explicit Euler on dx/dsigma = (x - D) / sigma, one model call per interval."""
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * ones)
        x = x + (x - denoised) / sigma * (sigma_next - sigma)
    return x


def _model_calls(entry: SamplerEntry, x: torch.Tensor, sigmas: torch.Tensor) -> int:
    """The entry's model calls on this grid: counted from its plan, or (adaptive) from one run's `info`."""
    if not is_adaptive(entry):
        return entry.count_model_calls(sigmas)
    info: dict[str, Any] = {}
    with torch.no_grad():
        entry(trivial_model, x, sigmas, disable=True, info=info)
    return int(info["nfe"])


def _has_plan(entry: SamplerEntry, sigmas: torch.Tensor) -> bool:
    """Whether the entry runs a plan (adaptive and optimisation-loop samplers have none)."""
    if is_adaptive(entry):
        return False
    try:
        entry.plan(sigmas)
    except NotImplementedError:
        return False
    return True


def _uncached_build(entry: SamplerEntry, sigmas: torch.Tensor) -> Callable[[], Any]:
    """Building the entry's plan at its defaults without the registry's plan cache (what a new grid costs)."""
    assert entry.spec is not None
    opts = parse_options(entry.name, entry.defaults, {})
    grid = read_grid(sigmas, opts["schedule"])
    return lambda: build_plan(entry.spec, grid, opts["schedule"], opts)


def _time_batch(fn: Callable[[], Any], number: int, sync: Callable[[], None],
                clock: Callable[[], float] = time.perf_counter) -> float:
    sync()
    start = clock()
    for _ in range(number):
        fn()
    sync()
    return (clock() - start) / number


def measure_overhead(entries: Mapping[str, SamplerEntry], steps: int = 20, repeats: int = 7,
                     target_s: float = 0.02, seed: int = 0, threads: int | None = None,
                     device: str = "cpu", max_s: float = 20.0) -> dict[str, Any]:
    """Overhead in microseconds per model call for every entry and for the Euler loop, at SHAPE float32.

    `threads` sets torch's intra-op threads for the measurement (None: as is); on CUDA every timed batch
    ends with a synchronize. Repeats stop early (after MIN_REPEATS) once the timed loop has run `max_s`.
    With one thread on CPU all work runs on the calling thread, so its CPU time (time.thread_time) is
    timed instead of wall-clock time: that is immune to other processes sharing the cores. Otherwise
    (several threads, or an accelerator) wall-clock time is the only honest clock.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = _measure(entries, steps, repeats, target_s, seed, torch.device(device), max_s)
    finally:
        torch.set_num_threads(before)
    return result


def _measure(entries: Mapping[str, SamplerEntry], steps: int, repeats: int, target_s: float, seed: int,
             device: torch.device, max_s: float) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float32).to(device)
    sigmas = timing_grid(steps).to(torch.float32).to(device)  # where a host keeps them
    sigma_vec = torch.full((SHAPE[0],), 1.0, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    cpu_clock = device.type == "cpu" and torch.get_num_threads() == 1
    clock = time.thread_time if cpu_clock else time.perf_counter

    jobs: dict[str, tuple[Callable[[], Any], int]] = {
        "model": (lambda: trivial_model(x, sigma_vec), 1),
        "euler": (lambda: euler_loop(trivial_model, x, sigmas), steps),
    }
    for name, entry in entries.items():
        jobs[name] = ((lambda e=entry: e(trivial_model, x, sigmas, disable=True)), _model_calls(entry, x, sigmas))
    twin_of = twin_runs(trivial_model, x, sigmas, seed)
    twins = [(ours, theirs) for ours, theirs in twin_pairs(device) if ours in entries and theirs in twin_of]
    for ours, theirs in twins:
        jobs[f"comfyui/{theirs}"] = (twin_of[theirs], jobs[ours][1])
    planned = [name for name, entry in entries.items() if _has_plan(entry, sigmas)]
    plan_jobs = {name: (lambda e=entries[name]: e.plan(sigmas)) for name in planned}
    plan_jobs |= {f"build/{name}": _uncached_build(entries[name], sigmas) for name in planned}

    numbers: dict[str, int] = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde warns that float32 sigmas round past its float64 interval
        for name, (fn, _) in jobs.items():  # warm-up, then size each batch to about target_s
            once = _time_batch(fn, 1, sync, clock)
            if once < target_s:  # fast jobs: a better estimate of one run before sizing the batch
                once = max(_time_batch(fn, 3, sync, clock), 1e-7)
            numbers[name] = max(1, min(1000, int(target_s / once)))
        for fn in plan_jobs.values():
            fn()
        samples: dict[str, list[float]] = {name: [] for name in jobs}
        plan_samples: dict[str, list[float]] = {name: [] for name in plan_jobs}
        started = time.perf_counter()
        for done in range(repeats):
            if done >= MIN_REPEATS and time.perf_counter() - started > max_s:
                break  # a loaded machine: keep the section's runtime bounded
            for name, (fn, _) in jobs.items():
                samples[name].append(_time_batch(fn, numbers[name], sync, clock))
            for name, fn in plan_jobs.items():
                plan_samples[name].append(_time_batch(fn, 5, sync, clock))

    model_s = statistics.median(samples["model"])

    def row(name: str, calls: int) -> dict[str, Any]:
        run_s = statistics.median(samples[name])
        return {"nfe": calls, "run_ms": run_s * 1e3, "model_ms": calls * model_s * 1e3,
                "overhead_us_per_call": (run_s - calls * model_s) / calls * 1e6,
                "min_overhead_us_per_call": (min(samples[name]) - calls * min(samples["model"])) / calls * 1e6}

    euler = row("euler", steps)
    rows = {}
    for name in entries:
        r = row(name, jobs[name][1])
        r["ratio_to_euler"] = r["overhead_us_per_call"] / euler["overhead_us_per_call"] \
            if euler["overhead_us_per_call"] > 0 else None
        r["min_ratio_to_euler"] = r["min_overhead_us_per_call"] / euler["min_overhead_us_per_call"] \
            if euler["min_overhead_us_per_call"] > 0 else None
        r["plan_us_per_run"] = statistics.median(plan_samples[name]) * 1e6 if name in plan_samples else None
        r["plan_build_us"] = statistics.median(plan_samples[f"build/{name}"]) * 1e6 if name in plan_samples else None
        rows[name] = r
    comfyui = {}
    for name, function in twins:
        theirs, ours = row(f"comfyui/{function}", jobs[name][1]), rows[name]
        comfyui[function] = {
            "ours": name, "nfe": ours["nfe"],
            "ours_us_per_step": ours["run_ms"] * 1e3 / steps, "comfyui_us_per_step": theirs["run_ms"] * 1e3 / steps,
            "ours_overhead_us_per_call": ours["overhead_us_per_call"],
            "comfyui_overhead_us_per_call": theirs["overhead_us_per_call"],
            "overhead_ratio": ours["overhead_us_per_call"] / theirs["overhead_us_per_call"]
            if theirs["overhead_us_per_call"] > 0 else None,
            "min_overhead_ratio": ours["min_overhead_us_per_call"] / theirs["min_overhead_us_per_call"]
            if theirs["min_overhead_us_per_call"] > 0 else None,
        }
    return {"shape": list(SHAPE), "dtype": "float32", "device": str(device), "threads": torch.get_num_threads(),
            "clock": "thread CPU time" if cpu_clock else "wall clock",
            "grid": f"karras({steps}) {SD_SIGMA_MAX:g} -> {SD_SIGMA_MIN:g}, then 0", "steps": steps,
            "repeats": len(samples["model"]), "model_us_per_call": model_s * 1e6, "euler": euler,
            "samplers": rows, "comfyui": comfyui, "comfyui_path": str(comfyui_path()) if twins else None}


def twin_table(result: Mapping[str, Any]) -> str:
    """Markdown: each of our samplers against its ComfyUI twin (per-step time, overhead per call, ratio)."""
    lines = ["| ours | ComfyUI twin | µs/step ours | µs/step ComfyUI | overhead µs/call ours | overhead µs/call "
             "ComfyUI | overhead ratio (min) |", "|---|---|---|---|---|---|---|"]
    for function, r in result["comfyui"].items():
        ratio = "—" if r["overhead_ratio"] is None else f"{r['overhead_ratio']:.2f}"
        low = "—" if r["min_overhead_ratio"] is None else f"{r['min_overhead_ratio']:.2f}"
        lines.append(f"| {r['ours']} | {function} | {r['ours_us_per_step']:.0f} | {r['comfyui_us_per_step']:.0f} | "
                     f"{r['ours_overhead_us_per_call']:.1f} | {r['comfyui_overhead_us_per_call']:.1f} | "
                     f"{ratio} ({low}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Overhead of the chosen samplers (default: the ComfyUI twins) and, with COMFYUI_PATH, the twin table."""
    p = argparse.ArgumentParser(prog="python -m samplers.bench.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--samplers", type=names_in(SAMPLERS), default=",".join(TWINS),
                   help="comma-separated registry names")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    res = measure_overhead({n: SAMPLERS[n] for n in args.samplers}, steps=args.steps, repeats=args.repeats,
                           threads=args.threads, device=args.device, max_s=120.0)
    print(f"latent {'x'.join(map(str, res['shape']))} float32 on {res['device']}, {res['threads']} thread(s), "
          f"{res['clock']}, {res['grid']}, median of {res['repeats']} interleaved repeats; model "
          f"{res['model_us_per_call']:.1f} µs/call, Euler loop overhead {res['euler']['overhead_us_per_call']:.1f} "
          "µs/call\n")
    print("| sampler | NFE | overhead µs/call | plan µs/run (cached) | plan build µs |\n|---|---|---|---|---|")
    for name, r in res["samplers"].items():
        plan = "—" if r["plan_us_per_run"] is None else f"{r['plan_us_per_run']:.0f}"
        build = "—" if r["plan_build_us"] is None else f"{r['plan_build_us']:.0f}"
        print(f"| {name} | {r['nfe']} | {r['overhead_us_per_call']:.1f} | {plan} | {build} |")
    if res["comfyui"]:
        print(f"\nComfyUI twins ({res['comfyui_path']}):\n")
        print(twin_table(res))
    elif comfyui_path() is None:
        print("\nCOMFYUI_PATH is not set: no ComfyUI twins timed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
