"""Cost of the step noise: the seeded Brownian path of samplers/noise.py against torchsde and torch.randn.

    python -m samplers.bench.noisecost [--device cuda]

One sampling run's worth of noise on a Karras grid (one increment per step, as a multistep SDE sampler draws
it) at the overhead section's latent shape, timed per step. Baselines: torch.randn (the cheapest possible
noise, neither seeded per sample nor refinable) and torchsde's Brownian tree used the way k-diffusion-style
noise samplers use it (one tree per sample over [sigma_min, sigma_max], entropy = seed + sample index, the
increment over each step divided by the square root of its length), when torchsde is installed.
On CPU one thread's CPU time is timed; on CUDA wall-clock time, each run ending with a synchronize.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..noise import SeededNoise
from ..schedules import VE
from .arguments import positive_int, positive_ints
from .overhead import SHAPE, timing_grid


def _torchsde_run(x: torch.Tensor, sigmas: list[float], seed: int) -> Callable[[], None] | None:
    try:
        import torchsde
    except ImportError:
        return None
    lo, hi = min(s for s in sigmas if s > 0), max(sigmas)

    def run() -> None:
        trees = [torchsde.BrownianTree(lo, torch.zeros_like(x[b]), hi, entropy=seed + b) for b in range(x.shape[0])]
        for s, t in itertools.pairwise(sigmas):
            if t == 0.0:
                continue
            w = torch.stack([tree(t, s) for tree in trees])
            _ = w / (s - t) ** 0.5

    return run


def measure_noise_cost(steps: int = 20, repeats: int = 5, seed: int = 0, batch: int = SHAPE[0],
                       device: str = "cpu") -> dict[str, Any]:
    """ms per step of each noise source, their ratio to torch.randn, and ours over torchsde's (CPU: one thread,
    thread CPU time; CUDA: wall-clock time of a synchronised run)."""
    on_cuda = torch.device(device).type == "cuda"
    threads = 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    clock = time.perf_counter if on_cuda else time.thread_time  # one CPU thread: immune to other load

    def timed(fn: Callable[[], None]) -> float:
        if on_cuda:
            torch.cuda.synchronize(device)
        start = clock()
        fn()
        if on_cuda:
            torch.cuda.synchronize(device)
        return clock() - start

    try:
        x = torch.zeros((batch, *SHAPE[1:]), dtype=torch.float32, device=device)
        sigmas = timing_grid(steps).tolist()
        pairs = [(s, t) for s, t in itertools.pairwise(sigmas) if t > 0.0]

        def ours() -> None:
            source = SeededNoise(seed, x, VE)
            source.prepare(increments=pairs)
            for s, t in pairs:
                source.increment(s, t)

        def randn() -> None:
            for _ in pairs:
                torch.randn(x.shape, device=x.device)

        jobs: dict[str, Callable[[], None]] = {"seeded_brownian": ours, "randn": randn}
        tsde = _torchsde_run(x, sigmas, seed)
        if tsde is not None:
            jobs["torchsde_brownian_tree"] = tsde
        times: dict[str, list[float]] = {name: [] for name in jobs}
        for fn in jobs.values():
            fn()  # warm-up
        for _ in range(repeats):
            for name, fn in jobs.items():
                times[name].append(timed(fn) / len(pairs))
        per_step = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    finally:
        torch.set_num_threads(before)
    return {"shape": list(x.shape), "dtype": "float32", "device": str(x.device), "threads": threads,
            "clock": "wall clock" if on_cuda else "thread CPU time",
            "steps": len(pairs), "repeats": repeats, "ms_per_step": per_step,
            "ratio_to_randn": {k: v / per_step["randn"] for k, v in per_step.items()},
            "ratio_to_torchsde": (per_step["seeded_brownian"] / per_step["torchsde_brownian_tree"]
                                  if tsde is not None else None),
            "torchsde": tsde is not None,
            "torchsde_version": _version("torchsde")}


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m samplers.bench.noisecost`: the table for the chosen batches at the 20-step Karras grid."""
    p = argparse.ArgumentParser(prog="python -m samplers.bench.noisecost",
                                description="Cost per step of the seeded Brownian noise against torchsde's "
                                            "BrownianTree and torch.randn (CPU: one thread, thread CPU time; "
                                            "CUDA: wall clock).")
    p.add_argument("--batches", type=positive_ints, default="1,4",
                   help="comma-separated batch sizes of the 1x4x128x128 latent")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    clock = "wall clock" if torch.device(args.device).type == "cuda" else "one thread, thread CPU time"
    print(f"noise for a 20-step Karras grid on {args.device} ({clock})\n")
    print("| latent | ours ms/step | torchsde ms/step | ours / torchsde | torch.randn ms/step |\n|---|---|---|---|---|")
    for batch in args.batches:
        r = measure_noise_cost(batch=batch, repeats=args.repeats, device=args.device)
        ms, ratio = r["ms_per_step"], r["ratio_to_torchsde"]
        print(f"| {'x'.join(map(str, r['shape']))} | {ms['seeded_brownian']:.2f} | "
              f"{ms.get('torchsde_brownian_tree', float('nan')):.2f} | "
              f"{'—' if ratio is None else f'{ratio:.2f}'} | {ms['randn']:.2f} |")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
