"""Nodes that output SIGMAS from the model's own model_sampling (both families): see schedules.py."""

from __future__ import annotations

from typing import Any

from .family import family_of_model_sampling, model_sampling_of_patcher
from .schedules import SPACINGS, ScheduleError, fast_sigmas, schedule_sigmas

CATEGORY = "sampling/custom_sampling/schedulers/DPM-Solver"

_MODEL_TIP = "The model whose own noise schedule (model_sampling, including ModelSamplingSD3/Flux patches) is used."
_SPACING_TIP = (
    "logSNR uniform: equal steps in half-log-SNR (the DPM-Solver default; for SD1.x/SDXL the same as "
    "'exponential'). time uniform: equal steps in the model's time (its training timesteps; for flow models "
    "the time before the shift). time quadratic: equal steps in the square root of the time (DPM-Solver's "
    "time_quadratic), denser near the end.")
_DENOISE_TIP = ("Fraction of the schedule to run, like BasicScheduler: the grid for steps/denoise steps is built "
                "and its last steps are kept (img2img). 0 gives an empty schedule.")


class DPMSolverScheduler:
    """SIGMAS uniform in half-log-SNR, or uniform/quadratic in the model's time."""

    RETURN_TYPES = ("SIGMAS",)
    RETURN_NAMES = ("sigmas",)
    OUTPUT_TOOLTIPS = ("steps + 1 descending sigmas ending in 0.",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Sigma schedules of the DPM-Solver papers, computed from the model's own noise schedule for "
                   "SD1.x/SDXL-style and rectified-flow (SD3, Flux) models alike.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL", {"tooltip": _MODEL_TIP}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                              "tooltip": "Number of steps (the last one is the final denoise to sigma = 0)."}),
            "spacing": (list(SPACINGS), {"default": SPACINGS[0], "tooltip": _SPACING_TIP}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": _DENOISE_TIP}),
        }}

    def get_sigmas(self, model: Any, steps: int, spacing: str, denoise: float) -> tuple[Any]:
        model_sampling = model_sampling_of_patcher(model)
        family = family_of_model_sampling(model_sampling)
        try:
            return (schedule_sigmas(model_sampling, family, steps, spacing, denoise),)
        except ScheduleError as err:
            raise ScheduleError(f"DPM-Solver Scheduler: {err}") from None


class DPMSolverFastScheduler:
    """The DPM-Solver-fast grid for a budget of model calls, for the DPM-Solver-fast sampler."""

    RETURN_TYPES = ("SIGMAS",)
    RETURN_NAMES = ("sigmas",)
    OUTPUT_TOOLTIPS = ("steps + 1 sigmas ending in 0, laid out for DPM-Solver-fast (one model call each).",)
    FUNCTION = "get_sigmas"
    CATEGORY = CATEGORY
    DESCRIPTION = ("DPM-Solver-fast's grid for a budget of model calls: steps of order 3, ..., 3, 2, 1 whose ends "
                   "follow the spacing and whose intermediate model calls sit at 1/3 and 2/3 (or 1/2) of each "
                   "step in half-log-SNR, as in the DPM-Solver paper. Use with the DPM-Solver-fast sampler (node "
                   "or dpm_solver_fast); any other sampler treats it as an ordinary grid.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL", {"tooltip": _MODEL_TIP}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                              "tooltip": "The budget of model calls (number of intervals of the grid; the last "
                                         "one is the final denoise)."}),
            "spacing": (list(SPACINGS), {"default": SPACINGS[0], "tooltip": "How the ends of the solver steps are "
                                         "spaced. " + _SPACING_TIP}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": _DENOISE_TIP}),
        }}

    def get_sigmas(self, model: Any, steps: int, spacing: str, denoise: float) -> tuple[Any]:
        model_sampling = model_sampling_of_patcher(model)
        family = family_of_model_sampling(model_sampling)
        try:
            return (fast_sigmas(model_sampling, family, steps, spacing, denoise),)
        except ScheduleError as err:
            raise ScheduleError(f"DPM-Solver-fast Scheduler: {err}") from None


SCHEDULER_CLASSES: dict[str, type] = {
    "DPMSolverScheduler": DPMSolverScheduler,
    "DPMSolverFastScheduler": DPMSolverFastScheduler,
}
