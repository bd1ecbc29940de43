"""Is the WebUI's current model a rectified-flow model (x = (1-sigma)*x0 + sigma*eps)? Per fork:

- lllyasviel Forge and Forge Classic/Neo: the k-diffusion wrapper is `k_diffusion.external.ForgeScheduleLinker`
  around `sd_model.forge_objects.unet.model.predictor`; flow predictors (`PredictionDiscreteFlow`,
  `PredictionFlux` in `backend/modules/k_prediction.py`) have `prediction_type == "const"`.
- reForge: flow sampling comes from ComfyUI-style `model_sampling` objects (`ldm_patched/modules/model_sampling.py`,
  class `CONST`), reached as `forge_objects.unet.get_model_object("model_sampling")` or as the `model_sampling`
  of the denoiser its advanced-model-sampling extension installs (`FlowMatchingDenoiser`).
- A1111 1.10 (SD3): `SD3Denoiser` wraps `SD3Inferencer`, whose `model.model_sampling` is a
  `ModelSamplingDiscreteFlow` (`modules/models/sd3/sd3_impls.py`).
- Anything else: a sigma table topping out at 1 (flow) rather than ~14.6 or more (VE/VP models).

Only attributes are read; no WebUI module is imported (the core's sigmas module gives the tolerance above 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from .core import load_submodule

Family = Literal["ve", "flow"]

_FLOW_CLASS_WORDS = ("CONST", "ModelSamplingDiscreteFlow", "ModelSamplingFlux", "PredictionDiscreteFlow",
                     "PredictionFlux", "RectifiedFlow")


def _candidates(denoiser: Any) -> Iterator[Any]:
    """Objects that may carry the model family: the denoiser, its predictor and model_sampling, the model's."""
    inner = getattr(denoiser, "inner_model", None)
    for owner in (denoiser, inner, getattr(inner, "model", None)):
        if owner is None:
            continue
        for attr in ("predictor", "model_sampling"):
            try:
                found = getattr(owner, attr, None)
            except Exception:  # properties of host objects may raise; they just do not tell the family
                found = None
            if found is not None:
                yield found
    unet = getattr(getattr(inner, "forge_objects", None), "unet", None)
    if unet is not None:
        getter = getattr(unet, "get_model_object", None)
        if callable(getter):
            try:
                found = getter("model_sampling")
            except Exception:
                found = None
            if found is not None:
                yield found
        model = getattr(unet, "model", None)
        for attr in ("predictor", "model_sampling"):
            found = getattr(model, attr, None)
            if found is not None:
                yield found


def _says_flow(obj: Any) -> bool | None:
    """True/False when `obj` tells the family, None when it does not."""
    prediction = getattr(obj, "prediction_type", None)
    if isinstance(prediction, str):
        return prediction.lower() == "const"
    names = [cls.__name__ for cls in type(obj).__mro__]
    if any(word in names for word in _FLOW_CLASS_WORDS):
        return True
    if any(word in names for word in ("EPS", "V_PREDICTION", "EDM", "Prediction", "ModelSamplingDiscrete")):
        return False
    return None


def _sigma_table_max(denoiser: Any) -> float | None:
    try:
        sigmas = getattr(denoiser, "sigmas", None)
        if sigmas is None:
            return None
        return float(sigmas.max())
    except Exception:
        return None


def _top_slack() -> float:
    """The core's TOP_SLACK: a sigma at most 1 + this is still read as a flow grid's top of 1."""
    return load_submodule("sigmas").TOP_SLACK


def model_family(denoiser: Any) -> Family:
    """'flow' or 've' for a WebUI k-diffusion denoiser (`model_wrap`), defaulting to 've'."""
    for candidate in _candidates(denoiser):
        verdict = _says_flow(candidate)
        if verdict is not None:
            return "flow" if verdict else "ve"
    top = _sigma_table_max(denoiser)
    if top is not None and 0.0 < top <= 1.0 + _top_slack():
        return "flow"
    return "ve"


def sampler_family(cfg_denoiser: Any, first_sigma: float) -> Family:
    """The family to sample in, from the CFG denoiser the WebUI hands the sampler function.

    A grid starting above 1 cannot be a flow grid, whatever the model says: 've' then; a rounding error above 1
    (the core's TOP_SLACK, which reads such a sigma as 1) is still a flow grid.
    """
    if first_sigma > 1.0 + _top_slack():
        return "ve"
    return model_family(getattr(cfg_denoiser, "inner_model", cfg_denoiser))
