"""The "logSNR uniform" schedule for the WebUI's scheduler list (A1111 1.9+ and the forks).

n sigmas whose half-log-SNR lambda is uniform between lambda(sigma_max) and lambda(sigma_min), then 0. For VE
models (lambda = -log sigma) this is the log-uniform ("Exponential") grid. For flow models
(lambda = log((1-sigma)/sigma)) sigma_max is usually 1, where lambda = -inf: the grid then starts at
1 - sigma_min, i.e. the lambda range is symmetric, [-lambda(sigma_min), lambda(sigma_min)], uniform in
logit(sigma); txt2img starts from sigma_0 * noise as for any other schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .core import load_submodule
from .flow import Family, model_family

SCHEDULER_NAME = "logsnr_uniform"
SCHEDULER_LABEL = "logSNR uniform"


def logsnr_uniform_sigmas(n: int, sigma_min: float, sigma_max: float, family: Family = "ve") -> torch.Tensor:
    """The grid as a float64 tensor of n + 1 values ending in 0 (n steps)."""
    if n < 1:
        raise ValueError(f"logSNR uniform needs at least one step, got {n}")
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"logSNR uniform needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if family == "flow":
        if sigma_min >= 0.5:
            raise ValueError(f"logSNR uniform on a flow model needs sigma_min < 0.5, got {sigma_min}")
        sigma_max = min(sigma_max, 1.0 - sigma_min)
    grids = load_submodule("grids")
    sigmas = grids.uniform_lambda(n, sigma_min, sigma_max, family, append_zero=True)
    if not all(math.isfinite(v) for v in sigmas.tolist()):
        raise ValueError("logSNR uniform produced a non-finite sigma")
    return sigmas


def logsnr_uniform(n: int, sigma_min: float, sigma_max: float, inner_model: Any = None,
                   device: Any = None) -> torch.Tensor:
    """The WebUI scheduler function (`need_inner_model=True`): float32 sigmas on `device`.

    `inner_model` is the k-diffusion denoiser (`model_wrap`); it tells flow models apart.
    """
    family = model_family(inner_model) if inner_model is not None else "ve"
    sigmas = logsnr_uniform_sigmas(int(n), float(sigma_min), float(sigma_max), family)
    return sigmas.to(device=device, dtype=torch.float32)
