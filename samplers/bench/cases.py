"""Benchmark cases: a problem with exact denoiser paired with the sigma grid family it is sampled on."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .. import grids
from .problems import GaussianMixture, Problem, flow_mixture, ve_mixture

CFG_SCALE = 7.5


@dataclass
class Case:
    """`problem` sampled on `grid(n)` (n intervals, ending at 0) with the sampler option schedule=`schedule`."""

    name: str
    problem: Problem
    grid_name: str
    make_grid: Callable[[int], torch.Tensor]
    schedule: str
    _grids: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def grid(self, n: int) -> torch.Tensor:
        """The grid with n intervals (float64, cached)."""
        if n not in self._grids:
            self._grids[n] = self.make_grid(n)
        return self._grids[n]

    @property
    def data_std(self) -> float:
        """RMS over dimensions of the per-dimension std of the data the samples should follow."""
        if self.problem.data is None:
            raise ValueError(f"case {self.name}: its problem has no data mixture to measure errors against")
        return mixture_std(self.problem.data)


def mixture_std(mix: GaussianMixture) -> float:
    """sqrt(mean_d Var[x0_d]) of a diagonal Gaussian mixture, exactly."""
    w = mix.weights[:, None]
    second = (w * (mix.stds**2 + mix.means**2)).sum(0)
    var = second - mix.mean() ** 2
    return math.sqrt(float(var.mean()))


def ve_cases(problem: Problem) -> list[Case]:
    """`problem` on the Karras and exponential grids between its sigma_max and sigma_min (then 0)."""
    lo, hi = problem.sigma_min, problem.sigma_max
    return [
        Case(f"{problem.name}/karras", problem, "karras", lambda n: grids.karras(n, lo, hi), "ve"),
        Case(f"{problem.name}/exponential", problem, "exponential", lambda n: grids.exponential(n, lo, hi), "ve"),
    ]


def all_cases() -> list[Case]:
    """VE mixture without and with CFG on Karras and exponential grids; flow mixture on the 'simple' grid."""
    flow = flow_mixture()
    shift = flow.flow_shift
    return [
        *ve_cases(ve_mixture()),
        *ve_cases(ve_mixture(CFG_SCALE)),
        Case(f"{flow.name}/simple", flow, "flow_simple", lambda n: grids.flow_simple(n, shift=shift), "flow"),
    ]


def select_cases(patterns: Sequence[str] | None, extra: Sequence[Case] = ()) -> list[Case]:
    """Cases whose name matches any of the shell-style patterns (all cases when None or empty), then the `extra`
    cases (the demo networks of samplers/bench/networks.py, already filtered by the same patterns)."""
    cases = [*all_cases(), *extra]
    if not patterns:
        return cases
    chosen = [c for c in all_cases() if any(fnmatch.fnmatchcase(c.name, p) or c.name.startswith(p + "/")
                                            for p in patterns)]
    chosen += list(extra)
    if not chosen:
        names = ", ".join(c.name for c in cases)
        raise SystemExit(f"--problems {','.join(patterns)} matches no case; available: {names}")
    return chosen
