"""Which noise schedule a ComfyUI model samples with: the VE form x = x0 + sigma*eps or rectified flow.

ComfyUI describes a model's sampling by a `model_sampling` object whose class mixes a sigma table
(`ModelSamplingDiscrete`, `ModelSamplingDiscreteFlow`, ...) with a prediction type from
`comfy.model_sampling`. The prediction type fixes how the sampler's state is noised:

- `EPS`, `V_PREDICTION`, `EDM`, `X0`, `IMG_TO_IMG` (all subclasses of `EPS`) and `COSMOS_RFLOW` noise as
  x = x0 + sigma*noise: the core's "ve" schedule (alpha = 1);
- `CONST` noises as x = (1 - sigma)*x0 + sigma*noise: the core's "flow" schedule.

Anything else is refused with an error naming the class, instead of sampling with the wrong weights.
"""

from __future__ import annotations

from typing import Any

import comfy.model_sampling as comfy_model_sampling

VE = "ve"
FLOW = "flow"


class UnsupportedModelFamily(ValueError):
    """The model's sampling type is neither of the VE form nor rectified flow."""


def _type_names(obj: Any) -> str:
    return ", ".join(cls.__name__ for cls in type(obj).__mro__ if cls is not object)


def family_of_model_sampling(model_sampling: Any) -> str:
    """'ve' or 'flow' for a ComfyUI model_sampling object; UnsupportedModelFamily otherwise."""
    const = getattr(comfy_model_sampling, "CONST", None)
    if const is not None and isinstance(model_sampling, const):
        return FLOW
    ve_types = tuple(t for t in (getattr(comfy_model_sampling, name, None) for name in ("EPS", "COSMOS_RFLOW"))
                     if t is not None)
    if ve_types and isinstance(model_sampling, ve_types):
        return VE
    raise UnsupportedModelFamily(
        f"DPM-Solver samplers do not know this model's sampling type ({_type_names(model_sampling)}): "
        "supported are the eps/v/x0/EDM predictions (x = x0 + sigma*noise) and CONST (rectified flow: SD3, "
        "Flux, ...)"
    )


def model_sampling_of_patcher(model_patcher: Any) -> Any:
    """The (possibly patched, e.g. by ModelSamplingSD3) model_sampling of a ModelPatcher (a MODEL input)."""
    getter = getattr(model_patcher, "get_model_object", None)
    if callable(getter):
        return getter("model_sampling")
    inner = getattr(model_patcher, "model", None)
    found = getattr(inner, "model_sampling", None)
    if found is None:
        raise UnsupportedModelFamily(f"cannot find the model_sampling of {type(model_patcher).__name__}")
    return found


def model_sampling_of_denoiser(model: Any) -> Any:
    """The model_sampling behind the denoiser ComfyUI hands a sampler function.

    That denoiser is `KSamplerX0Inpaint`, whose `inner_model` is the guider (CFGGuider), which holds the
    `model_patcher`; the patcher reports object patches such as ModelSamplingSD3's.
    """
    guider = getattr(model, "inner_model", None)
    patcher = getattr(guider, "model_patcher", None)
    if patcher is not None:
        return model_sampling_of_patcher(patcher)
    base = getattr(guider, "inner_model", None)
    found = getattr(base, "model_sampling", None)
    if found is None:
        raise UnsupportedModelFamily(
            "DPM-Solver samplers could not find the model's model_sampling (expected "
            "model.inner_model.model_patcher from ComfyUI's KSAMPLER)"
        )
    return found


def family_of_denoiser(model: Any) -> str:
    """'ve' or 'flow' for the denoiser ComfyUI passes to a sampler function."""
    return family_of_model_sampling(model_sampling_of_denoiser(model))
