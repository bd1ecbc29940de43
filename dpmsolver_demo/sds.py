"""Score distillation on the demo networks: refine given 8x8 images toward the digits the networks learned.

The networks are unconditional, so SDS here means: take an image x0 (a digit under heavy noise, a blurred digit,
a blend of two digits, a rough hand-drawn stroke pattern) and run `samplers.sds.sds_refine`, whose step is
x0 <- x0 - lr * lambda(sigma) * (x0 - D(alpha x0 + sigma eps, sigma)), over a schedule of sigmas. Variants compared
on the same inputs and the same number of steps:

* SDS, sigma annealed from SIGMA_START down to SIGMA_END (uniform in half-log-SNR), DreamFusion weighting, SGD
  and Adam;
* SDS over a wide range (WIDE_START down to SIGMA_END), annealed, and the same sigmas in a seeded random order
  (a fixed range, not annealed, as DreamFusion draws them): the random order over-smooths (tests/test_sds.py shows
  the same on a two-mode mixture);
* SDI (eps from a DPM-Solver inversion of x0 instead of fresh noise), annealed like the first: no sampling noise.

Measures per image, before and after: the RMS distance per pixel to the nearest of the 1797 training digits; the
network's own denoising error E |D(alpha x + sigma eps, sigma) - x|^2 over fixed sigmas and noises; greyness
mean(1 - |x|) (over-smoothing raises it); the RMS change from the input; and the RMS change when only the SDS seed
changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from samplers.schedules import resolve_schedule
from samplers.sds import sds_refine

from .data import load_digits
from .sampling import CountingModel

SIGMA_START = 0.7
"""Start of the annealing in VE sigma (the flow model uses the sigma with the same half-log-SNR, 0.41): high
enough to re-draw strokes, low enough to keep which digit the input shows."""
SIGMA_END = 0.05
"""End of the annealing in VE sigma (flow: 0.048): fine detail only."""
WIDE_START = 3.0
"""Top of the wide range in VE sigma (flow: 0.75), where the digits' identity is gone."""
METRIC_SIGMAS = 8
"""Sigmas of the denoising-error measure: SIGMA_START to SIGMA_END, uniform in half-log-SNR."""
METRIC_NOISES = 4
"""Fixed noises per sigma and image in the denoising-error measure (drawn from the run's seed)."""
NOISE_STD = 0.5
"""Standard deviation of the Gaussian noise added to the 'noisy' inputs (the data's std per pixel is 0.54)."""

STROKES = {
    "7": ("########",
          "......##",
          ".....##.",
          "....##..",
          "...##...",
          "..##....",
          ".##.....",
          ".##....."),
    "4": (".#...#..",
          ".#...#..",
          ".#...#..",
          ".#######",
          ".....#..",
          ".....#..",
          ".....#..",
          "........"),
}
"""Rough hand-drawn digits: '#' is ink (+1), '.' background (-1)."""


@dataclass(frozen=True)
class Variant:
    """One refinement recipe: `sds_refine` mode, optimiser, learning rate, the top of the sigma range (VE value;
    the bottom is SIGMA_END), and whether sigma is annealed (else: the same sigmas in a seeded random order)."""

    key: str
    label: str
    mode: str
    optimizer: str
    lr: float
    start: float
    annealed: bool

    def sigmas_text(self) -> str:
        """The sigmas in VE terms (the flow model uses the same half-log-SNRs)."""
        if self.annealed:
            return f"{self.start:g} → {SIGMA_END:g}"
        return f"{SIGMA_END:g} … {self.start:g} shuffled"


VARIANTS = (
    Variant("sds_sgd", "SDS, annealed, SGD", "sds", "sgd", 1.0, SIGMA_START, True),
    Variant("sds_adam", "SDS, annealed, Adam", "sds", "adam", 0.05, SIGMA_START, True),
    Variant("sds_wide", "SDS, wide range, annealed", "sds", "sgd", 1.0, WIDE_START, True),
    Variant("sds_wide_random", "SDS, wide range, random", "sds", "sgd", 1.0, WIDE_START, False),
    Variant("sdi_sgd", "SDI, annealed, SGD", "sdi", "sgd", 1.0, SIGMA_START, True),
)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 binomial blur ([1, 2, 1] / 4 in each direction) with replicated borders, for (1, H, W) images."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype)
    k = (k[:, None] * k[None, :] / 16.0)[None, None]
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x[None], (1, 1, 1, 1), mode="replicate"), k)[0]


def _stroke(rows: Sequence[str]) -> torch.Tensor:
    return torch.tensor([[1.0 if c == "#" else -1.0 for c in row] for row in rows], dtype=torch.float64)[None]


def demo_inputs(digits: torch.Tensor, seed: int) -> tuple[torch.Tensor, list[str]]:
    """The 8 images to refine, (8, 1, 8, 8) float32, and their captions. Digit d is training image d (the
    data set starts 0, 1, ..., 9); the noise of the two noisy inputs is drawn from `seed`."""
    d = digits.to(torch.float64)
    g = torch.Generator().manual_seed(seed)

    def noisy(i: int) -> torch.Tensor:
        return d[i] + NOISE_STD * torch.randn(d[i].shape, generator=g, dtype=torch.float64)

    images = [noisy(3), noisy(5), _blur(d[2]), _blur(d[8]), 0.5 * (d[1] + d[7]), 0.5 * (d[0] + d[6]),
              _stroke(STROKES["7"]), _stroke(STROKES["4"])]
    captions = ["3 + noise", "5 + noise", "2 blurred", "8 blurred", "1|7 blend", "0|6 blend", "drawn 7", "drawn 4"]
    return torch.stack(images).to(torch.float32), captions


