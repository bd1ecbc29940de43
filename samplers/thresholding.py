"""Dynamic thresholding of the data prediction (Imagen), for pixel-space models.

Per sample: s = clamp(quantile(|x0|, p), 1, max_value); x0 <- clamp(x0, -s, s) / s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .options import OPTIONS, parse_options

TORCH_QUANTILE_MAX = 1 << 24
"""Longest row torch.quantile accepts."""


def row_quantile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(flat, q, dim=1) (linear interpolation), also for rows longer than it accepts (a 3x2400x2400
    image): there v_lo + w (v_hi - v_lo) at rank q (n - 1) from two order statistics (kthvalue)."""
    last = flat.shape[1] - 1
    if last < TORCH_QUANTILE_MAX:
        return torch.quantile(flat, q, dim=1)
    rank = min(q * last, float(last))  # float64 on the host: every rank of such a row is exact
    below, above = math.floor(rank), math.ceil(rank)
    low = torch.kthvalue(flat, below + 1, dim=1).values
    high = low if above == below else torch.kthvalue(flat, above + 1, dim=1).values
    return torch.lerp(low, high, rank - below)


@dataclass(frozen=True)
class DynamicThreshold:
    """Quantile `quantile` of |x0| per sample, bounded to [1, max_value], clips and rescales x0 (the samplers'
    defaults unless given)."""

    quantile: float = OPTIONS["threshold_quantile"].default
    max_value: float = OPTIONS["threshold_max"].default

    def __post_init__(self) -> None:
        """The samplers' own checks of the two options (samplers/options.py), for direct users of the class."""
        parse_options("DynamicThreshold", ("threshold_quantile", "threshold_max"),
                      {"threshold_quantile": self.quantile, "threshold_max": self.max_value})

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        flat = x0.reshape(x0.shape[0], -1).abs()
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        s = row_quantile(flat, self.quantile).to(x0.dtype)
        s = s.clamp(min=1.0, max=self.max_value).reshape((-1,) + (1,) * (x0.dim() - 1))
        return torch.maximum(torch.minimum(x0, s), -s) / s
