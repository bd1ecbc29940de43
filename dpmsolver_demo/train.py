"""Train the two demo networks: `python -m dpmsolver_demo.train [--steps N] [--threads T] [--out DIR]`.

Both are `TinyUNet`s on scikit-learn's digits (see `dpmsolver_demo.data`):

* digits_eps: noise prediction under Stable Diffusion's discrete schedule (1000 steps, scaled-linear betas
  0.00085 to 0.012): integer timestep k uniform, x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps, loss |eps_hat - eps|^2.
* digits_flow: rectified flow with velocity prediction: sigma = shift(u) with u uniform and shift 3 (the SD3/Flux
  resolution shift), x = (1 - sigma) x0 + sigma eps, target v = eps - x0, timestep input 1000 sigma.

AdamW with a linear warm-up and cosine decay, an exponential moving average of the weights (the EMA is what is
saved). Everything is seeded and runs on the CPU with deterministic algorithms, so the same torch version and
thread count reproduce the files bit for bit (their SHA-256 is written to weights/SHA256SUMS).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import DATASET, load_digits
from .net import NetConfig, TinyUNet
from .weights_io import SUMS_FILE, WEIGHTS_DIR, save_safetensors, sha256_file
from .wrappers import FLOW_SHIFT, FLOW_TIMESTEP_SCALE, SD_BETA_END, SD_BETA_START, SD_TIMESTEPS, sd_alphas_cumprod

MODEL_VERSION = "1"
COMMAND = "python -m dpmsolver_demo.train"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.0
    ema: float = 0.999
    seed: int = 0


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def _eps_batch(x0: torch.Tensor, g: torch.Generator, abar: torch.Tensor) -> tuple[torch.Tensor, ...]:
    k = torch.randint(0, abar.numel(), (x0.shape[0],), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    a = abar[k].to(x0.dtype).reshape(-1, 1, 1, 1)
    x = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
    return x, k.to(x0.dtype), eps


def _flow_batch(x0: torch.Tensor, g: torch.Generator, shift: float) -> tuple[torch.Tensor, ...]:
    u = torch.rand(x0.shape[0], generator=g, dtype=torch.float64)
    sigma = (shift * u / (1.0 + (shift - 1.0) * u)).to(x0.dtype).reshape(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=g)
    x = (1.0 - sigma) * x0 + sigma * eps
    return x, sigma.reshape(-1) * FLOW_TIMESTEP_SCALE, eps - x0


def train_one(kind: str, cfg: TrainConfig, net_cfg: NetConfig, data: torch.Tensor,
              log_every: int = 500) -> tuple[TinyUNet, dict[str, float]]:
    """Train one network ('eps' or 'flow'); returns the EMA network and {final_loss, seconds}."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed + (0 if kind == "eps" else 1))
    net = TinyUNet(net_cfg)
    ema = copy.deepcopy(net)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    abar = sd_alphas_cumprod()
    n = data.shape[0]
    t0 = time.perf_counter()
    running = 0.0
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        idx = torch.randint(0, n, (cfg.batch,), generator=g)
        x0 = data[idx]
        if kind == "eps":
            x, t, target = _eps_batch(x0, g, abar)
        else:
            x, t, target = _flow_batch(x0, g, FLOW_SHIFT)
        loss = (net(x, t) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1.0 + step) / (10.0 + step))
            for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                pe.mul_(decay).add_(p, alpha=1.0 - decay)
        value = loss.item()
        running = 0.98 * running + 0.02 * value if step else value
        if log_every and (step + 1) % log_every == 0:
            print(f"  {kind} step {step + 1}/{cfg.steps}: loss {running:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return ema.eval(), {"final_loss": running, "seconds": time.perf_counter() - t0}


def metadata(kind: str, cfg: TrainConfig, net_cfg: NetConfig, final_loss: float, threads: int) -> dict[str, str]:
    """The metadata stored in the weights file (no timings: the file must be reproducible bit for bit)."""
    if kind == "eps":
        schedule = {"type": "sd_discrete", "timesteps": SD_TIMESTEPS, "beta_schedule": "scaled_linear",
                    "beta_start": SD_BETA_START, "beta_end": SD_BETA_END}
        prediction = "eps (noise); sigma space: t(sigma) by log-sigma interpolation, input x/sqrt(1+sigma^2), " \
                     "D = x - sigma*eps"
    else:
        schedule = {"type": "rectified_flow", "timestep_scale": FLOW_TIMESTEP_SCALE, "train_shift": FLOW_SHIFT,
                    "train_sigma": "shift(u), u ~ U(0,1)"}
        prediction = "v (velocity v = eps - x0); x = (1-sigma)*x0 + sigma*eps; timestep 1000*sigma; D = x - sigma*v"
    return {
        "format": "dpmsolver-demo-weights",
        "name": f"digits_{kind}",
        "model_version": MODEL_VERSION,
        "prediction": prediction,
        "schedule": json.dumps(schedule, sort_keys=True),
        "dataset": DATASET,
        "architecture": "TinyUNet (dpmsolver_demo/net.py)",
        "config": json.dumps(net_cfg.as_dict(), sort_keys=True),
        "training": json.dumps({**cfg.__dict__, "optimizer": "AdamW, linear warm-up, cosine decay",
                                "saved": "EMA weights", "threads": threads,
                                "final_loss": round(final_loss, 6)}, sort_keys=True),
        "training_command": COMMAND,
        "torch_version": torch.__version__.split("+")[0],
    }


def write_sums(out: Path, names: Sequence[str]) -> None:
    """Update SHA256SUMS in `out` for the given weight files (others keep their lines)."""
    path = out / SUMS_FILE
    lines = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2:
                lines[parts[1]] = parts[0]
    for name in names:
        lines[f"{name}.safetensors"] = sha256_file(out / f"{name}.safetensors")
    path.write_text("".join(f"{lines[k]}  {k}\n" for k in sorted(lines)), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=TrainConfig.steps, help="optimizer steps per model")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1; the files are bitwise reproducible for a given thread count)")
    p.add_argument("--models", default="eps,flow", help="which to train: eps, flow or both (default)")
    p.add_argument("--out", default=str(WEIGHTS_DIR), help="output folder (default: the package's weights/)")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    if not kinds or any(k not in ("eps", "flow") for k in kinds):
        p.error("--models takes eps, flow or eps,flow")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg, net_cfg = TrainConfig(steps=args.steps), NetConfig()
    data = load_digits()
    total = time.perf_counter()
    for kind in kinds:
        print(f"training digits_{kind}: {cfg.steps} steps, batch {cfg.batch}, {args.threads} thread(s)", flush=True)
        net, info = train_one(kind, cfg, net_cfg, data)
        path = out / f"digits_{kind}.safetensors"
        save_safetensors(path, net.state_dict(), metadata(kind, cfg, net_cfg, info["final_loss"], args.threads))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {info['seconds']:.0f} s, "
              f"loss {info['final_loss']:.4f}, sha256 {sha256_file(path)})", flush=True)
    write_sums(out, [f"digits_{k}" for k in kinds])
    print(f"total training time {time.perf_counter() - total:.0f} s; checksums in {out / SUMS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
