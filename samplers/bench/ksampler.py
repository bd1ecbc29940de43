"""A whole sampling run inside a real ComfyUI, on its own device, with a full-size SD1.5 UNet: ours against
ComfyUI's own twins.

    COMFYUI_PATH=/path/to/ComfyUI python -m samplers.bench.ksampler [--size 512] [--steps 20] [--out OUT]

ComfyUI is imported in-process with its own device choice (the GPU where there is one) and loads, with its own
loader and dtype choice, a UNet of SD1.5's full shape (860M parameters) filled with random weights: the cost of a
model call is a real one, the images are not. Each sampler runs as the SamplerCustom node runs it
(`comfy.sample.sample_custom`: CFG 7 on made-up CLIP-shaped conditioning, ComfyUI's Karras grid, batch 1, the same
noise and seed), once to warm up and then in `repeats` rounds that run every sampler once (round robin), each run
timed to its end (synchronised); the medians are reported. Ours enter as `comfy.samplers.KSAMPLER(entry)`, ComfyUI's
as `comfy.samplers.sampler_object(name)`; the SDE ones at their defaults (eta 1; ComfyUI's with its torchsde
Brownian tree, on the CPU and, on a GPU, also its `_gpu` variants with the tree on the GPU). ComfyUI's euler, whose
loop adds nothing to the model calls, gives the time of a step; a sampler's own cost per step = (its run - euler's
run) / steps.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dpmsolver_tools.make_test_checkpoint import UNET_CONFIG, random_unet_state

from ..registry import SAMPLERS
from .comfy_builtin import comfyui_path, load_comfy
from .comfytwin import twin_pairs
from .report import document, publish

SD15_UNET = {**UNET_CONFIG, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]}
"""SD1.5's UNet as ComfyUI's UNetModel takes it: the test checkpoint's width (UNET_CONFIG) at SD1.5's full depth."""
CFG = 7.0
SEED = 0


def sd15_model() -> Any:
    """A ModelPatcher of a random-weight SD1.5-shaped UNet, loaded by ComfyUI (it detects SD1.5 from the keys)."""
    import comfy.sd

    return comfy.sd.load_diffusion_model_state_dict(random_unet_state(SD15_UNET, SEED, torch.float16))


def _round_robin(jobs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per run of every job, each run ended by a device synchronize: one warm-up run each, then
    `repeats` rounds that run every job once, so that a slow spell of the machine hits all of them alike."""
    def once(run: Callable[[], Any]) -> float:
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for run in jobs.values():
        once(run)
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, run in jobs.items():
            samples[name].append(once(run))
    return samples


def measure_ksampler(path: str, size: int = 512, steps: int = 20, repeats: int = 10,
                     cpu: bool = False) -> dict[str, Any]:
    """Median seconds per run of ComfyUI's euler, each twin pair, and the per-step costs derived from them."""
    load_comfy(path, cpu=cpu)
    import comfy.model_management
    import comfy.sample
    import comfy.samplers

    model = sd15_model()
    latent = torch.zeros(1, 4, size // 8, size // 8)
    noise = comfy.sample.prepare_noise(latent, SEED)
    text = torch.Generator().manual_seed(SEED)
    positive = [[torch.randn(1, 77, 768, generator=text), {}]]
    negative = [[torch.randn(1, 77, 768, generator=text), {}]]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", steps)

    def run(sampler: Any) -> Callable[[], Any]:
        return lambda: comfy.sample.sample_custom(model, noise, CFG, sampler, sigmas, positive, negative, latent,
                                                  disable_pbar=True, seed=SEED)

    device = comfy.model_management.get_torch_device()
    twins = [(ours, function.removeprefix("sample_")) for ours, function in twin_pairs(device)]  # ComfyUI's names
    jobs = {"comfyui/euler": run(comfy.samplers.sampler_object("euler"))}
    for ours, theirs in twins:
        jobs.setdefault(f"ours/{ours}", run(comfy.samplers.KSAMPLER(SAMPLERS[ours])))
        jobs[f"comfyui/{theirs}"] = run(comfy.samplers.sampler_object(theirs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde warns that float32 sigmas round past its float64 interval
        samples = _round_robin(jobs, repeats)
    seconds = {name: statistics.median(runs) for name, runs in samples.items()}
    step = seconds["comfyui/euler"] / steps

    def own(name: str) -> float:
        return (seconds[name] - seconds["comfyui/euler"]) / steps

    pairs = [{"ours": ours, "theirs": theirs,
              "ours_s": seconds[f"ours/{ours}"], "theirs_s": seconds[f"comfyui/{theirs}"],
              "ours_own_ms_per_step": own(f"ours/{ours}") * 1e3,
              "theirs_own_ms_per_step": own(f"comfyui/{theirs}") * 1e3}
             for ours, theirs in twins]
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
            "torch": torch.__version__, "dtype": str(model.model.get_dtype()).removeprefix("torch."),
            "size": size, "steps": steps, "cfg": CFG, "repeats": repeats, "seconds": seconds, "samples": samples,
            "euler_ms_per_step": step * 1e3, "pairs": pairs}


def ksampler_table(result: dict[str, Any]) -> str:
    """Markdown: per pair, seconds per run and each side's own cost per step (ms and share of euler's step)."""
    step = result["euler_ms_per_step"]
    lines = ["| ours | ComfyUI's | s per run, ours | s per run, ComfyUI | own ms/step, ours | own ms/step, ComfyUI |",
             "|---|---|---:|---:|---:|---:|"]
    for r in result["pairs"]:
        lines.append(f"| `{r['ours']}` | `{r['theirs']}` | {r['ours_s']:.3f} | {r['theirs_s']:.3f} | "
                     f"{r['ours_own_ms_per_step']:.2f} ({r['ours_own_ms_per_step'] / step:.0%}) | "
                     f"{r['theirs_own_ms_per_step']:.2f} ({r['theirs_own_ms_per_step'] / step:.0%}) |")
    return "\n".join(lines)


def ksampler_document(result: dict[str, Any]) -> str:
    """The markdown document of a measure_ksampler result: title, setup line, table."""
    header = (f"{result['device']}, torch {result['torch']}, random-weight SD1.5 UNet in {result['dtype']}, "
              f"{result['size']}x{result['size']}, batch 1, CFG {result['cfg']:g}, Karras {result['steps']} steps, "
              f"median of {result['repeats']} runs; ComfyUI's euler: {result['euler_ms_per_step']:.2f} ms per step "
              "(two model calls under CFG, batched)")
    return document("A sampling run inside ComfyUI", header, ksampler_table(result))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m samplers.bench.ksampler`: the table, and with --out its JSON and markdown."""
    p = argparse.ArgumentParser(prog="python -m samplers.bench.ksampler", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512, help="image side in pixels (latent side / 8)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--cpu", action="store_true", help="ComfyUI in CPU mode (a check of the command, not a timing)")
    p.add_argument("--out", help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    path = comfyui_path()
    if path is None:
        p.error("set COMFYUI_PATH to a ComfyUI checkout: this benchmark runs inside ComfyUI")
    if args.size < 64 or args.size % 8 or args.steps < 2 or args.repeats < 1:
        p.error("--size needs a multiple of 8 from 64, --steps at least 2 and --repeats at least 1")
    result = measure_ksampler(path, args.size, args.steps, args.repeats, cpu=args.cpu)
    publish(args.out, ksampler_document(result), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
