"""Host synchronisations per sampling run on CUDA: ours against ComfyUI's own samplers, counted by torch.

    COMFYUI_PATH=/path/to/ComfyUI python -m samplers.bench.syncs [--out docs/syncs]

Every synchronising CUDA call (a device value read on the host, a blocking copy, a synchronize) is counted with
torch.cuda.set_sync_debug_mode("warn"), which warns once per call. Each sampler runs the trivial model of the
overhead section on a 1x4x128x128 float32 latent on the Karras grids of 10 and 20 steps (14.6 -> 0.029, then 0),
once to warm up (plans cached) and once counted; syncs per step = (count at 20 - count at 10) / 10 and the rest
is a fixed cost per run (ours: reading the grid, uploading the sigmas and noise keys, the final NaN check). The
adaptive samplers ignore the grid's inner points and read one error norm per attempted step, so their count is
per run, not per grid step. With COMFYUI_PATH set, ComfyUI's k-diffusion samplers of the comparison (at their
defaults: the SDE ones at eta 1 with their torchsde Brownian tree) run alike, and so do the `_gpu` variants of
those that have one (the same update with the tree on the GPU).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..registry import SAMPLERS
from .comfy_builtin import BUILTIN, ComfyModel, comfyui_path, load_comfy
from .measure import is_adaptive
from .overhead import SHAPE, timing_grid, trivial_model
from .report import document, publish

STEPS = (10, 20)
SYNC_WARNING = "called a synchronizing CUDA operation"
NOT_K_DIFFUSION_STYLE = ("dpm_fast", "dpm_adaptive")
"""ComfyUI functions that take (sigma_min, sigma_max, n) instead of a grid: not run here."""


def count_syncs(run: Callable[[], Any]) -> int:
    """The synchronising CUDA calls made by run(): one "called a synchronizing CUDA operation" warning each in
    torch's warn mode (its one-off "debug mode is a prototype feature" warning is not counted)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(SYNC_WARNING in str(w.message) for w in caught)


def per_step(counts: Mapping[int, int]) -> dict[str, float]:
    """{per_step, per_run_fixed} from the counts at STEPS: a line through (10, c10) and (20, c20)."""
    lo, hi = STEPS
    slope = (counts[hi] - counts[lo]) / (hi - lo)
    return {"per_step": slope, "per_run_fixed": counts[lo] - slope * lo}


def _comfy_runs(x: torch.Tensor) -> dict[str, Callable[[torch.Tensor], Any]]:
    """{label: run(sigmas)} for ComfyUI's k-diffusion-style samplers at their defaults; empty without ComfyUI."""
    path = comfyui_path()
    if path is None:
        return {}
    comfy = load_comfy(path)
    import comfy.k_diffusion.sampling as sampling  # importable once load_comfy has put the checkout on sys.path

    ms = comfy.model_sampling
    wrapped = ComfyModel(trivial_model, type("ModelSamplingEPS", (ms.ModelSamplingDiscrete, ms.EPS), {})())
    runs: dict[str, Callable[[torch.Tensor], Any]] = {}
    for sampler in BUILTIN:
        if sampler.name in NOT_K_DIFFUSION_STYLE:
            continue
        for name in (sampler.name, f"{sampler.name}_gpu"):
            fn = getattr(sampling, f"sample_{name}", None)
            if fn is None or name in runs:  # uni_pc lives outside k_diffusion.sampling, few have a _gpu variant,
                continue  # and the comparison's eta-0 settings of one function all run at its defaults here
            runs[name] = lambda s, f=fn: f(wrapped, x, s, extra_args={"seed": 0}, disable=True)
    return runs


def measure_syncs(device: str = "cuda") -> dict[str, Any]:
    """{"ours": {name: counts}, "comfyui": {name: counts}}, counts = {"10": n, "20": n, per_step, per_run_fixed}."""
    if not torch.device(device).type == "cuda" or not torch.cuda.is_available():
        raise RuntimeError(f"syncs: device {device!r} must be an available CUDA device (the counter is CUDA's)")
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    grid_of = {n: timing_grid(n).to(torch.float32).to(device) for n in STEPS}
    ours = {name: (lambda s, e=entry: e(trivial_model, x, s, disable=True)) for name, entry in SAMPLERS.items()}
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                              "shape": list(SHAPE), "steps": list(STEPS), "ours": {}, "comfyui": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde warns that float32 sigmas round past its float64 interval
        for side, runs in (("ours", ours), ("comfyui", _comfy_runs(x))):
            for name, run in runs.items():
                counts = {}
                for n, sigmas in grid_of.items():
                    run(sigmas)  # warm-up: plans and kernels cached
                    counts[n] = count_syncs(lambda r=run, s=sigmas: r(s))
                adaptive = side == "ours" and is_adaptive(SAMPLERS[name])
                result[side][name] = {str(n): c for n, c in counts.items()} | per_step(counts) | {"adaptive": adaptive}
    return result


def syncs_table(result: Mapping[str, Any]) -> str:
    """Markdown: syncs per run at each grid, per step and fixed per run, ours then ComfyUI's."""
    lo, hi = (str(n) for n in result["steps"])
    lines = [f"| side | sampler | syncs, {lo} steps | syncs, {hi} steps | per step | fixed per run |",
             "|---|---|---:|---:|---:|---:|"]
    for side, label in (("ours", "ours"), ("comfyui", "ComfyUI")):
        for name, r in result[side].items():
            step = "— (one per attempt)" if r.get("adaptive") else f"{r['per_step']:g}"
            lines.append(f"| {label} | `{name}` | {r[lo]} | {r[hi]} | {step} | {r['per_run_fixed']:g} |")
    return "\n".join(lines)


def syncs_document(result: Mapping[str, Any]) -> str:
    """The markdown document of a measure_syncs result: title, device line, table."""
    header = (f"{result['device']}, torch {result['torch']}, latent {'x'.join(map(str, result['shape']))} "
              f"float32, trivial model, Karras grids of {result['steps'][0]} and {result['steps'][1]} steps")
    return document("Host synchronisations per run on CUDA", header, syncs_table(result))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m samplers.bench.syncs`: the table, and with --out the JSON and markdown beside it."""
    p = argparse.ArgumentParser(prog="python -m samplers.bench.syncs", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    try:
        result = measure_syncs(args.device)
    except RuntimeError as e:
        p.error(str(e))
    publish(args.out, syncs_document(result), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
