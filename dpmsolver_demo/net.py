"""The demo denoising network: a small time-conditioned UNet for 8x8 single-channel images.

The same architecture serves both demo models; what it predicts (noise or velocity) and what its timestep input
means are set by the wrapper in `dpmsolver_demo.wrappers`. Two resolutions (8x8 with `ch` channels, 4x4 with
2*`ch`), residual blocks with GroupNorm and SiLU, the timestep added per block from a sinusoidal embedding.
Everything is smooth in its input, so the sampling ODE is well posed for a high-accuracy reference solve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class NetConfig:
    """Architecture hyper-parameters (stored in the weights' metadata)."""

    ch: int = 32
    emb: int = 128
    freq: int = 32
    min_freq: float = 0.0015
    max_freq: float = 0.05
    groups: int = 8
    size: int = 8

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, freq: int, min_freq: float, max_freq: float) -> torch.Tensor:
    """Sinusoidal features of a (possibly fractional) timestep t in [0, 1000]: (B,) -> (B, 2*freq), with `freq`
    angular frequencies spaced geometrically from min_freq to max_freq (radians per timestep).

    Stable Diffusion's embedding goes up to 1 radian per timestep. A network this small, trained for minutes,
    then learns wiggles of a few timesteps' period in its output as a function of sigma, which throttle every
    high-order solver (a 500-step reference stops converging); capping the frequency at 0.05 (periods of 125
    timesteps and more) keeps the output as smooth in sigma as a well-trained large model's."""
    ratio = torch.arange(freq, dtype=t.dtype, device=t.device) / max(1, freq - 1)
    scales = torch.exp(math.log(min_freq) + ratio * (math.log(max_freq) - math.log(min_freq)))
    angles = t[:, None] * scales[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, plus the timestep as a per-channel shift, GroupNorm-SiLU-conv; residual."""

    def __init__(self, cin: int, cout: int, emb: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TinyUNet(nn.Module):
    """net(x, t) for x of shape (B, 1, size, size) and timesteps t of shape (B,) in [0, 1000]."""

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        c = config or NetConfig()
        self.config = c
        ch, emb = c.ch, c.emb
        self.embed = nn.Sequential(nn.Linear(2 * c.freq, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(1, ch, 3, padding=1)
        self.enc = ResBlock(ch, ch, emb, c.groups)
        self.down = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.mid1 = ResBlock(2 * ch, 2 * ch, emb, c.groups)
        self.mid2 = ResBlock(2 * ch, 2 * ch, emb, c.groups)
        self.up = nn.Conv2d(2 * ch, ch, 3, padding=1)
        self.dec = ResBlock(2 * ch, ch, emb, c.groups)
        self.out_norm = nn.GroupNorm(c.groups, ch)
        self.out = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.config
        emb = F.silu(self.embed(timestep_embedding(t.to(x.dtype), c.freq, c.min_freq, c.max_freq)))
        h0 = self.enc(self.inp(x), emb)
        h = self.mid2(self.mid1(self.down(h0), emb), emb)
        h = self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.dec(torch.cat([h, h0], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))
