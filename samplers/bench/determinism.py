"""Same seed, same image across devices and batch sizes, on the embedded demo networks (real convolutions).

    python -m samplers.bench.determinism --device cuda [--tf32] [--out docs/determinism_cuda]

Every sampler runs 10 steps (the demo's grids: Karras for the eps network, "simple" shift 3 for the flow
network) on a batch of BATCH initial noises, the stochastic ones seeded. Reported per sampler and network, in
units of the images' range (pixels in [-1, 1]):
* max |CPU - device|: the same batch on the CPU and on the device (float32 networks);
* repeat: whether a second run on the device gives the same bits;
* max |batch - alone|: image b of the batch against image b run alone with seed + b (the per-image seed rule),
  on the device. Our samplers are elementwise per image, so any difference here comes from the network's
  kernels (a convolution may pick another algorithm for another batch size); adaptive samplers choose one step
  size for the whole batch, so theirs is a different trajectory, not rounding.
`--tf32` lets cuDNN and cuBLAS use TF32 (PyTorch's default for convolutions); without it they run in float32.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch

from ..registry import SAMPLERS
from .arguments import names_in
from .report import document, publish

BATCH = 8
STEPS = 10
SEED = 3
MODELS = ("digits_eps", "digits_flow")


def _run(entry: Any, model: Any, x: torch.Tensor, sigmas: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """The entry on x moved to the grid's device."""
    return entry(model, x.to(sigmas.device), sigmas, disable=True, **options)


def compare(device: str, names: Sequence[str], models: Sequence[str] = MODELS) -> list[dict[str, Any]]:
    """One row per (network, sampler): max |CPU - device|, repeat bit-equal, max |batch - alone| on the device."""
    from dpmsolver_demo.sampling import initial_noise, make_grid, sampler_options
    from dpmsolver_demo.weights_io import load_model

    on = torch.device(device)
    rows = []
    for model_name in models:
        cpu, there = load_model(model_name), load_model(model_name, device=on)
        x = initial_noise(cpu, BATCH, seed=0)
        sigmas = make_grid(cpu, STEPS)
        sigmas_there = sigmas.to(on)
        for name in names:
            entry = SAMPLERS[name]
            options = sampler_options(entry, cpu.schedule, SEED)
            reference = _run(entry, cpu, x, sigmas, options)
            out = _run(entry, there, x, sigmas_there, options)
            again = _run(entry, there, x, sigmas_there, options)
            alone = torch.cat([_run(entry, there, x[b:b + 1], sigmas_there,
                                    options | ({"seed": SEED + b} if "seed" in options else {}))
                               for b in range(BATCH)])
            rows.append({"model": model_name, "sampler": name,
                         "cpu_vs_device": float((reference - out.cpu()).abs().max()),
                         "repeat_equal": bool(torch.equal(out, again)),
                         "batch_vs_alone": float((out - alone).abs().max())})
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = ["| network | sampler | max abs CPU - device | repeat bit-equal | max abs batch - alone |",
             "|---|---|---:|---|---:|"]
    lines += [f"| {r['model']} | `{r['sampler']}` | {r['cpu_vs_device']:.1e} | {'yes' if r['repeat_equal'] else 'NO'}"
              f" | {r['batch_vs_alone']:.1e} |" for r in rows]
    return "\n".join(lines)


def determinism_document(data: dict[str, Any]) -> str:
    """The markdown document of a run: title, setup line, the rows' table."""
    header = (f"{data['device']}, torch {data['torch']}, TF32 {'on' if data['tf32'] else 'off'}; batch "
              f"{data['batch']}, {data['steps']} steps, seed {data['seed']}")
    return document(f"Same seed, same image: CPU against {data['device']}", header, markdown(data["rows"]))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m samplers.bench.determinism`: the table, and with --out its JSON and markdown."""
    p = argparse.ArgumentParser(prog="python -m samplers.bench.determinism", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in cuDNN and cuBLAS (PyTorch's conv default)")
    p.add_argument("--samplers", type=names_in(SAMPLERS), default=",".join(SAMPLERS),
                   help="comma-separated registry names")
    p.add_argument("--out", help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    try:
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as e:
        p.error(f"--device {args.device!r} is not available here ({e})")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    rows = compare(args.device, args.samplers)
    name = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else args.device
    data = {"device": name, "torch": torch.__version__, "tf32": args.tf32, "batch": BATCH, "steps": STEPS,
            "seed": SEED, "rows": rows}
    publish(args.out, determinism_document(data), data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
