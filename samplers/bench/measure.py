"""Errors of a sampler against the exact ODE solution on a benchmark case, at a given grid or NFE budget.

The reference for a grid ending at 0 is the exact ODE solution (DOP853, tolerance 1e-12) to the grid's
last nonzero sigma followed by the same final denoise D(x, sigma_last) every sampler ends with; so the
error measures the solver, not the grid's truncation at sigma_min. References are cached per sigma_last
and chained: a new one starts from the nearest cached state above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from ..options import OPTIONS
from ..registry import SamplerEntry
from .cases import Case
from .chain import ChainedReference
from .problems import reference_solution

DTYPE = torch.float64
R = TypeVar("R")

OVERSHOOT = 3
ADAPTIVE_GRID = 20
"""Adaptive samplers run on the case's 20-interval grid: only its first, second (flow from sigma = 1) and last
nonzero sigma matter to them."""
RTOL_LADDER = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001, 5e-4, 2e-4, 1e-4)
QUICK_LADDER = (0.5, 0.1, 0.05, 0.01, 0.001)
"""Tolerances an adaptive sampler is run at (atol = rtol * ATOL_PER_RTOL, the ratio of the defaults)."""
ATOL_PER_RTOL = OPTIONS["atol"].default / OPTIONS["rtol"].default


def fit_intervals(count: Callable[[int], int], budget: int) -> int | None:
    """Largest n in 1..budget with count(n) <= budget model calls (None if none).

    Counts grow with n (every interval costs at least one call, so n <= budget); the scan stops after
    OVERSHOOT consecutive grids over budget, which tolerates small non-monotonic steps (e.g. where
    lower_order_final='auto' switches off) without building every plan up to n = budget.
    """
    best, over = None, 0
    for n in range(1, budget + 1):
        if count(n) <= budget:
            best, over = n, 0
        else:
            over += 1
            if over >= OVERSHOOT:
                break
    return best


def budget_rank(n_steps: int, nfe: int, rmse: float | None, adaptive: bool, budget: int
                ) -> tuple[int, int, float] | None:
    """Where a run ranks among a sampler's runs at an NFE budget (the highest rank is the one a table shows), None
    when it does not count there: over the budget, or an adaptive run that failed. Grid runs rank by grid size (the
    largest that fits, even if it failed: the table shows the failure); adaptive runs by model calls, then by the
    smaller RMSE."""
    failed = rmse is None or not math.isfinite(rmse)
    if nfe > budget or (adaptive and failed):
        return None
    return (nfe if adaptive else n_steps, nfe, -math.inf if failed else -rmse)


def pick_at_budget(runs: Iterable[R], budget: int, describe: Callable[[R], tuple[int, int, float | None, bool]]
                   ) -> R | None:
    """The run a table shows at `budget`: the highest budget_rank of describe(run) = (n_steps, nfe, rmse,
    adaptive), the first of equals; None when no run counts."""
    ranked = [(rank, run) for run in runs if (rank := budget_rank(*describe(run), budget)) is not None]
    return max(ranked, key=lambda pair: pair[0])[1] if ranked else None


def _rmse_and_per_sample(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(RMSE over everything, each sample's RMS error) of `out` against `ref`, in float64."""
    squared = ((out.to(DTYPE) - ref) ** 2).reshape(out.shape[0], -1)
    return float(squared.mean().sqrt()), squared.mean(1).sqrt()


def measured(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, tuple[float, ...], str | None]:
    """(RMSE over everything, median over samples of each sample's RMS error, those per-sample errors, failure);
    the per-sample errors, paired across samplers run from the same noises, give the comparison's bootstrap
    intervals. (inf, inf, (), "non-finite output") where the output is not finite."""
    rmse, per_sample = _rmse_and_per_sample(out, ref)
    if not math.isfinite(rmse):
        return math.inf, math.inf, (), "non-finite output"
    return rmse, float(per_sample.median()), tuple(per_sample.tolist()), None


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(RMSE, median per-sample error) as `measured` computes them, without the per-sample list; inf when not
    finite."""
    rmse, per_sample = _rmse_and_per_sample(out, ref)
    return (rmse, float(per_sample.median())) if math.isfinite(rmse) else (math.inf, math.inf)


def is_adaptive(entry: SamplerEntry) -> bool:
    """Entries that choose their own steps (their model calls are known only after a run)."""
    return entry.spec is not None and entry.spec.structure == "adaptive"


@dataclass(frozen=True)
class Measurement:
    """One sampler run: grid intervals, actual model calls, RMSE and RMSE / data std (inf on failure).

    `median_err` is the median over samples of each sample's RMS error: RMSE on these mixtures is often
    dominated by the one or two trajectories that start near a boundary between components (where the flow
    is most sensitive), the median shows the typical sample.
    """

    n_steps: int
    nfe: int
    rmse: float
    rel_rmse: float
    median_err: float = math.inf
    error: str | None = None
    rtol: float | None = None
    """Adaptive samplers: the tolerance of the run (n_steps then counts accepted steps)."""
    rejected: int | None = None
    sample_errors: tuple[float, ...] = field(default=(), repr=False)
    """Each sample's RMS error (from `measured`; empty on failure); not part of as_dict."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_steps": self.n_steps, "nfe": self.nfe, "rmse": _json_float(self.rmse),
                               "rel_rmse": _json_float(self.rel_rmse), "median_err": _json_float(self.median_err)}
        if self.error is not None:
            out["error"] = self.error
        if self.rtol is not None:
            out["rtol"] = self.rtol
            out["rejected"] = self.rejected
        return out


def _json_float(v: float) -> float | None:
    return v if math.isfinite(v) else None


