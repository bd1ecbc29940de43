"""`python -m dpmsolver_demo`: what the DPM-Solver samplers do, on two small embedded networks, in one command.

Samples the same initial noises with each chosen sampler at a few model-call budgets (each sampler runs the
largest grid whose model-call count fits), beside a converged reference from the same noise (the exact ODE
solution of the same grid: DPM-Solver++ 3S with steps of 0.04 in half-log-SNR, then the same final denoise), on
two networks trained on scikit-learn's digits:

* digits_eps: noise prediction under Stable Diffusion's discrete schedule, used through the SD1.x-style
  discrete-timestep wrapper (sigma range 0.0292 to 14.6, Karras grid);
* digits_flow: rectified flow with velocity prediction (SD3/Flux style; ComfyUI's "simple" grid with shift 3).

Writes grid.png (samples), error_vs_nfe.png and results.json to --out and prints the MSE table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from samplers import SAMPLERS

from .sampling import (
    REFERENCE_H,
    REFERENCE_OPTIONS,
    REFERENCE_SAMPLER,
    ConvergedReference,
    grid_name,
    initial_noise,
    make_grid,
    mse,
    run_at_budget,
)
from .weights_io import MODEL_NAMES, WeightsError, load_model

PROG = "python -m dpmsolver_demo"
DEFAULT_SAMPLERS = ("dpm_solver_1", "dpm_solver_3", "dpm_solver_fast", "dpm_solver_pp_2s", "dpm_solver_pp_2m",
                    "dpm_solver_pp_3m")
DEFAULT_NFE = (5, 10, 20)
MAX_NFE = 1000
TITLES = {"digits_eps": "SD-style eps model (discrete 1000-step schedule), Karras grid",
          "digits_flow": "rectified-flow v model (SD3/Flux style), 'simple' grid, shift 3"}


class DemoError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        self.exit(2, f"{PROG}: error: {message}\n")


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                epilog="Sampler names: " + ", ".join(SAMPLERS) + f". Score distillation: {PROG} sds --help.")
    p.add_argument("--samplers", type=_csv, default=list(DEFAULT_SAMPLERS),
                   help=f"comma-separated names from samplers.SAMPLERS (default: {','.join(DEFAULT_SAMPLERS)})")
    p.add_argument("--nfe", "--steps", dest="nfe", default=",".join(map(str, DEFAULT_NFE)),
                   help="comma-separated model-call budgets per sample (default 5,10,20); each sampler runs the "
                   "largest grid that fits and the actual NFE is shown")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--prefix", default="",
                   help="prefix of the file names (demo_: demo_grid.png, demo_error_vs_nfe.png, demo_results.json)")
    p.add_argument("--images", type=int, default=8, help="samples per model (default 8)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial noise and of stochastic samplers' noise (default 0)")
    p.add_argument("--reference-h", type=float, default=REFERENCE_H,
                   help=f"step in half-log-SNR of the converged reference, DPM-Solver++ 3S (default {REFERENCE_H}); "
                   "it is checked against a solve with twice the step")
    p.add_argument("--models", type=_csv, default=list(MODEL_NAMES), help=f"subset of {','.join(MODEL_NAMES)}")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the tensors are tiny)")
    p.add_argument("--no-plots", action="store_true", help="print the table only (no matplotlib needed)")
    return p


def check_args(args: argparse.Namespace) -> list[int]:
    """Validate everything before any work; returns the NFE budgets. Raises DemoError with one line."""
    unknown = [n for n in args.samplers if n not in SAMPLERS]
    if unknown or not args.samplers:
        what = f"unknown sampler {', '.join(repr(n) for n in unknown)}" if unknown else "no sampler given"
        raise DemoError(f"--samplers: {what}; valid names: {', '.join(SAMPLERS)}")
    bad_models = [m for m in args.models if m not in MODEL_NAMES]
    if bad_models or not args.models:
        raise DemoError(f"--models: unknown {', '.join(bad_models) or '(none given)'}; choose from "
                        f"{', '.join(MODEL_NAMES)}")
    try:
        budgets = sorted({int(v) for v in _csv(args.nfe)})
    except ValueError:
        raise DemoError(f"--nfe: expected comma-separated whole numbers of model calls, got {args.nfe!r}") from None
    if not budgets:
        raise DemoError("--nfe: give at least one number of model calls")
    if budgets[0] < 1 or budgets[-1] > MAX_NFE:
        bad = budgets[0] if budgets[0] < 1 else budgets[-1]
        raise DemoError(f"--nfe: {bad} model calls is impossible here: every sampler needs at least 1 and the "
                        f"demo allows at most {MAX_NFE}")
    if not 0.001 <= args.reference_h <= 0.25:
        raise DemoError(f"--reference-h: a step of {args.reference_h} in half-log-SNR is impossible for a converged "
                        "reference; use 0.001 to 0.25")
    if not 1 <= args.images <= 64:
        raise DemoError(f"--images: {args.images} is impossible; use 1 to 64")
    if not all(c.isalnum() or c in "_-." for c in args.prefix):
        raise DemoError(f"--prefix: {args.prefix!r} may hold only letters, digits, '_', '-' and '.'")
    if args.threads < 1:
        raise DemoError(f"--threads: {args.threads} is impossible; use 1 or more")
    return budgets


def prepare_out(path: str) -> Path:
    """Create the output folder and prove it is writable (a probe file); DemoError with one line otherwise."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".dpmsolver_demo_probe_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DemoError(f"--out: cannot write to the output folder {out}: {reason}") from None
    return out


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DemoError("the PNG outputs need matplotlib (pip install matplotlib), or pass --no-plots") from None


