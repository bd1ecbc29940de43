"""The sampler registry: stable names mapped to callable entries with metadata.

Names are a public interface (saved ComfyUI workflows and WebUI infotexts refer to them): add, never rename.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from .deterministic import SolverSpec, build_plan
from .driver import Callback, Model, run_plan
from .options import OPTIONS, parse_options
from .plan import Plan
from .sigmas import distinct, read_sigmas
from .thresholding import DynamicThreshold


@dataclass(frozen=True)
class SamplerEntry:
    """A sampler: call it as `entry(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)`."""

    name: str
    label: str
    description: str
    calls_per_step: int
    stochastic: bool
    defaults: Mapping[str, Any]
    spec: SolverSpec | None = field(default=None, repr=False)

    def __call__(
        self,
        model: Model,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        extra_args: dict[str, Any] | None = None,
        callback: Callback | None = None,
        disable: bool | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Integrate x from sigmas[0] to sigmas[-1]; the model maps (x, sigma[B], **extra_args) to D."""
        plan, opts = self._plan(sigmas, options)
        if plan is None:
            return x
        transform = None
        if opts["thresholding"]:
            transform = DynamicThreshold(opts["threshold_quantile"], opts["threshold_max"])
        sigma_dtype = sigmas.dtype if isinstance(sigmas, torch.Tensor) and sigmas.is_floating_point() \
            else torch.float32
        return run_plan(model, x, plan, extra_args=extra_args, callback=callback, disable=disable,
                        transform=transform, sigma_dtype=sigma_dtype)

    def plan(self, sigmas: torch.Tensor, **options: Any) -> Plan | None:
        """The stages this sampler would run on `sigmas` (None when there is nothing to do)."""
        return self._plan(sigmas, options)[0]

    def count_model_calls(self, sigmas: torch.Tensor, **options: Any) -> int:
        """Exact number of model calls for this grid and these options, without running the model."""
        plan = self.plan(sigmas, **options)
        return 0 if plan is None else plan.nfe

    def _plan(self, sigmas: torch.Tensor, options: dict[str, Any]) -> tuple[Plan | None, dict[str, Any]]:
        assert self.spec is not None
        opts = parse_options(self.name, self.defaults, options)
        if opts["thresholding"]:
            DynamicThreshold(opts["threshold_quantile"], opts["threshold_max"])
        schedule = opts["schedule"]
        grid = distinct(read_sigmas(sigmas, schedule))
        if len(grid) <= 1:
            return None, opts
        return build_plan(self.spec, grid, schedule, opts), opts


def _entry(name: str, label: str, description: str, spec: SolverSpec) -> SamplerEntry:
    defaults = MappingProxyType({o: OPTIONS[o].default for o in spec.options})
    calls = spec.order if spec.structure == "singlestep" else 1
    return SamplerEntry(name, label, description, calls, False, defaults, spec)


def _register(entries: list[SamplerEntry]) -> Mapping[str, SamplerEntry]:
    table: dict[str, SamplerEntry] = {}
    for entry in entries:
        if entry.name in table:
            raise RuntimeError(f"sampler {entry.name} registered twice")
        table[entry.name] = entry
    return MappingProxyType(table)


SAMPLERS: Mapping[str, SamplerEntry] = _register([
    _entry("dpm_solver_1", "DPM-Solver-1", "first order (DDIM), noise prediction",
           SolverSpec("singlestep", 1, "noise")),
    _entry("dpm_solver_2", "DPM-Solver-2", "singlestep second order, noise prediction, 2 calls per step",
           SolverSpec("singlestep", 2, "noise")),
    _entry("dpm_solver_3", "DPM-Solver-3", "singlestep third order, noise prediction, 3 calls per step",
           SolverSpec("singlestep", 3, "noise")),
    _entry("dpm_solver_2m", "DPM-Solver 2M", "multistep second order, noise prediction",
           SolverSpec("multistep", 2, "noise")),
    _entry("dpm_solver_3m", "DPM-Solver 3M", "multistep third order, noise prediction",
           SolverSpec("multistep", 3, "noise")),
    _entry("dpm_solver_pp_2s", "DPM-Solver++ 2S", "singlestep second order, data prediction, 2 calls per step",
           SolverSpec("singlestep", 2, "data")),
    _entry("dpm_solver_pp_3s", "DPM-Solver++ 3S", "singlestep third order, data prediction, 3 calls per step",
           SolverSpec("singlestep", 3, "data")),
    _entry("dpm_solver_pp_2m", "DPM-Solver++ 2M", "multistep second order, data prediction",
           SolverSpec("multistep", 2, "data")),
    _entry("dpm_solver_pp_3m", "DPM-Solver++ 3M", "multistep third order, data prediction",
           SolverSpec("multistep", 3, "data")),
    _entry("dpm_solver_fast", "DPM-Solver-fast",
           "DPM-Solver-fast orders (3,...,3,2,1) laid over the grid: one model call per interval",
           SolverSpec("fast", 3, "noise")),
])
