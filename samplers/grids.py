"""Sigma grids (descending, float64 tensors) used by the tests, the benchmark and the host adapters."""

from __future__ import annotations

import math

import torch

from .schedules import NoiseSchedule, resolve_schedule


def _finish(values: list[float], append_zero: bool) -> torch.Tensor:
    return torch.tensor([*values, 0.0] if append_zero else values, dtype=torch.float64)


def _ramp(n: int) -> list[float]:
    """n fractions i/(n-1) from 0 to 1 (just [0] for one point)."""
    return [i / (n - 1) for i in range(n)] if n > 1 else [0.0]


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, append_zero: bool = True) -> torch.Tensor:
    """Karras et al. (2022): sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < n."""
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return _finish([(hi + r * (lo - hi)) ** rho for r in _ramp(n)], append_zero)


def exponential(n: int, sigma_min: float, sigma_max: float, append_zero: bool = True) -> torch.Tensor:
    """Log-uniform sigmas from sigma_max to sigma_min (n points): uniform half-log-SNR for VE models."""
    a, b = math.log(sigma_max), math.log(sigma_min)
    return _finish([math.exp(a + r * (b - a)) for r in _ramp(n)], append_zero)


def uniform_lambda(
    n: int, sigma_min: float, sigma_max: float, schedule: str | NoiseSchedule = "ve", append_zero: bool = True
) -> torch.Tensor:
    """n sigmas whose half-log-SNR lambda is uniform between lambda(sigma_max) and lambda(sigma_min)."""
    sched = resolve_schedule(schedule)
    a, b = sched.lambda_(sigma_max), sched.lambda_(sigma_min)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError("uniform_lambda needs sigma_min and sigma_max with finite half-log-SNR")
    return _finish([sched.sigma_at(a + r * (b - a)) for r in _ramp(n)], append_zero)


def flow_shift(t: float, shift: float) -> float:
    """SD3/Flux time shift: sigma = shift*t / (1 + (shift - 1) t)."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def flow_simple(n: int, shift: float = 3.0, timesteps: int = 1000, append_zero: bool = True) -> torch.Tensor:
    """ComfyUI's "simple" grid on a discrete flow model: every (timesteps/n)-th entry of the shifted table
    sigma_k = shift(k/timesteps), k = timesteps, ..., 1, starting at sigma = 1."""
    stride = timesteps / n
    ks = [timesteps - int(i * stride) for i in range(n)]
    return _finish([flow_shift(k / timesteps, shift) for k in ks], append_zero)
