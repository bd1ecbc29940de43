"""Stand-in of `modules/sd_samplers_kdiffusion.py`: KDiffusionSampler with the WebUI's signature inspection.

The k-diffusion wrapper (`model_wrap`) comes from `shared.sd_model`: `create_denoiser()` in the A1111/reForge
flavors, a `ForgeScheduleLinker`-like object around `forge_objects.unet.model.predictor` in the Forge/Neo ones.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from standin_flavor import FLAVOR

from modules import sd_samplers_cfg_denoiser, sd_samplers_common, sd_schedulers, shared
from modules.shared import opts


def sample_euler(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Any = None, callback: Any = None,
                 disable: Any = None) -> torch.Tensor:
    """A built-in-like sampler of the stand-in (Euler), behind every built-in label below."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


samplers_k_diffusion = [
    ("DPM++ 2M", sample_euler, ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("DPM++ SDE", sample_euler, ["k_dpmpp_sde"], {"scheduler": "karras", "second_order": True,
                                                  "brownian_noise": True}),
    ("Euler a", sample_euler, ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    ("Euler", sample_euler, ["k_euler"], {}),
    ("Heun", sample_euler, ["k_heun"], {"second_order": True}),
    ("DPM2", sample_euler, ["k_dpm_2"], {"scheduler": "karras", "discard_next_to_last_sigma": True}),
    ("DPM fast", sample_euler, ["k_dpm_fast"], {"uses_ensd": True}),
    ("DPM adaptive", sample_euler, ["k_dpm_ad"], {"uses_ensd": True}),
]

samplers_data_k_diffusion = [
    sd_samplers_common.SamplerData(label, lambda model, funcname=funcname: KDiffusionSampler(funcname, model),
                                   aliases, options)
    for label, funcname, aliases, options in samplers_k_diffusion
]

sampler_extra_params: dict[Any, list[str]] = {}


class ScheduleLinker(torch.nn.Module):
    """Forge's `k_diffusion.external.ForgeScheduleLinker` shape: sigma table and model behind a predictor."""

    def __init__(self, predictor: Any) -> None:
        super().__init__()
        self.predictor = predictor

    @property
    def sigmas(self) -> torch.Tensor:
        return self.predictor.sigmas

    def get_sigmas(self, n: int) -> torch.Tensor:
        t = torch.linspace(len(self.sigmas) - 1, 0, n).round().long()
        return torch.cat([self.sigmas[t], self.sigmas.new_zeros([1])])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.predictor.denoise(x, sigma, **kwargs)


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self) -> Any:
        if self.model_wrap is None:
            if FLAVOR in ("forge", "neo"):
                self.model_wrap = ScheduleLinker(shared.sd_model.forge_objects.unet.model.predictor)
                self.model_wrap.inner_model = shared.sd_model
            else:
                self.model_wrap = shared.sd_model.create_denoiser()
        return self.model_wrap


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname: Any, sd_model: Any, options: Any = None) -> None:
        super().__init__(funcname)
        self.extra_params = sampler_extra_params.get(funcname, [])
        self.options = options or {}
        self.func = funcname
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_sigmas(self, p: Any, steps: int) -> torch.Tensor:
        discard_next_to_last_sigma = self.config is not None and self.config.options.get(
            "discard_next_to_last_sigma", False)
        steps += 1 if discard_next_to_last_sigma else 0
        scheduler_name = (p.hr_scheduler if p.is_hr_pass else p.scheduler) or "Automatic"
        if scheduler_name == "Automatic":
            scheduler_name = self.config.options.get("scheduler", None)
        scheduler = sd_schedulers.schedulers_map.get(scheduler_name)
        m_sigma_min, m_sigma_max = self.model_wrap.sigmas[0].item(), self.model_wrap.sigmas[-1].item()
        if p.sampler_noise_scheduler_override:
            sigmas = p.sampler_noise_scheduler_override(steps)
        elif scheduler is None or scheduler.function is None:
            sigmas = self.model_wrap.get_sigmas(steps)
        else:
            sigmas_kwargs: dict[str, Any] = {"sigma_min": m_sigma_min, "sigma_max": m_sigma_max}
            if scheduler.label != "Automatic" and not p.is_hr_pass:
                p.extra_generation_params["Schedule type"] = scheduler.label
            if opts.sigma_min != 0 and opts.sigma_min != m_sigma_min:
                sigmas_kwargs["sigma_min"] = opts.sigma_min
            if opts.sigma_max != 0 and opts.sigma_max != m_sigma_max:
                sigmas_kwargs["sigma_max"] = opts.sigma_max
            if scheduler.need_inner_model:
                sigmas_kwargs["inner_model"] = self.model_wrap
            sigmas = scheduler.function(n=steps, **sigmas_kwargs, device=shared.device)
        if discard_next_to_last_sigma:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        return sigmas.cpu()

    def sample(self, p: Any, x: torch.Tensor, conditioning: Any, unconditional_conditioning: Any,
               steps: int | None = None, image_conditioning: Any = None) -> torch.Tensor:
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps).to(x.device)
        x = x * sigmas[0]
        extra_params_kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if "n" in parameters:
            extra_params_kwargs["n"] = steps
        if "sigma_min" in parameters:
            extra_params_kwargs["sigma_min"] = self.model_wrap.sigmas[0].item()
            extra_params_kwargs["sigma_max"] = self.model_wrap.sigmas[-1].item()
        if "sigmas" in parameters:
            extra_params_kwargs["sigmas"] = sigmas
        if self.config.options.get("brownian_noise", False):
            extra_params_kwargs["noise_sampler"] = self.create_noise_sampler(x, sigmas, p)
        if self.config.options.get("solver_type", None) == "heun":
            extra_params_kwargs["solver_type"] = "heun"
        self.last_latent = x
        self.sampler_extra_args = {"cond": conditioning, "image_cond": image_conditioning,
                                   "uncond": unconditional_conditioning, "cond_scale": p.cfg_scale,
                                   "s_min_uncond": self.s_min_uncond}
        self.sigmas_used = sigmas
        return self.launch_sampling(steps, lambda: self.func(
            self.model_wrap_cfg, x, extra_args=self.sampler_extra_args, disable=False, callback=self.callback_state,
            **extra_params_kwargs))
