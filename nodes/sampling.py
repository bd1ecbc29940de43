"""The sampler functions ComfyUI calls: the core's entries with the model family, seed and progress adapted.

ComfyUI calls `fn(model, x, sigmas, extra_args=None, callback=None, disable=None, **extra_options)` both
for the KSampler dropdown (`comfy.samplers.ksampler(name)` looks up `sample_<name>` in
`comfy.k_diffusion.sampling`) and for SAMPLER objects built by our nodes (`KSAMPLER(fn, options)`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from ..samplers import SamplerEntry, resolve_schedule
from .family import family_of_denoiser
from .sds_guidance import with_guidance_hook

log = logging.getLogger(__name__)

MARK = "__dpm_solver_samplers__"
"""Attribute naming the registry entry on every function made here (tells ours from other packs')."""

def progress_callback(callback: Callable[[dict[str, Any]], Any] | None, sigmas: list[float], schedule: Any
                      ) -> Callable[[dict[str, Any]], Any] | None:
    """Adapt the core's per-model-call callback to ComfyUI's, which reads payload["i"] as a step index
    against a total of len(sigmas) - 1 (`KSAMPLER.sample`).

    The core calls back after every model call with i = the call's index and total = the planned number of
    calls. With k calls per step the host bar would fill after 1/k of the run; instead "i" is rescaled so the
    bar advances with the model calls done (call c of N shows floor((c+1)*steps/N) of `steps`, at least 1)
    and reaches the end with the last call only. Adaptive samplers do not know their number of calls (total is
    None): their bar follows the half-log-SNR of the call's sigma between the grid's first and last nonzero sigma.
    Every call still goes through the host's callback: previews update and a Cancel (raised by ComfyUI's
    progress hook) stops the run at the next model call. The core's own index stays in payload["call"].
    """
    if callback is None:
        return None
    steps = len(sigmas) - 1
    sched = resolve_schedule(schedule)
    try:  # first and last finite half-log-SNR of the grid (flow grids start at sigma = 1, lambda = -inf)
        lams = [lam for lam in map(sched.lambda_, sigmas) if math.isfinite(lam)]  # sigma = 0: +inf
    except ValueError:  # a grid outside the schedule's range: the core reports it before any model call
        lams = []
    lam_ends = (lams[0], lams[-1]) if lams else None

    def position(payload: dict[str, Any]) -> int | None:
        total, call = payload.get("total"), payload.get("i")
        if not isinstance(call, int) or steps <= 0:
            return None
        if isinstance(total, int) and total > 0:
            if total == steps:
                return None
            return min(steps, max(1, (call + 1) * steps // total))
        sigma = payload.get("sigma")
        if total is not None or sigma is None or lam_ends is None:
            return None
        value = float(sigma.flatten()[0]) if isinstance(sigma, torch.Tensor) else float(sigma)
        lam_a, lam_b = lam_ends
        try:
            lam = sched.lambda_(value)
        except ValueError:
            return 1
        if lam_b <= lam_a:  # a single finite half-log-SNR in the grid
            return 1
        fraction = min(max((lam - lam_a) / (lam_b - lam_a), 0.0), 1.0)  # sigma = 0: lam = +inf, fraction 1
        return max(1, math.ceil(fraction * steps))

    def adapted(payload: dict[str, Any]) -> Any:
        done = position(payload)
        if done is not None:
            payload = {**payload, "i": max(done - 1, 0), "call": payload.get("i")}
        return callback(payload)

    return adapted


def _host_grid(sigmas: Any) -> list[float]:
    """The grid as floats for the progress mapping (one small transfer; the core reads the grid the same way)."""
    if isinstance(sigmas, torch.Tensor):
        return [float(v) for v in sigmas.flatten().tolist()] if sigmas.dim() == 1 else []
    return [float(v) for v in sigmas]


def make_sampler_function(entry: SamplerEntry) -> Callable[..., torch.Tensor]:
    """The ComfyUI sampler function for a core entry.

    - the model family ("ve" or "flow") comes from the model's model_sampling (ModelSamplingSD3 & co. included)
      unless `schedule` is given;
    - samplers that take a `seed` get ComfyUI's noise seed (extra_args["seed"]) unless one is given;
    - the callback is adapted so ComfyUI's progress bar counts model calls (see `progress_callback`);
    - extra_args (seed, model_options, denoise_mask) reach the model unchanged;
    - adaptive samplers (option `info`) log their model calls and accepted/rejected steps;
    - score distillation in mode csd (option `guidance_parts`) gets ComfyUI's conditional and unconditional
      predictions from a post-CFG hook (sds_guidance.with_guidance_hook).
    """

    def sample(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None = None,
               callback: Callable[[dict[str, Any]], Any] | None = None, disable: bool | None = None,
               **options: Any) -> torch.Tensor:
        extra_args = {} if extra_args is None else extra_args
        if options.get("schedule") is None:
            options["schedule"] = family_of_denoiser(model)
        if "seed" in entry.defaults and options.get("seed") is None and extra_args.get("seed") is not None:
            options["seed"] = extra_args["seed"]
        if ("guidance_parts" in entry.defaults and options.get("guidance_parts") is None
                and options.get("sds_mode", entry.defaults.get("sds_mode")) == "csd"):
            extra_args, recorder = with_guidance_hook(extra_args, model)
            options["guidance_parts"] = recorder.parts
        report = None
        if "info" in entry.defaults and options.get("info") is None:
            report = options["info"] = {}
        grid = _host_grid(sigmas) if callback is not None else []
        out = entry(model, x, sigmas, extra_args=extra_args,
                    callback=progress_callback(callback, grid, options["schedule"]), disable=disable, **options)
        if report:
            log.info("%s: %s", entry.label, ", ".join(f"{k} {v}" for k, v in report.items()
                                                    if isinstance(v, int | float | str)))
        return out

    sample.__name__ = f"sample_{entry.name}"
    sample.__qualname__ = sample.__name__
    sample.__doc__ = f"{entry.label}: {entry.description} (DPM-Solver samplers)."
    setattr(sample, MARK, entry.name)
    return sample
