"""DPM-Solver samplers in sigma space, host-agnostic (torch only).

Every entry of SAMPLERS is called k-diffusion style: `SAMPLERS[name](model, x, sigmas, extra_args=None,
callback=None, disable=None, **options)` with `model(x, sigma[B], **extra_args) -> x0 estimate`.
"""

from .adaptive import AdaptiveStepLimit, ModelCallsUnknown
from .driver import ModelOutputError, NonFiniteInput, NonFiniteModelOutput, NonFiniteResult
from .noise import SeededNoise, initial_noise
from .registry import SAMPLERS, SamplerEntry
from .schedules import FLOW, VE, NoiseSchedule, RectifiedFlow, VarianceExploding, resolve_schedule

__all__ = [
    "FLOW",
    "SAMPLERS",
    "VE",
    "AdaptiveStepLimit",
    "ModelCallsUnknown",
    "ModelOutputError",
    "NoiseSchedule",
    "NonFiniteInput",
    "NonFiniteModelOutput",
    "NonFiniteResult",
    "RectifiedFlow",
    "SamplerEntry",
    "SeededNoise",
    "VarianceExploding",
    "initial_noise",
    "resolve_schedule",
]
