"""Stand-in of `modules/sd_samplers_common.py`: SamplerData, the Sampler base and its noise sampler hook."""

from __future__ import annotations

import inspect
from collections import namedtuple
from typing import Any

import torch

from modules import shared
from modules.shared import opts, state

SamplerDataTuple = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


class SamplerData(SamplerDataTuple):
    def total_steps(self, steps: int) -> int:
        if self.options.get("second_order", False):
            steps = steps * 2
        return steps


def setup_img2img_steps(p: Any, steps: int | None = None) -> tuple[int, int]:
    steps = p.steps
    t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


class InterruptedException(BaseException):
    pass


class StandinNoiseSampler:
    """Stands in for k-diffusion's BrownianTreeNoiseSampler (torchsde): one generator per image seed."""

    def __init__(self, x: torch.Tensor, seeds: list[int]) -> None:
        self.seeds = list(seeds)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.shape = x.shape[1:]

    def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


class Sampler:
    def __init__(self, funcname: Any) -> None:
        self.funcname = funcname
        self.func = funcname
        self.extra_params: list[str] = []
        self.stop_at: int | None = None
        self.eta: float | None = None
        self.config: SamplerData | None = None
        self.last_latent: torch.Tensor | None = None
        self.s_min_uncond: float | None = None
        self.eta_option_field = "eta_ancestral"
        self.eta_infotext_field = "Eta"
        self.eta_default = 1.0
        self.p: Any = None
        self.model_wrap_cfg: Any = None
        self.sampler_extra_args: Any = None
        self.options: dict[str, Any] = {}
        self.callback_steps: list[int] = []

    def callback_state(self, d: dict[str, Any]) -> None:
        step = d["i"]
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        self.callback_steps.append(step)
        state.sampling_step = step
        shared.total_tqdm.update()

    def launch_sampling(self, steps: int, func: Any) -> torch.Tensor:
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        state.sampling_steps = steps
        state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p: Any) -> dict[str, Any]:
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.step = 0
        self.eta = p.eta if p.eta is not None else getattr(opts, self.eta_option_field, 0.0)
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)
        extra_params_kwargs: dict[str, Any] = {}
        for param_name in self.extra_params:
            if hasattr(p, param_name) and param_name in inspect.signature(self.func).parameters:
                extra_params_kwargs[param_name] = getattr(p, param_name)
        if "eta" in inspect.signature(self.func).parameters:
            if self.eta != self.eta_default:
                p.extra_generation_params[self.eta_infotext_field] = self.eta
            extra_params_kwargs["eta"] = self.eta
        return extra_params_kwargs

    def create_noise_sampler(self, x: torch.Tensor, sigmas: torch.Tensor, p: Any) -> Any:
        if shared.opts.no_dpmpp_sde_batch_determinism:
            return None
        current_iter_seeds = p.all_seeds[p.iteration * p.batch_size:(p.iteration + 1) * p.batch_size]
        return StandinNoiseSampler(x, current_iter_seeds)
