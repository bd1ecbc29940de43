"""Noise schedules in sigma space: x = alpha(sigma) * x0 + sigma * eps.

A schedule maps the host's sigma to the scale alpha and the half-log-SNR lambda = log(alpha / sigma),
and back. Every DPM-Solver update is written with (alpha, sigma, lambda), so one schedule object is
all a sampler needs to know about a model family. All values are Python floats (float64).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable


@runtime_checkable
class NoiseSchedule(Protocol):
    """The small interface a model family provides; implement it for families beyond VE and flow."""

    name: str
    sigma_max: float
    """Largest admissible sigma (inclusive); math.inf when unbounded."""

    def alpha(self, sigma: float) -> float:
        """Signal scale alpha(sigma) >= 0."""

    def lambda_(self, sigma: float) -> float:
        """Half-log-SNR log(alpha/sigma); +inf at sigma = 0, -inf where alpha = 0."""

    def sigma_at(self, lam: float) -> float:
        """Inverse of lambda_: the sigma whose half-log-SNR is lam."""


class VarianceExploding:
    """x = x0 + sigma*eps (SD1.x/SDXL eps and v models in k-diffusion scaling): alpha = 1, lambda = -log sigma."""

    name = "ve"
    sigma_max = math.inf

    def alpha(self, sigma: float) -> float:
        return 1.0

    def lambda_(self, sigma: float) -> float:
        return math.inf if sigma == 0.0 else -math.log(sigma)

    def sigma_at(self, lam: float) -> float:
        return math.exp(-lam)

    def __repr__(self) -> str:
        return "VarianceExploding()"


class RectifiedFlow:
    """x = (1-sigma)*x0 + sigma*eps (SD3, Flux, Wan): alpha = 1 - sigma, lambda = log((1-sigma)/sigma)."""

    name = "flow"
    sigma_max = 1.0

    def alpha(self, sigma: float) -> float:
        return 1.0 - sigma

    def lambda_(self, sigma: float) -> float:
        if sigma == 0.0:
            return math.inf
        if sigma == 1.0:
            return -math.inf
        return math.log1p(-sigma) - math.log(sigma)

    def sigma_at(self, lam: float) -> float:
        # sigma = 1 / (1 + e^lam), evaluated without overflow for either sign of lam.
        if lam >= 0:
            e = math.exp(-lam)
            return e / (1.0 + e)
        return 1.0 / (1.0 + math.exp(lam))

    def __repr__(self) -> str:
        return "RectifiedFlow()"


VE = VarianceExploding()
FLOW = RectifiedFlow()
_NAMED: dict[str, NoiseSchedule] = {"ve": VE, "flow": FLOW}


def resolve_schedule(schedule: str | NoiseSchedule) -> NoiseSchedule:
    """Return the schedule named by `schedule` ("ve" or "flow"), or check that an object implements it."""
    if isinstance(schedule, str):
        try:
            return _NAMED[schedule]
        except KeyError:
            raise ValueError(f"schedule must be 've', 'flow' or a NoiseSchedule object, got {schedule!r}") from None
    missing = [m for m in ("alpha", "lambda_", "sigma_at") if not callable(getattr(schedule, m, None))]
    if missing or not hasattr(schedule, "sigma_max"):
        what = ", ".join(missing + ([] if hasattr(schedule, "sigma_max") else ["sigma_max"]))
        raise ValueError(f"schedule object {schedule!r} lacks {what} (see samplers.schedules.NoiseSchedule)")
    return schedule
