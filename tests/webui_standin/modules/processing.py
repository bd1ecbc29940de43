"""Stand-in of `modules/processing.py`: a txt2img job, `process_images` order of events and `create_infotext`."""

from __future__ import annotations

from typing import Any

import torch

from modules import infotext_utils, sd_samplers, shared
from modules.shared import opts


class StableDiffusionProcessingTxt2Img:
    def __init__(self, *, sampler_name: str, scheduler: str = "Automatic", steps: int = 8, seed: int = 1234,
                 batch_size: int = 1, cfg_scale: float = 3.0, width: int = 8, height: int = 8, prompt: str = "a cat",
                 override_settings: dict[str, Any] | None = None, script_args: list[Any] | None = None,
                 scripts: Any = None, enable_hr: bool = False, hr_sampler_name: str = "Use same sampler") -> None:
        self.sampler_name, self.scheduler, self.steps = sampler_name, scheduler, steps
        self.batch_size, self.cfg_scale, self.width, self.height = batch_size, cfg_scale, width, height
        self.prompt, self.negative_prompt = prompt, ""
        self.override_settings = override_settings or {}
        self.script_args = list(script_args or [])
        self.scripts = scripts
        self.enable_hr, self.hr_sampler_name = enable_hr, hr_sampler_name
        self.all_seeds = [seed + i for i in range(batch_size)]
        self.seeds = list(self.all_seeds)
        self.iteration = 0
        self.extra_generation_params: dict[str, Any] = {}
        self.is_hr_pass, self.hr_scheduler = False, None
        self.sampler_noise_scheduler_override = None
        self.eta: float | None = None
        self.s_min_uncond = 0.0
        self.sd_model = shared.sd_model
        self.sampler: Any = None
        self.total_steps_for_conds: int | None = None

    def setup_conds(self) -> None:
        sampler_config = sd_samplers.find_sampler_config(self.sampler_name)
        self.total_steps_for_conds = sampler_config.total_steps(self.steps) if sampler_config else self.steps

    def sample(self) -> torch.Tensor:
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        channels = getattr(self.sd_model, "latent_channels", 4)
        noise = torch.stack([torch.randn(channels, self.height, self.width, generator=torch.Generator().manual_seed(s))
                             for s in self.seeds])
        cond = self.sd_model.get_learned_conditioning([self.prompt] * self.batch_size)
        uncond = self.sd_model.get_learned_conditioning([self.negative_prompt] * self.batch_size)
        return self.sampler.sample(self, noise, cond, uncond)


def create_infotext(p: Any) -> str:
    generation_params = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": p.scheduler,
        "CFG scale": p.cfg_scale,
        "Seed": p.all_seeds[0],
        "Size": f"{p.width}x{p.height}",
        **p.extra_generation_params,
    }
    text = ", ".join([k if k == v else f"{k}: {infotext_utils.quote(v)}" for k, v in generation_params.items()
                      if v is not None])
    return f"{p.prompt}\n{text}"


def process_images(p: Any) -> tuple[torch.Tensor, str]:
    """before_process, override_settings applied to opts (and restored), process, conds, sampling, infotext."""
    if p.scripts is not None:
        p.scripts.before_process(p)
    stored_opts = {k: opts.data[k] for k in p.override_settings if k in opts.data}
    try:
        for k, v in p.override_settings.items():
            opts.set(k, v, is_api=True, run_callbacks=False)
        if p.scripts is not None:
            p.scripts.process(p)
        sd_samplers.fix_p_invalid_sampler_and_scheduler(p)
        p.setup_conds()
        samples = p.sample()
        return samples, create_infotext(p)
    finally:
        for k, v in stored_opts.items():
            opts.data[k] = v
