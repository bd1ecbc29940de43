"""Put every core sampler into ComfyUI's sampler dropdowns (KSampler, KSamplerAdvanced, KSamplerSelect).

ComfyUI builds a KSAMPLER for a dropdown name with `getattr(comfy.k_diffusion.sampling, "sample_" + name)`,
and its nodes read the names from lists created once at import:

- `comfy.samplers.SAMPLER_NAMES`, the very list object `KSampler.SAMPLERS` refers to (KSampler and
  KSamplerAdvanced), which KSamplerSelect also reads;
- `comfy.samplers.KSAMPLER_NAMES`, a separate list of the k-diffusion-style names, read by other packs.

The names are appended to those lists in place (other packs hold references to them: never rebind), once,
and the functions are set on the k-diffusion module. Registering again replaces our functions and appends
nothing. A name some other code already uses is left alone and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from ..samplers import SamplerEntry
from .sampling import MARK, make_sampler_function

log = logging.getLogger(__name__)


def _dropdown_lists(comfy_samplers: ModuleType) -> list[list[str]]:
    """The distinct list objects holding sampler names (by identity: several names may alias one list)."""
    candidates: Iterable[Any] = (
        getattr(comfy_samplers, "SAMPLER_NAMES", None),
        getattr(getattr(comfy_samplers, "KSampler", None), "SAMPLERS", None),
        getattr(comfy_samplers, "KSAMPLER_NAMES", None),
    )
    found: list[list[str]] = []
    for candidate in candidates:
        if isinstance(candidate, list) and not any(candidate is seen for seen in found):
            found.append(candidate)
    return found


def _is_ours(function: Any, name: str) -> bool:
    return getattr(function, MARK, None) == name


def register_samplers(comfy_samplers: ModuleType, k_sampling: ModuleType,
                      registry: Mapping[str, SamplerEntry]) -> list[str]:
    """Register every registry entry under its own name; returns the names now served by this package."""
    lists = _dropdown_lists(comfy_samplers)
    if not lists:
        raise RuntimeError("comfy.samplers has no SAMPLER_NAMES list: this ComfyUI version is not supported")
    served: list[str] = []
    for name, entry in registry.items():
        attribute = f"sample_{name}"
        existing = getattr(k_sampling, attribute, None)
        if existing is not None and not _is_ours(existing, name):
            log.warning("DPM-Solver samplers: %s already exists in ComfyUI (%r); not replacing it", name, existing)
            continue
        if existing is None and any(name in names for names in lists):
            log.warning("DPM-Solver samplers: the sampler name %s is already taken; not registering it", name)
            continue
        setattr(k_sampling, attribute, make_sampler_function(entry))
        for names in lists:
            if name not in names:
                names.append(name)
        served.append(name)
    return served
