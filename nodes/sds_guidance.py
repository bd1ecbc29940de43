"""The conditional and unconditional predictions behind ComfyUI's CFG, for the SDS modes that need them (csd).

ComfyUI's CFG (`comfy.samplers.cfg_function`) combines D_cfg = D_uncond + cfg (D_cond - D_uncond) and then calls
every function in model_options["sampler_post_cfg_function"] with a dict holding "denoised" (D_cfg),
"cond_denoised", "uncond_denoised" and "cond_scale"; the function's return value replaces D_cfg. A
`GuidanceRecorder` is such a function: it keeps the latest (D_cond, D_uncond, cfg) and returns D_cfg unchanged.
Its `parts` method is the core's `guidance_parts` option.
"""

from __future__ import annotations

from typing import Any

import torch

POST_CFG_KEY = "sampler_post_cfg_function"
NO_CFG1_SHORTCUT_KEY = "disable_cfg1_optimization"
"""At cfg = 1 ComfyUI skips the unconditional call unless this model option is set."""


class GuidanceRecorder:
    """A post-CFG hook that records (cond_denoised, uncond_denoised, cfg) of the most recent model call."""

    def __init__(self) -> None:
        self.latest: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self.calls = 0

    def __call__(self, args: dict[str, Any]) -> torch.Tensor:
        self.latest = (args["cond_denoised"], args["uncond_denoised"], float(args["cond_scale"]))
        self.calls += 1
        return args["denoised"]

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """(D_cond, D_uncond, cfg) of the latest call, or None before the first call."""
        return self.latest


def with_guidance_hook(extra_args: dict[str, Any] | None) -> tuple[dict[str, Any], GuidanceRecorder]:
    """A copy of `extra_args` whose model_options also run a new recorder after CFG (the host's own
    post-CFG functions run first, unchanged), with ComfyUI's cfg = 1 shortcut off so that D_uncond is computed."""
    extra_args = dict(extra_args or {})
    options = dict(extra_args.get("model_options") or {})
    recorder = GuidanceRecorder()
    options[POST_CFG_KEY] = [*options.get(POST_CFG_KEY, []), recorder]
    options[NO_CFG1_SHORTCUT_KEY] = True
    extra_args["model_options"] = options
    return extra_args, recorder
