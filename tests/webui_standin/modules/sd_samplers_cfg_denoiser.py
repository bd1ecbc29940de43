"""Stand-in of `modules/sd_samplers_cfg_denoiser.py`: the CFG denoiser handed to sampler functions as `model`."""

from __future__ import annotations

from typing import Any

import torch

from modules import sd_samplers_common
from modules.shared import state


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler: Any) -> None:
        super().__init__()
        self.model_wrap: Any = None
        self.sampler = sampler
        self.p: Any = None
        self.step = 0
        self.steps = 0
        self.total_steps = 0
        self.calls: list[float] = []

    @property
    def inner_model(self) -> Any:
        raise NotImplementedError()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, uncond: Any, cond: Any, cond_scale: float,
                s_min_uncond: float, image_cond: Any) -> torch.Tensor:
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException
        self.calls.append(float(sigma[0]))
        denoised_uncond = self.inner_model(x, sigma, cond=uncond)
        denoised_cond = self.inner_model(x, sigma, cond=cond)
        self.step += 1
        return denoised_uncond + cond_scale * (denoised_cond - denoised_uncond)
