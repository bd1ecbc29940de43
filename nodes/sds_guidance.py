"""The conditional and unconditional predictions behind ComfyUI's CFG, for the SDS modes that need them (csd).

ComfyUI's CFG (`comfy.samplers.cfg_function`) combines D_cfg = D_uncond + cfg (D_cond - D_uncond) and then calls
every function in model_options["sampler_post_cfg_function"] with a dict holding "denoised" (D_cfg),
"cond_denoised", "uncond_denoised" and "cond_scale"; the function's return value replaces D_cfg. A
`GuidanceRecorder` is such a function: it keeps the latest (D_cond, D_uncond, cfg) and returns D_cfg unchanged.
Its `parts` method is the core's `guidance_parts` option.

Under an inpaint mask ComfyUI's KSamplerX0Inpaint blends the model's output with the original latent,
D_out = D m + latent (1 - m), after CFG; the recorder blends the two parts the same way, with the mask of the same
call (recorded through model_options["denoise_mask_function"], which KSamplerX0Inpaint calls when it has a mask).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

POST_CFG_KEY = "sampler_post_cfg_function"
NO_CFG1_SHORTCUT_KEY = "disable_cfg1_optimization"
"""At cfg = 1 ComfyUI skips the unconditional call unless this model option is set."""
MASK_FUNCTION_KEY = "denoise_mask_function"
"""KSamplerX0Inpaint maps its mask through this model option (sigma, mask, extra_options) -> mask, if present."""

MaskFunction = Callable[..., torch.Tensor]


class GuidanceRecorder:
    """A post-CFG hook that records (cond_denoised, uncond_denoised, cfg) of the most recent model call, and the
    inpaint mask of that call; `latent_image` is what ComfyUI blends in where the mask is 0."""

    def __init__(self, latent_image: torch.Tensor | None = None) -> None:
        self.latest: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self.calls = 0
        self.latent_image = latent_image
        self.mask: torch.Tensor | None = None

    def __call__(self, args: dict[str, Any]) -> torch.Tensor:
        self.latest = (args["cond_denoised"], args["uncond_denoised"], float(args["cond_scale"]))
        self.calls += 1
        return args["denoised"]

    def mask_function(self, host: MaskFunction | None) -> MaskFunction:
        """A denoise_mask_function that applies the host's own (if any) and records the mask it returns."""

        def record(sigma: torch.Tensor, mask: torch.Tensor, extra_options: dict[str, Any] | None = None
                   ) -> torch.Tensor:
            self.mask = mask if host is None else host(sigma, mask, extra_options=extra_options)
            return self.mask

        return record

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """(D_cond, D_uncond, cfg) of the latest call (each blended with the latent outside an inpaint mask, as
        ComfyUI blends the output), or None before the first call."""
        if self.latest is None or self.mask is None or self.latent_image is None:
            return self.latest
        cond, uncond, cfg = self.latest
        outside = (1.0 - self.mask) * self.latent_image
        return cond * self.mask + outside, uncond * self.mask + outside, cfg


def with_guidance_hook(extra_args: dict[str, Any] | None, denoiser: Any = None
                       ) -> tuple[dict[str, Any], GuidanceRecorder]:
    """A copy of `extra_args` whose model_options also run a new recorder after CFG (the host's own
    post-CFG functions run first, unchanged), with ComfyUI's cfg = 1 shortcut off so that D_uncond is computed.
    `denoiser`: ComfyUI's KSamplerX0Inpaint, whose latent_image the recorder blends in outside a mask."""
    extra_args = dict(extra_args or {})
    options = dict(extra_args.get("model_options") or {})
    recorder = GuidanceRecorder(getattr(denoiser, "latent_image", None))
    options[POST_CFG_KEY] = [*options.get(POST_CFG_KEY, []), recorder]
    options[NO_CFG1_SHORTCUT_KEY] = True
    options[MASK_FUNCTION_KEY] = recorder.mask_function(options.get(MASK_FUNCTION_KEY))
    extra_args["model_options"] = options
    return extra_args, recorder
