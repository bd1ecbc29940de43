"""The k-diffusion style function the WebUI's `KDiffusionSampler` runs for one registry entry.

`KDiffusionSampler.sample*` inspects the function's signature: it passes `sigmas` when there is a `sigmas`
parameter, `eta`/`n`/`sigma_min`/`sigma_max`/`sigma_sched` when those exist (so none of them may appear
here), and `noise_sampler` when the sampler's options say `brownian_noise` (its `create_noise_sampler` builds
a Brownian tree from the per-image seeds `p.all_seeds`). The CFG denoiser it passes as `model` carries the
processing object as `model.p` (set in `Sampler.initialize`) and the k-diffusion wrapper as
`model.inner_model`.

Per call this function: takes the user's explicit options from `p` (set by the accordion script), keeps the
ones the entry accepts, adds `schedule="flow"` on flow models, the WebUI's noise sampler (or the batch seed)
for entries that take one (stochastic samplers; score distillation with fresh noise, whose noise is then seeded
per image like theirs), and reports progress to the WebUI once per sigma interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .controls import explicit_options, options_for_entry
from .flow import sampler_family

OPTIONS_ATTR = "dpmsolver_ext_options"
"""Attribute of the processing object holding the explicit options chosen for this job (a dict), or the
ValueError that resolving them raised."""

SamplerFunction = Callable[..., torch.Tensor]


def job_options(p: Any) -> dict[str, Any]:
    """Explicit options for this job: set on `p` by the script, else read from the settings. Raises the
    ValueError the script met resolving them (the WebUI logged it and went on)."""
    chosen = getattr(p, OPTIONS_ATTR, None) if p is not None else None
    if isinstance(chosen, ValueError):
        raise ValueError(str(chosen))
    if isinstance(chosen, dict):
        return chosen
    try:
        from modules import shared  # WebUI only

        return explicit_options({}, shared.opts.data)
    except ImportError:
        return {}


def batch_seed(p: Any, batch: int) -> int | list[int] | None:
    """The seeds of the current batch for entries without a WebUI noise sampler: the per-image seeds (p.seeds, one
    per image: variation seeds repeat one, and an image made alone then gets its own noise), else the first
    image's seed (image b on seed + b)."""
    seeds = getattr(p, "seeds", None)
    if seeds and len(seeds) == batch:
        return [int(s) for s in seeds]
    if seeds:
        return int(seeds[0])
    all_seeds = getattr(p, "all_seeds", None)
    if not all_seeds:
        return None
    start = int(getattr(p, "iteration", 0)) * int(getattr(p, "batch_size", 1))
    return int(all_seeds[min(start, len(all_seeds) - 1)])


def progress_callback(callback: Callable[[dict[str, Any]], Any] | None, intervals: int
                      ) -> Callable[[dict[str, Any]], Any] | None:
    """Adapt the core's per-model-call callback to the WebUI's per-step one.

    The WebUI advances its progress bar once per callback and compares `i` with the step count; singlestep
    samplers make k calls per step, so `i` becomes the sigma interval the call belongs to (scaled from the
    call count), and repeated values are dropped.
    """
    if callback is None:
        return None
    last = -1

    def report(info: dict[str, Any]) -> Any:
        nonlocal last
        total, nfe = info.get("total"), info.get("nfe")
        if total and nfe and intervals > 0:
            step = min(intervals - 1, (int(nfe) - 1) * intervals // int(total))
        else:
            step = int(info["i"])
        if step == last:
            return None
        last = step
        return callback({**info, "i": step})

    return report


def make_sampler_function(entry: Any) -> SamplerFunction:
    """The function for `KDiffusionSampler(fn, sd_model)`; `entry` is a core `SamplerEntry`."""

    def sample_dpmsolver(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None = None,
                         callback: Callable[[dict[str, Any]], Any] | None = None, disable: bool | None = None,
                         noise_sampler: Any = None) -> torch.Tensor:
        p = getattr(model, "p", None)
        accepted = entry.defaults
        options = options_for_entry(job_options(p), accepted)
        first = float(sigmas[0]) if len(sigmas) else 0.0
        if "schedule" in accepted and sampler_family(model, first) == "flow":
            options["schedule"] = "flow"
        if noise_sampler is not None and "noise_sampler" in accepted:
            options["noise_sampler"] = noise_sampler
        elif "seed" in accepted and "seed" not in options:  # also non-stochastic entries with a noisy option
            seed = batch_seed(p, x.shape[0])
            if seed is not None:
                options["seed"] = seed
        intervals = max(len(sigmas) - 1, 0)
        return entry(model, x, sigmas, extra_args=extra_args, callback=progress_callback(callback, intervals),
                     disable=disable, **options)

    sample_dpmsolver.__name__ = f"sample_{entry.name}"
    sample_dpmsolver.__qualname__ = sample_dpmsolver.__name__
    sample_dpmsolver.__doc__ = f"{entry.label}: {entry.description}"
    return sample_dpmsolver
