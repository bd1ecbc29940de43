"""Score distillation nodes: the SDS gradient of a latent, and a latent refined by SDS optimisation steps.

Both nodes evaluate the model through ComfyUI's own sampling machinery: a `CFGGuider` (model, positive,
negative, cfg) runs a `KSAMPLER` whose function receives ComfyUI's wrapped denoiser D(x, sigma) (CFG, model
patches, noise mask) and the latent already mapped into the model's space (`latent_format.process_in`); what the
function returns is mapped back (`process_out`). The guider is given the one-point grid [0], at which ComfyUI's
noise scaling is the identity for every model family, so the function receives the clean latent x0 itself. The
model family (VE or rectified flow, ModelSamplingSD3 & co. included) comes from the model's model_sampling.

Per noise level sigma (core: samplers/sds.py): x_t = alpha(sigma) x0 + sigma eps, and the gradient is
g = lambda(sigma) (x0 - D(x_t, sigma)) (modes sds, sdi) or its guidance term only (csd), with D_cond and
D_uncond taken from ComfyUI's post-CFG hook (sds_guidance.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ..samplers import sds
from .family import family_of_denoiser, family_of_model_sampling, model_sampling_of_patcher
from .sds_guidance import with_guidance_hook
from .sds_sigmas import annealing_sigmas, sds_sigma
from .widgets import InputError, WidgetSpec

log = logging.getLogger(__name__)

CATEGORY = "sampling/custom_sampling/DPM-Solver/SDS"
OPTIMIZERS = sds.OPTIMIZERS

Work = Callable[[Any, torch.Tensor, dict[str, Any]], torch.Tensor]

MODE_TIP = ("sds: the full score distillation gradient lambda (x0 - D_cfg). csd: classifier score distillation, "
            "the guidance term only, from the conditional and unconditional predictions. sdi: like sds, with the "
            "noise found by a DPM-Solver inversion of the latent instead of fresh noise.")
WEIGHTING_TIP = ("lambda(sigma): dreamfusion (the DreamFusion weight sigma_VP^2, sigma/(1+sigma^2) for SD1.x), "
                 "sjc (1/sigma) or uniform (1).")
PERCENT_TIP = ("Noise level as a fraction of the sampling schedule, like ComfyUI's start/end percent: 0 is the "
               "start (the model's largest sigma), values towards 1 are less noisy.")

COMMON: dict[str, tuple[WidgetSpec, Any]] = {
    "cfg": (WidgetSpec("FLOAT", "Classifier-free guidance scale of the model calls.", minimum=0.0, maximum=100.0,
                       step=0.1), 7.5),
    "seed": (WidgetSpec("INT", "Seed of the fresh noise (per-sample streams: a latent's noise does not depend on "
                        "the batch size).", minimum=0, maximum=2**64 - 1, step=1), 0),
    "mode": (WidgetSpec("COMBO", MODE_TIP, choices=sds.MODES), "sds"),
    "weighting": (WidgetSpec("COMBO", WEIGHTING_TIP, choices=sds.WEIGHTINGS), "dreamfusion"),
}

GRADIENT_WIDGETS: dict[str, tuple[WidgetSpec, Any]] = {
    "percent": (WidgetSpec("FLOAT", PERCENT_TIP, minimum=0.0, maximum=0.999, step=0.001), 0.5),
    "sigma": (WidgetSpec("FLOAT", "Noise level as a sigma of the model's schedule; 0 = use percent (flow models: "
                         "at most 1).", minimum=0.0, maximum=1000.0, step=0.001), 0.0),
    **COMMON,
}

REFINE_WIDGETS: dict[str, tuple[WidgetSpec, Any]] = {
    "steps": (WidgetSpec("INT", "Noise levels of the annealing schedule (each gets inner_steps optimiser steps, "
                         "one model call each; sdi adds its inversion calls).", minimum=1, maximum=10000, step=1), 20),
    "optimizer": (WidgetSpec("COMBO", "sgd: x0 <- x0 - lr g. adam: Adam with step size lr on the SDS gradient.",
                             choices=OPTIMIZERS), "adam"),
    "lr": (WidgetSpec("FLOAT", "Learning rate (step size) of the optimiser, in the model's latent units.",
                      minimum=1e-6, maximum=100.0, step=0.001), 0.05),
    "start_percent": (WidgetSpec("FLOAT", "Noise level of the first step. " + PERCENT_TIP, minimum=0.0,
                                 maximum=0.999, step=0.001), 0.3),
    "end_percent": (WidgetSpec("FLOAT", "Noise level of the last step (the schedule is linear in percent). "
                               + PERCENT_TIP, minimum=0.0, maximum=0.999, step=0.001), 0.9),
    "start_sigma": (WidgetSpec("FLOAT", "Sigma of the first step; 0 = use start_percent.", minimum=0.0,
                               maximum=1000.0, step=0.001), 0.0),
    "end_sigma": (WidgetSpec("FLOAT", "Sigma of the last step; 0 = use end_percent.", minimum=0.0, maximum=1000.0,
                             step=0.001), 0.0),
    **COMMON,
    "inner_steps": (WidgetSpec("INT", "Optimiser steps per noise level (fresh noise each).", minimum=1,
                               maximum=1000, step=1), 1),
    "grad_clip": (WidgetSpec("FLOAT", "Largest L2 norm of each latent's gradient; 0 = no clipping.", minimum=0.0,
                             maximum=1e6, step=0.01), 0.0),
}

MODEL_INPUTS: dict[str, tuple[str, dict[str, str]]] = {
    "model": ("MODEL", {"tooltip": "The diffusion model (its model_sampling decides VE or flow)."}),
    "positive": ("CONDITIONING", {"tooltip": "The conditioning the latent is pulled towards."}),
    "negative": ("CONDITIONING", {"tooltip": "The unconditional / negative conditioning of CFG."}),
    "latent": ("LATENT", {"tooltip": "The latent (as from VAE Encode or a sampler)."}),
}


def input_types(widgets: dict[str, tuple[WidgetSpec, Any]]) -> dict[str, Any]:
    """INPUT_TYPES: the model inputs, then the widgets in table order."""
    required: dict[str, Any] = dict(MODEL_INPUTS)
    for name, (spec, default) in widgets.items():
        required[name] = spec.comfy_input(default)
    if "seed" in required:
        required["seed"][1]["control_after_generate"] = True
    return {"required": required}


def checked(label: str, widgets: dict[str, tuple[WidgetSpec, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """The widget values, each checked against its widget (InputError naming the node and the input)."""
    for name, (spec, _) in widgets.items():
        try:
            spec.check(name, values[name])
        except InputError as err:
            raise InputError(f"{label}: {err}") from None
    return {name: spec.option_value(values[name]) for name, (spec, _) in widgets.items()}


def latent_difference_out(model: Any, delta: torch.Tensor) -> torch.Tensor:
    """A difference of model-space latents in the LATENT's space: the linear part of latent_format.process_out
    (process_out(delta) - process_out(0); a scale-only format divides by its scale factor)."""
    latent_format = model.get_model_object("latent_format")
    return latent_format.process_out(delta) - latent_format.process_out(torch.zeros_like(delta))


def run_in_guider(model: Any, positive: Any, negative: Any, cfg: float, latent: dict[str, Any], seed: int,
                  work: Work) -> torch.Tensor:
    """`work(denoiser, x0, extra_args)` inside ComfyUI's CFGGuider; returns its result in the LATENT's space."""
    import comfy.model_management
    import comfy.sample
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])

    def function(denoiser: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None = None,
                 callback: Any = None, disable: Any = None) -> torch.Tensor:
        return work(denoiser, x, dict(extra_args or {}))

    identity_grid = torch.zeros(1)  # noise scaling at sigma = 0 hands over the latent unchanged (VE and flow)
    with torch.inference_mode():
        out = guider.sample(torch.zeros_like(samples), samples, comfy.samplers.KSAMPLER(function), identity_grid,
                            denoise_mask=latent.get("noise_mask"), disable_pbar=True, seed=seed)
    return out.to(comfy.model_management.intermediate_device())


class DPMSolverSDSGradient:
    """The SDS gradient of a latent at one noise level, with its target and loss."""

    RETURN_TYPES = ("LATENT", "LATENT", "FLOAT")
    RETURN_NAMES = ("gradient", "target", "loss")
    OUTPUT_TOOLTIPS = (
        "The gradient g, in the LATENT's space: latent - gradient is the latent one SGD step of size 1 would give.",
        "The target x0 - g (a latent: decode it to see where SDS pulls); for uniform weighting in mode sds this "
        "is the denoised prediction D.",
        "0.5 * mean(g^2) in the model's latent space (the SDS surrogate loss per element).")
    FUNCTION = "gradient"
    CATEGORY = CATEGORY
    DISPLAY_NAME = "DPM-Solver SDS Gradient"
    DESCRIPTION = ("Score distillation: noises the latent to sigma (x_t = alpha x0 + sigma eps), denoises it with "
                   "the model and CFG, and returns the weighted gradient lambda(sigma) (x0 - D) (mode sds; sdi with "
                   "an inverted eps; csd the guidance term only), its target x0 - g and the loss. No gradient "
                   "flows through the network.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return input_types(GRADIENT_WIDGETS)

    def gradient(self, model: Any, positive: Any, negative: Any, latent: dict[str, Any], **values: Any
                 ) -> tuple[dict[str, Any], dict[str, Any], float]:
        v = checked(self.DISPLAY_NAME, GRADIENT_WIDGETS, values)
        model_sampling = model_sampling_of_patcher(model)
        family = family_of_model_sampling(model_sampling)
        try:
            sigma = sds_sigma(model_sampling, family, v["percent"], v["sigma"])
        except InputError as err:
            raise InputError(f"{self.DISPLAY_NAME}: {err}") from None
        found: dict[str, torch.Tensor] = {}

        def work(denoiser: Any, x0: torch.Tensor, extra_args: dict[str, Any]) -> torch.Tensor:
            """One SGD step of size 1 at sigma is x0 - g: the target; the step's payload carries g."""
            schedule = family_of_denoiser(denoiser)
            recorder = None
            if v["mode"] == "csd":
                extra_args, recorder = with_guidance_hook(extra_args, denoiser)

            def step_done(payload: dict[str, Any]) -> None:
                if "grad" in payload:  # the optimisation step (not an inversion call of mode sdi)
                    found["grad"] = payload["grad"]

            return sds.sds_refine(denoiser, x0, [sigma], schedule, extra_args=extra_args, mode=v["mode"],
                                  weighting=v["weighting"], lr=1.0, optimizer="sgd", seed=v["seed"],
                                  guidance_parts=None if recorder is None else recorder.parts, callback=step_done)

        target = run_in_guider(model, positive, negative, v["cfg"], latent, v["seed"], work)
        grad = found["grad"]
        with torch.inference_mode():
            gradient = latent_difference_out(model, grad).to(target.device)
        return ({**latent, "samples": gradient}, {**latent, "samples": target}, float(sds.surrogate_loss(grad)))