class References(ChainedReference):
    """Exact flow of the case's initial batch (DOP853), cached by sigma (descending chain from sigma_max)."""

    def __init__(self, case: Case, x0: torch.Tensor) -> None:
        super().__init__(case.problem.sigma_max, x0)
        self.case = case
        self.ode_solves = 0

    def solve(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        self.ode_solves += 1
        return reference_solution(self.case.problem.model, x, sigma_from, sigma_to)

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.case.problem.model(x, torch.full((x.shape[0],), sigma, dtype=x.dtype)).to(DTYPE)


class CaseRunner:
    """Runs samplers on one case with a fixed float64 batch of initial noises and measures their error."""

    def __init__(self, case: Case, n_samples: int, rtols: tuple[float, ...] = RTOL_LADDER) -> None:
        self.case = case
        self.rtols = rtols
        self.x0 = case.problem.prior_noise(n_samples, dtype=DTYPE)
        self.refs = References(case, self.x0)
        self.data_std = case.data_std
        self._counts: dict[tuple[str, int, tuple[Any, ...]], int] = {}
        self._runs: dict[tuple[str, int, tuple[Any, ...]], Measurement] = {}

    def sigma_last(self, n: int) -> float:
        """The last nonzero sigma of the n-interval grid (where the final denoise happens)."""
        values = [v for v in self.case.grid(n).tolist() if v > 0]
        return values[-1]

    def options(self, entry: SamplerEntry, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The case's schedule plus `options` (each must be accepted by the sampler)."""
        opts = {"schedule": self.case.schedule, **(options or {})}
        unknown = set(opts) - set(entry.defaults)
        if unknown:
            raise ValueError(f"{entry.name} does not accept {sorted(unknown)}")
        return opts

    @staticmethod
    def _key(entry: SamplerEntry, n: int, options: Mapping[str, Any] | None) -> tuple[str, int, tuple[Any, ...]]:
        """Cache key; options equal to the sampler's defaults are dropped, so they share the default run."""
        given = {k: v for k, v in (options or {}).items() if k not in entry.defaults or entry.defaults[k] != v}
        return entry.name, n, tuple(sorted(given.items()))

    def count(self, entry: SamplerEntry, n: int, options: Mapping[str, Any] | None = None) -> int:
        """Model calls of `entry` on the n-interval grid (cached; runs no model)."""
        key = self._key(entry, n, options)
        if key not in self._counts:
            self._counts[key] = entry.count_model_calls(self.case.grid(n), **self.options(entry, options))
        return self._counts[key]

    def fit(self, entry: SamplerEntry, budget: int, options: Mapping[str, Any] | None = None) -> int | None:
        """Largest number of intervals whose model calls fit in `budget` (None if not even one interval)."""
        return fit_intervals(lambda n: self.count(entry, n, options), budget)

    def run(self, entry: SamplerEntry, n: int, options: Mapping[str, Any] | None = None) -> Measurement:
        """Sample on the n-interval grid and compare with the reference of the same grid (cached)."""
        key = self._key(entry, n, options)
        if key in self._runs:
            return self._runs[key]
        sigmas = self.case.grid(n)
        nfe = self.count(entry, n, options)
        try:
            with torch.no_grad():
                out = entry(self.case.problem.model, self.x0.clone(), sigmas, disable=True,
                            **self.options(entry, options))
            rmse, median, per_sample, error = measured(out, self.refs.target(sigmas))
        except Exception as exc:  # a failing sampler is reported, not fatal to the benchmark
            rmse, median, per_sample, error = math.inf, math.inf, (), f"{type(exc).__name__}: {exc}"
        result = Measurement(n, nfe, rmse, rmse / self.data_std, median, error, sample_errors=per_sample)
        self._runs[key] = result
        return result

    def at_budget(self, entry: SamplerEntry, budget: int, options: Mapping[str, Any] | None = None
                  ) -> Measurement | None:
        """Run with the most intervals that fit the NFE budget (None when nothing fits). Adaptive samplers:
        the tolerance of RTOL_LADDER whose run used the most model calls within the budget."""
        if is_adaptive(entry):
            return pick_at_budget(self.ladder(entry, options), budget, lambda m: (m.n_steps, m.nfe, m.rmse, True))
        n = self.fit(entry, budget, options)
        return None if n is None else self.run(entry, n, options)

    def ladder(self, entry: SamplerEntry, options: Mapping[str, Any] | None = None) -> list[Measurement]:
        """An adaptive sampler at every tolerance of the ladder (RTOL_LADDER unless given) on the ADAPTIVE_GRID grid."""
        return [self.run_adaptive(entry, rtol, options) for rtol in self.rtols]

    def run_adaptive(self, entry: SamplerEntry, rtol: float, options: Mapping[str, Any] | None = None
                     ) -> Measurement:
        """One adaptive run at rtol (atol in proportion); n_steps = accepted steps, nfe = model calls made."""
        opts = {**(options or {}), "rtol": rtol, "atol": rtol * ATOL_PER_RTOL}
        key = self._key(entry, -1, opts)
        if key in self._runs:
            return self._runs[key]
        sigmas = self.case.grid(ADAPTIVE_GRID)
        info: dict[str, Any] = {}
        try:
            with torch.no_grad():
                out = entry(self.case.problem.model, self.x0.clone(), sigmas, disable=True, info=info,
                            **self.options(entry, opts))
            rmse, median, per_sample, error = measured(out, self.refs.target(sigmas))
        except Exception as exc:
            rmse, median, per_sample, error = math.inf, math.inf, (), f"{type(exc).__name__}: {exc}"
        result = Measurement(int(info.get("accepted", 0)), int(info.get("nfe", 0)), rmse, rmse / self.data_std,
                             median, error, rtol=rtol, rejected=int(info.get("rejected", 0)),
                             sample_errors=per_sample)
        self._runs[key] = result
        return result
