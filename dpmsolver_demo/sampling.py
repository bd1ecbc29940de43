"""Shared by the demo and the benchmark: grids, NFE fitting, converged references and seeded noise for the
demo models (everything here works on any `DemoModel`-like object with `schedule`, `sigma_min`, `sigma_max`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from samplers import SAMPLERS, grids
from samplers.bench.chain import ChainedReference
from samplers.bench.measure import ATOL_PER_RTOL, RTOL_LADDER, fit_intervals, is_adaptive
from samplers.registry import SamplerEntry
from samplers.schedules import resolve_schedule

from .wrappers import FLOW_SHIFT

REFERENCE_SAMPLER = "dpm_solver_pp_3s"
REFERENCE_OPTIONS = {"solver_type": "taylor"}
REFERENCE_H = 0.04
"""Step of the converged reference in half-log-SNR lambda (third-order singlestep: error ~ h^3)."""
FLOW_LAMBDA_START = -9.0
"""The reference's first step from flow sigma = 1 (lambda = -inf) lands at lambda = -9 (alpha ~ 1.2e-4), where
the first-order step's error (~alpha^2) is negligible."""
ADAPTIVE_RTOLS = RTOL_LADDER
"""The tolerances an adaptive run at a budget tries, the benchmark's, loosest first (the first one over budget ends
the search)."""
ADAPTIVE_SPAN_STEPS = 20
"""An adaptive run spans the demo's 20-interval grid (its ends only: the solver picks its own steps)."""


def grid_name(schedule: str) -> str:
    return "Karras (rho 7)" if schedule == "ve" else "ComfyUI 'simple', shift 3"


def make_grid(model: Any, n: int) -> torch.Tensor:
    """The n-interval grid the demo uses for `model`, as a host would: Karras from sigma_max to sigma_min then 0
    for the SD-style model; ComfyUI's "simple" grid on the shift-3 flow table (from sigma = 1, then 0) for the
    flow model, whose last nonzero sigma depends on n (shift(1/n))."""
    if model.schedule == "ve":
        return grids.karras(n, model.sigma_min, model.sigma_max)
    return grids.flow_simple(n, shift=FLOW_SHIFT)


def initial_noise(model: Any, count: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """x at sigmas[0]: sigma_max * N(0, I) for SD models (as hosts start), N(0, I) at sigma = 1 for flow."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, 1, 8, 8, generator=g, dtype=torch.float64)
    return (z * (model.sigma_max if model.schedule == "ve" else 1.0)).to(dtype)


def sampler_options(entry: SamplerEntry, schedule: str, seed: int) -> dict[str, Any]:
    """The options the demo passes: the model family, and for stochastic samplers that accept it the seed."""
    opts: dict[str, Any] = {"schedule": schedule}
    if getattr(entry, "stochastic", False) and "seed" in entry.defaults:
        opts["seed"] = seed
    return opts


def fit_steps(entry: SamplerEntry, grid: Callable[[int], torch.Tensor], budget: int, **options: Any) -> int | None:
    """Largest number of intervals whose exact model-call count fits `budget` (None if none does)."""
    return fit_intervals(lambda n: entry.count_model_calls(grid(n), **options), budget)


@dataclass
class Run:
    """One sampler run at an NFE budget: the grid's intervals (accepted steps for adaptive samplers), the model
    calls actually made, the output, the grid it ran on (its reference ends where this grid ends) and for adaptive
    samplers the tolerance used."""

    budget: int
    n_steps: int
    nfe: int
    out: torch.Tensor
    sigmas: torch.Tensor
    rtol: float | None = None


class CountingModel:
    """Wraps a model and counts its calls (the demo reports what was really spent)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        self.calls += 1
        return self.model(x, sigma, **extra)


def run_at_budget(entry: SamplerEntry, model: Any, x: torch.Tensor, budget: int, seed: int = 0) -> Run | None:
    """Run `entry` with the most model calls that fit `budget` (None when nothing fits). Grid samplers: the
    largest grid that fits; adaptive samplers: the tolerance from ADAPTIVE_RTOLS spending the most calls."""
    opts = sampler_options(entry, model.schedule, seed)
    if is_adaptive(entry):
        best: Run | None = None
        sigmas = make_grid(model, ADAPTIVE_SPAN_STEPS)
        for rtol in ADAPTIVE_RTOLS:
            counter = CountingModel(model)
            info: dict[str, Any] = {}
            try:
                with torch.no_grad():
                    out = entry(counter, x.clone(), sigmas, disable=True, rtol=rtol, atol=rtol * ATOL_PER_RTOL,
                                max_nfe=budget, info=info, **opts)
            except Exception:  # over budget (max_nfe) or failed: try no tighter tolerance
                break
            if counter.calls <= budget and (best is None or counter.calls > best.nfe):
                best = Run(budget, int(info.get("accepted", 0)), counter.calls, out, sigmas, rtol)
        return best
    n = fit_steps(entry, lambda k: make_grid(model, k), budget, **opts)
    if n is None:
        return None
    sigmas, counter = make_grid(model, n), CountingModel(model)
    with torch.no_grad():
        out = entry(counter, x.clone(), sigmas, disable=True, **opts)
    return Run(budget, n, counter.calls, out, sigmas)


class ConvergedReference(ChainedReference):
    """The exact sampling ODE from one batch of initial noises, to any grid's end, to within ~1e-10 MSE.

    What an exact solver returns on a grid ending ..., sigma_last, 0 is the ODE solution at sigma_last followed by
    the final denoise D(x, sigma_last) that every sampler's last step reduces to. The ODE is integrated by
    DPM-Solver++ 3S (taylor, third order, no history) on a grid uniform in lambda with steps of at most `h`,
    chained: each new sigma starts from the nearest state already computed above it, so the references of all
    step counts cost one fine solve. (The flow model's first step, from sigma = 1, lands at lambda = -9.)"""

    def __init__(self, model: Any, x: torch.Tensor, h: float = REFERENCE_H) -> None:
        self.model = model
        self.schedule = resolve_schedule(model.schedule)
        self.h = h
        super().__init__(1.0 if model.schedule == "flow" else float(model.sigma_max), x.clone())
        self.model_calls = 0

    def _segment(self, s: float, t: float) -> torch.Tensor:
        lam_s, lam_t = self.schedule.lambda_(s), self.schedule.lambda_(t)
        head = []
        if math.isinf(lam_s):
            head, lam_s = [s], min(FLOW_LAMBDA_START, lam_t - self.h)
        n = max(1, math.ceil((lam_t - lam_s) / self.h))
        body = [self.schedule.sigma_at(lam_s + (lam_t - lam_s) * i / n) for i in range(n)] + [t]
        return torch.tensor(head + body, dtype=torch.float64)

    def solve(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        counter = CountingModel(self.model)
        with torch.no_grad():
            out = SAMPLERS[REFERENCE_SAMPLER](counter, x.clone(), self._segment(sigma_from, sigma_to), disable=True,
                                              schedule=self.model.schedule, **REFERENCE_OPTIONS)
        self.model_calls += counter.calls
        return out

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.model_calls += 1
        return self.model(x, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device))


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    value = float(((a.to(torch.float64) - b.to(torch.float64)) ** 2).mean())
    return value if math.isfinite(value) else math.inf