def annealed_sigmas(schedule: str, steps: int, start: float = SIGMA_START, end: float = SIGMA_END) -> torch.Tensor:
    """`steps` sigmas from `start` down to `end` (VE values), uniform in half-log-SNR lambda = -log(sigma_VE);
    for flow the sigmas of the same lambdas."""
    sched = resolve_schedule(schedule)
    lams = torch.linspace(-math.log(start), -math.log(end), steps, dtype=torch.float64).tolist()
    return torch.tensor([sched.sigma_at(lam) for lam in lams], dtype=torch.float64)


def shuffled(sigmas: torch.Tensor, seed: int) -> torch.Tensor:
    """The same sigmas in a random order drawn from `seed`: each step's sigma is a draw from the fixed range."""
    return sigmas[torch.randperm(len(sigmas), generator=torch.Generator().manual_seed(seed))]


def greyness(x: torch.Tensor) -> torch.Tensor:
    """Per image: mean(1 - |x|) over the pixels clamped to [-1, 1]; 0 for pure black and white (the digits: 0.21)."""
    return (1.0 - x.to(torch.float64).clamp(-1.0, 1.0).abs()).mean(dim=(1, 2, 3))


def rms_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image: sqrt(mean((a - b)^2)); float64."""
    return (a.to(torch.float64) - b.to(torch.float64)).square().mean(dim=(1, 2, 3)).sqrt()


def nearest_digit_distance(x: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """Per image: min over the training digits of the RMS pixel difference, sqrt(mean((x - d)^2)); float64."""
    a = x.reshape(len(x), -1).to(torch.float64)
    b = digits.reshape(len(digits), -1).to(torch.float64)
    return torch.cdist(a, b).min(dim=1).values / math.sqrt(a.shape[1])


def denoising_error(model: Any, x: torch.Tensor, schedule: str, seed: int) -> torch.Tensor:
    """Per image: mean over METRIC_SIGMAS sigmas (the annealing range, uniform in lambda) and METRIC_NOISES fixed
    noises of mean((D(alpha x + sigma eps, sigma) - x)^2), the network's own training loss in x0 units; float64."""
    sched = resolve_schedule(schedule)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((METRIC_NOISES, *x.shape), generator=g, dtype=torch.float64).to(x.dtype)
    total = torch.zeros(len(x), dtype=torch.float64)
    sigmas = annealed_sigmas(schedule, METRIC_SIGMAS).tolist()
    with torch.inference_mode():
        for sigma in sigmas:
            xt = (sched.alpha(sigma) * x[None] + sigma * eps).reshape(-1, *x.shape[1:])
            d = model(xt, torch.full((len(xt),), sigma, dtype=x.dtype)).reshape(eps.shape)
            total += (d - x[None]).to(torch.float64).square().mean(dim=(0, 2, 3, 4))
    return total / len(sigmas)


@dataclass
class Outcome:
    """One variant on one model: the refined images, the model calls and CPU seconds it took, and the measures."""

    variant: Variant
    out: torch.Tensor
    model_calls: int
    seconds: float
    measures: dict[str, torch.Tensor]


def refine(model: Any, schedule: str, x0: torch.Tensor, variant: Variant, steps: int, seed: int) -> tuple[
        torch.Tensor, int, float]:
    """Run one variant with `steps` optimisation steps: returns (refined images, model calls, CPU seconds of this
    process: on a shared machine they do not count the time other processes take)."""
    sigmas = annealed_sigmas(schedule, steps, variant.start)
    if not variant.annealed:
        sigmas = shuffled(sigmas, seed)
    counter = CountingModel(model)
    t0 = time.process_time()
    out = sds_refine(counter, x0.clone(), sigmas, schedule, mode=variant.mode, weighting="dreamfusion",
                     lr=variant.lr, optimizer=variant.optimizer, seed=seed)
    return out, counter.calls, time.process_time() - t0


def measures(model: Any, schedule: str, x: torch.Tensor, x0: torch.Tensor, digits: torch.Tensor, seed: int
             ) -> dict[str, torch.Tensor]:
    """The per-image measures of `x` (refined from `x0`): distance, denoising, greyness, change."""
    return {"distance": nearest_digit_distance(x, digits), "denoising": denoising_error(model, x, schedule, seed),
            "greyness": greyness(x), "change": rms_change(x, x0)}


def run_model(model: Any, schedule: str, x0: torch.Tensor, digits: torch.Tensor, steps: int, seed: int,
              variants: Sequence[Variant] = VARIANTS) -> dict[str, Any]:
    """Every variant on one model, with the measures of the inputs ('before') and of each result; 'seed_change'
    is the RMS change of the result when only the SDS seed becomes seed + 1 (the inputs stay)."""
    before = measures(model, schedule, x0, x0, digits, seed)
    outcomes = []
    for v in variants:
        out, calls, seconds = refine(model, schedule, x0, v, steps, seed)
        other, _, _ = refine(model, schedule, x0, v, steps, seed + 1)
        m = measures(model, schedule, out, x0, digits, seed) | {"seed_change": rms_change(out, other)}
        outcomes.append(Outcome(v, out, calls, seconds, m))
    return {"before": before, "outcomes": outcomes}


def load_training_digits() -> torch.Tensor:
    """The 1797 training digits, (1797, 1, 8, 8) float32 in [-1, 1] (needs scikit-learn)."""
    return load_digits(torch.float32)
