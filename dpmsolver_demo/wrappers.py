"""Sigma-space wrappers that turn the demo networks into `model(x, sigma[B]) -> x0 estimate`, as a host does.

* `DiscreteEpsModel`: a noise-prediction network trained on Stable Diffusion's discrete schedule (1000 steps,
  scaled-linear betas 0.00085 to 0.012), used in sigma space exactly as SD1.x is by k-diffusion-style hosts:
  sigma_k = sqrt((1 - abar_k) / abar_k) is the table; a sigma maps to a fractional timestep by linear
  interpolation of log(sigma) in the table; the network sees x / sqrt(1 + sigma^2) (the VP-scaled input) and
  the timestep; D = x - sigma * eps.
* `FlowVModel`: a rectified-flow velocity network (SD3/Flux style): x = (1 - sigma) x0 + sigma eps,
  v = eps - x0, the network sees x itself and the timestep 1000 * sigma; D = x - sigma * v.

Both cast x to the network's dtype and back, and compute D in x's dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SD_TIMESTEPS = 1000
SD_BETA_START = 0.00085
SD_BETA_END = 0.012
FLOW_TIMESTEP_SCALE = 1000.0
FLOW_SHIFT = 3.0


def sd_alphas_cumprod(timesteps: int = SD_TIMESTEPS, beta_start: float = SD_BETA_START,
                      beta_end: float = SD_BETA_END) -> torch.Tensor:
    """Stable Diffusion's scaled-linear schedule: betas = linspace(sqrt(b0), sqrt(b1), T)^2; float64 abar_k."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def flow_shift(t: float, shift: float = FLOW_SHIFT) -> float:
    """SD3/Flux time shift: sigma = shift t / (1 + (shift - 1) t)."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def _column(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(x.shape[0])
    return s.reshape(-1, *([1] * (x.ndim - 1)))


def _net_dtype(net: nn.Module) -> torch.dtype:
    return next(net.parameters()).dtype


class DiscreteEpsModel:
    """SD1.x-style discrete-timestep eps model in sigma space (see the module docstring)."""

    schedule = "ve"

    def __init__(self, net: nn.Module, alphas_cumprod: torch.Tensor | None = None) -> None:
        self.net = net
        abar = (sd_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod).to(torch.float64)
        self.sigmas = ((1.0 - abar) / abar).sqrt()  # ascending in k
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of each sigma: log(sigma) linearly interpolated in the table; clamped to
        [0, T-1] outside it. Exact (t = k) at the table's sigma_k. Returns float64."""
        table = self.log_sigmas.to(sigma.device)
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64, device=table.device).log()
        idx = torch.searchsorted(table, log_sigma)  # first k with table[k] >= log_sigma
        low = (idx - 1).clamp(0, table.numel() - 2)
        high = low + 1
        w = ((table[low] - log_sigma) / (table[low] - table[high])).clamp(0.0, 1.0)
        return low.to(torch.float64) + w

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of sigma_to_t: log(sigma) interpolated at fractional t (the table's sigma at integer t)."""
        table = self.log_sigmas.to(t.device)
        t = torch.as_tensor(t, dtype=torch.float64, device=table.device).clamp(0.0, table.numel() - 1)
        low = t.floor().long().clamp(max=table.numel() - 2)
        w = t - low.to(torch.float64)
        log_sigma = table[low] + w * (table[low + 1] - table[low])
        exact = self.sigmas.to(t.device)[t.round().long()]
        return torch.where(t == t.round(), exact, log_sigma.exp())

    def eps(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The network's noise prediction at (x, sigma), in x's dtype."""
        s = _column(sigma, x)
        t = self.sigma_to_t(s.reshape(-1))
        x_in = x / torch.sqrt(1.0 + s * s)
        dt = _net_dtype(self.net)
        return self.net(x_in.to(dt), t.to(device=x.device, dtype=dt)).to(x.dtype)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, **extra_args: Any) -> torch.Tensor:
        """D(x, sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), t(sigma)); extra args are ignored."""
        return x - _column(sigma, x) * self.eps(x, sigma)


class FlowVModel:
    """Rectified-flow velocity model in sigma space: D = x - sigma * v(x, 1000 sigma)."""

    schedule = "flow"
    sigma_max = 1.0
    sigma_min = flow_shift(1.0 / SD_TIMESTEPS)

    def __init__(self, net: nn.Module, timestep_scale: float = FLOW_TIMESTEP_SCALE) -> None:
        self.net = net
        self.timestep_scale = timestep_scale

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The network's velocity prediction v ~ eps - x0 at (x, sigma), in x's dtype."""
        s = _column(sigma, x)
        dt = _net_dtype(self.net)
        t = (s.reshape(-1) * self.timestep_scale).to(dt)
        return self.net(x.to(dt), t).to(x.dtype)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, **extra_args: Any) -> torch.Tensor:
        """D(x, sigma) = x - sigma * v; extra args are ignored."""
        return x - _column(sigma, x) * self.velocity(x, sigma)