class DPMSolverSDSRefine:
    """A latent refined by SDS: N optimiser steps with the noise level annealed from high to low."""

    RETURN_TYPES = ("LATENT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("latent", "loss", "loss_history")
    OUTPUT_IS_LIST = (False, False, True)
    OUTPUT_TOOLTIPS = (
        "The refined latent.",
        "The surrogate loss 0.5 * mean(g^2) of the last step.",
        "The surrogate loss of every step, as a list (one FLOAT per step).")
    FUNCTION = "refine"
    CATEGORY = CATEGORY
    DISPLAY_NAME = "DPM-Solver SDS Refine"
    DESCRIPTION = ("Refines a latent by score distillation: for each noise level of a schedule linear in percent "
                   "(start to end, or sigmas), inner_steps SGD or Adam steps along the SDS gradient lambda(sigma) "
                   "(x0 - D(alpha x0 + sigma eps, sigma)) with CFG (modes sds, csd, sdi; see the SDS Gradient "
                   "node). Each step is one model call; no gradient flows through the network.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return input_types(REFINE_WIDGETS)

    def refine(self, model: Any, positive: Any, negative: Any, latent: dict[str, Any], **values: Any
               ) -> tuple[dict[str, Any], float, list[float]]:
        v = checked(self.DISPLAY_NAME, REFINE_WIDGETS, values)
        model_sampling = model_sampling_of_patcher(model)
        family = family_of_model_sampling(model_sampling)
        try:
            grid = annealing_sigmas(model_sampling, family, v["steps"], v["start_percent"], v["end_percent"],
                                    v["start_sigma"], v["end_sigma"])
        except InputError as err:
            raise InputError(f"{self.DISPLAY_NAME}: {err}") from None
        import comfy.utils

        losses: list[torch.Tensor] = []
        bar = comfy.utils.ProgressBar(len(grid) * v["inner_steps"])

        def work(denoiser: Any, x0: torch.Tensor, extra_args: dict[str, Any]) -> torch.Tensor:
            schedule = family_of_denoiser(denoiser)
            recorder = None
            if v["mode"] == "csd":
                extra_args, recorder = with_guidance_hook(extra_args, denoiser)

            def model_call_done(payload: dict[str, Any]) -> None:
                bar.update_absolute(payload["nfe"], payload["total"])  # also where ComfyUI raises a user's Cancel
                if "loss" in payload:  # an optimisation step (not an inversion call of mode sdi)
                    losses.append(payload["loss"])

            return sds.sds_refine(
                denoiser, x0, grid, schedule, extra_args=extra_args, mode=v["mode"], weighting=v["weighting"],
                lr=v["lr"], optimizer=v["optimizer"], inner_steps=v["inner_steps"], grad_clip=v["grad_clip"],
                seed=v["seed"], guidance_parts=None if recorder is None else recorder.parts,
                callback=model_call_done)

        refined = run_in_guider(model, positive, negative, v["cfg"], latent, v["seed"], work)
        history = torch.stack(losses).tolist()  # one host transfer for the whole run (at least one step)
        log.info("%s: %d steps, loss %.4g -> %.4g", self.DISPLAY_NAME, len(history), history[0], history[-1])
        return ({**latent, "samples": refined}, history[-1], history)


SDS_NODES: dict[str, type] = {
    "DPMSolverSDSGradient": DPMSolverSDSGradient,
    "DPMSolverSDSRefine": DPMSolverSDSRefine,
}
"""node id -> class (ids are public: never rename)."""