def run(args: argparse.Namespace, budgets: Sequence[int], log: Any = print) -> dict[str, Any]:
    """Sample every (model, sampler, budget); returns the results (tensors under 'out' keys)."""
    panels = []
    for name in args.models:
        t0 = time.perf_counter()
        dm = load_model(name)
        x = initial_noise(dm, args.images, args.seed)
        runs: dict[str, dict[int, Any]] = {}
        for sampler in args.samplers:
            runs[sampler] = {b: run_at_budget(SAMPLERS[sampler], dm, x, b, seed=args.seed) for b in budgets}
        ref, check = ConvergedReference(dm, x, args.reference_h), ConvergedReference(dm, x, 2 * args.reference_h)
        grids = [make_grid(dm, n) for n in budgets] + [r.sigmas for rs in runs.values() for r in rs.values()
                                                         if r is not None]
        lasts = sorted(grids, key=lambda sigmas: -float(sigmas[-2]))  # chain the reference downwards
        for sigmas in lasts:
            ref.target(sigmas)
        check_mse = max(mse(ref.target(sigmas), check.target(sigmas)) for sigmas in lasts)
        cells: dict[str, dict[int, dict[str, Any] | None]] = {}
        for sampler, rs in runs.items():
            cells[sampler] = {}
            for b, r in rs.items():
                if r is None:
                    cells[sampler][b] = None
                    continue
                target = ref.target(r.sigmas)
                cells[sampler][b] = {"nfe": r.nfe, "n_steps": r.n_steps, "rtol": r.rtol, "mse": mse(r.out, target),
                                     "out": r.out}
        shown = ref.target(make_grid(dm, max(budgets)))
        panels.append({"model": name, "title": TITLES[name], "schedule": dm.schedule, "grid": grid_name(dm.schedule),
                       "sigma_min": dm.sigma_min, "sigma_max": dm.sigma_max, "reference": shown,
                       "reference_nfe": ref.model_calls, "reference_check_mse": check_mse, "runs": cells,
                       "seconds": time.perf_counter() - t0, "sha256": dm.sha256})
        log(f"{name}: {time.perf_counter() - t0:.1f} s; reference {ref.model_calls} model calls, its error "
            f"estimate (MSE against a solve with twice the step) {check_mse:.1e}")
    return {"panels": panels, "budgets": list(budgets)}


