"""`python -m dpmsolver_demo sds`: score-distillation refinement of given images on the two demo networks.

Refines 8 fixed inputs (two digits under heavy noise, two blurred digits, two blends of two digits, two rough
hand-drawn digits) with `samplers.sds.sds_refine` on each network (see dpmsolver_demo.sds), and writes
sds_before_after.png (before / after), sds_results.md (the table) and sds_results.json to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any, NoReturn

import torch

from .cli import DemoError, _check_matplotlib, _csv, prepare_out
from .sds import SIGMA_END, SIGMA_START, Variant, demo_inputs, greyness, load_training_digits, run_model
from .weights_io import MODEL_NAMES, WeightsError, load_model

PROG = "python -m dpmsolver_demo sds"
TITLES = {"digits_eps": "digits_eps: SD-style eps model (discrete schedule)",
          "digits_flow": "digits_flow: rectified-flow v model"}
MEASURES = {"distance": "RMS per pixel to the nearest training digit", "denoising": "the network's denoising error",
            "greyness": "mean(1 - |x|)", "change": "RMS change from the input",
            "seed_change": "RMS change of the result when the SDS seed is seed + 1"}
DEFAULT_STEPS = 100
MAX_STEPS = 5000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        self.exit(2, f"{PROG}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"optimisation steps per refinement, one sigma each (default {DEFAULT_STEPS})")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs' noise and of the SDS noise (default 0)")
    p.add_argument("--models", type=_csv, default=list(MODEL_NAMES), help=f"subset of {','.join(MODEL_NAMES)}")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the tensors are tiny)")
    p.add_argument("--no-plots", action="store_true", help="write the table and JSON only (no matplotlib needed)")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Validate everything before any work; DemoError with one line otherwise."""
    bad_models = [m for m in args.models if m not in MODEL_NAMES]
    if bad_models or not args.models:
        raise DemoError(f"--models: unknown {', '.join(bad_models) or '(none given)'}; choose from "
                        f"{', '.join(MODEL_NAMES)}")
    if not 2 <= args.steps <= MAX_STEPS:
        raise DemoError(f"--steps: {args.steps} is impossible; use 2 to {MAX_STEPS}")
    if args.threads < 1:
        raise DemoError(f"--threads: {args.threads} is impossible; use 1 or more")


def run(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Every variant on every chosen model; returns the inputs, captions and per-model panels."""
    digits = load_training_digits()
    x0, captions = demo_inputs(digits, args.seed)
    panels = []
    for name in args.models:
        t0 = time.perf_counter()
        dm = load_model(name)
        res = run_model(dm, dm.schedule, x0, digits, args.steps, args.seed)
        panels.append({"model": name, "title": TITLES[name], "sha256": dm.sha256, "x0": x0, **res})
        log(f"{name}: {time.perf_counter() - t0:.1f} s")
    return {"captions": captions, "panels": panels, "digits_greyness": float(greyness(digits).mean())}


def _mean(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).mean())


def table(data: dict[str, Any]) -> str:
    """Markdown: per model, the inputs' measures and each variant's (means over the 8 images), model calls, time."""
    lines = ["| model | recipe | σ (VE terms) | model calls | CPU s | nearest-digit RMS | closer | denoising error "
             "| greyness | change from input | change with seed |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in data["panels"]:
        before = p["before"]
        lines.append(f"| {p['model']} | before (inputs) | — | — | — | {_mean(before['distance']):.3f} | — | "
                     f"{_mean(before['denoising']):.4f} | {_mean(before['greyness']):.3f} | — | — |")
        for v in p["variants"]:
            variant = Variant(**{f.name: v[f.name] for f in fields(Variant)})
            closer = sum(a < b for a, b in zip(v["distance"], before["distance"], strict=True))
            lines.append(f"| {p['model']} | {variant.label} | {variant.sigmas_text()} | {v['model_calls']} | "
                         f"{v['cpu_seconds']:.2f} | {_mean(v['distance']):.3f} | {closer}/{len(v['distance'])} | "
                         f"{_mean(v['denoising']):.4f} | {_mean(v['greyness']):.3f} | {_mean(v['change']):.3f} | "
                         f"{_mean(v['seed_change']):.3f} |")
    return "\n".join(lines)


def notes(data: dict[str, Any]) -> str:
    """What the table's numbers are, under the table."""
    return (f"Means over the 8 inputs (seed {data['seed']}), {data['steps']} steps each, DreamFusion weighting, "
            f"{data['threads']} CPU thread(s); model calls and CPU seconds per run of 8 images (SDI's include its "
            "inversions, 4 calls per step). Nearest-digit RMS: per-pixel RMS distance to the nearest of the 1797 "
            "training digits (pixels in [-1, 1], data std 0.54); closer: images nearer to a digit than before. "
            "Denoising error: the network's own loss mean |D(alpha x + sigma eps, sigma) - x|^2 over 8 sigmas of "
            f"{SIGMA_START:g} → {SIGMA_END:g} and 4 fixed noises (what SDS descends). Greyness: mean(1 - |x|), the "
            f"training digits' is {data['digits_greyness']:.3f}; over-smoothing raises it. Change with seed: RMS "
            "change of the result when only the SDS seed changes.")


def results_text(data: dict[str, Any]) -> str:
    """The table and its notes, as the command prints them."""
    return table(data) + "\n\n" + notes(data) + "\n"


def results_document(data: dict[str, Any]) -> str:
    """sds_results.md, rendered from the JSON the command writes beside it."""
    return f"Regenerate: `{data['command']}`\n\n{results_text(data)}"


def results_json(res: dict[str, Any], args: argparse.Namespace, seconds: float, cpu: float, argv: Sequence[str]
                 ) -> dict[str, Any]:
    """Everything the document shows, with the per-image measures behind its means."""
    panels = []
    for p in res["panels"]:
        variants = [{**asdict(o.variant), "sigma_end": SIGMA_END, "model_calls": o.model_calls,
                     "cpu_seconds": o.seconds, **{k: v.tolist() for k, v in o.measures.items()}} for o in p["outcomes"]]
        panels.append({"model": p["model"], "sha256": p["sha256"],
                       "before": {k: v.tolist() for k, v in p["before"].items()}, "variants": variants})
    return {"command": " ".join([PROG, *argv]), "captions": res["captions"], "steps": args.steps, "seed": args.seed,
            "weighting": "dreamfusion", "measures": MEASURES, "digits_greyness": res["digits_greyness"],
            "dtype": "float32", "torch": torch.__version__, "threads": args.threads,
            "runtime_s": seconds, "runtime_cpu_s": cpu, "panels": panels}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    args = parser().parse_args(argv)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        check_args(args)
        if not args.no_plots:
            _check_matplotlib()
        out = prepare_out(args.out)
        torch.set_num_threads(args.threads)
        res = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (DemoError, WeightsError, ImportError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    written = []
    if not args.no_plots:
        from .sds_figure import write_before_after

        picture = out / "sds_before_after.png"
        write_before_after(str(picture), res["panels"], res["captions"])
        written.append(picture)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    data = results_json(res, args, seconds, cpu, argv)
    print(results_text(data))
    md, js = out / "sds_results.md", out / "sds_results.json"
    md.write_text(results_document(data), encoding="utf-8")
    js.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    written += [md, js]
    print(f"wrote {', '.join(str(w) for w in written)} in {seconds:.1f} s ({cpu:.1f} s CPU)")
    return 0