def table(res: dict[str, Any], labels: dict[str, str]) -> str:
    """Markdown: MSE vs reference per sampler (rows) and model x budget (columns), actual NFE when lower."""
    budgets = res["budgets"]
    head = ["sampler", *[f"{p['model']} @{b}" for p in res["panels"] for b in budgets]]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for name, label in labels.items():
        cells = []
        for p in res["panels"]:
            for b in budgets:
                run = p["runs"][name][b]
                if run is None:
                    cells.append("—")
                    continue
                text = f"{run['mse']:.2e}" if math.isfinite(run["mse"]) else "fail"
                cells.append(text if run["nfe"] == b else f"{text} ({run['nfe']})")
        stoch = " (stochastic)" if getattr(SAMPLERS[name], "stochastic", False) else ""
        lines.append(f"| {label}{stoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json(res: dict[str, Any], args: argparse.Namespace, labels: dict[str, str], seconds: float,
          argv: Sequence[str]) -> dict[str, Any]:
    panels = []
    for p in res["panels"]:
        runs = {n: {str(b): None if r is None else {k: v for k, v in r.items() if k != "out"} for b, r in rs.items()}
                for n, rs in p["runs"].items()}
        panels.append({k: v for k, v in p.items() if k not in ("reference", "runs")} | {"runs": runs})
    return {"command": " ".join([PROG, *argv]),
            "samplers": labels, "budgets": res["budgets"], "images": args.images, "seed": args.seed,
            "reference": {"sampler": REFERENCE_SAMPLER, "options": REFERENCE_OPTIONS, "h": args.reference_h},
            "dtype": "float32", "torch": torch.__version__, "threads": args.threads, "runtime_s": seconds,
            "panels": panels}


def main(argv: Sequence[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else list(argv))[:1] == ["sds"]:
        from .sds_cli import main as sds_main

        return sds_main(None if argv is None else list(argv)[1:])
    args = parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        budgets = check_args(args)
        if not args.no_plots:
            _check_matplotlib()
        out = prepare_out(args.out)
        torch.set_num_threads(args.threads)
        labels = {n: SAMPLERS[n].label for n in args.samplers}
        res = run(args, budgets, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (DemoError, WeightsError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"MSE against the exact ODE solution of the same grid from the same noise, over {args.images} samples of "
          "8x8 pixels in [-1, 1]; the actual NFE in parentheses when below the budget:")
    print()
    print(table(res, labels))
    print()
    if any(getattr(SAMPLERS[n], "stochastic", False) for n in args.samplers):
        print(f"Stochastic samplers add fresh noise (seed {args.seed}): they sample the SDE, not the ODE, so their MSE "
              "against the ODE solution does not go to 0 with more calls.")
        print()
    if "digits_flow" in args.models:
        print("digits_flow: ComfyUI's 'simple' grid ends at sigma = shift(1/n), so fewer steps also mean a shorter ODE "
              "before the final denoise (a blurrier image, however exactly solved): its errors need not fall with NFE.")
        print()
    written = []
    if not args.no_plots:
        from .figures import write_error_plot, write_grid

        grid, plot = out / f"{args.prefix}grid.png", out / f"{args.prefix}error_vs_nfe.png"
        write_grid(str(grid), res["panels"], labels, budgets, cols=min(4, args.images))
        write_error_plot(str(plot), res["panels"], labels)
        written += [grid, plot]
    seconds = time.perf_counter() - t0
    results = out / f"{args.prefix}results.json"
    record = _json(res, args, labels, seconds, sys.argv[1:] if argv is None else argv)
    results.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    written.append(results)
    print(f"wrote {', '.join(str(w) for w in written)} in {seconds:.1f} s")
    return 0
