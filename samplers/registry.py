"""The sampler registry: stable names mapped to callable entries with metadata.

Names are a public interface (saved ComfyUI workflows and WebUI infotexts refer to them): add, never rename.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch

from . import sds
from .adaptive import ModelCallsUnknown, sample_adaptive
from .deterministic import SolverSpec, build_plan
from .driver import Callback, Model, check_call, run_plan
from .noise import make_noise
from .options import OPTIONS, parse_options
from .plan import Plan
from .sigmas import read_grid
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
    solves_ode: ClassVar[bool] = True
    """Integrates the probability-flow ODE (or its SDE) along the grid: an ODE error table can rank it."""

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
        """Integrate x from sigmas[0] to sigmas[-1]; the model maps (x, sigma[B], **extra_args) to D. Runs under
        torch.no_grad(), like k-diffusion's samplers: no autograd graph is kept across the steps. An empty x (batch
        0) is returned as it is, once the sigmas and options are checked: there is nothing to sample."""
        check_call(x, extra_args)
        if x.numel() == 0:
            self._check(sigmas, dict(options))
            return x
        with torch.no_grad():
            return self._sample(model, x, sigmas, extra_args, callback, disable, options)

    def _sample(self, model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None,
                callback: Callback | None, disable: bool | None, options: dict[str, Any]) -> torch.Tensor:
        """The run behind __call__ (one signature for every kind of entry): plan, noise, driver."""
        plan, opts = self._plan(sigmas, options)
        if plan is None:
            return x
        noise = make_noise(opts, extra_args, x, opts["schedule"]) if plan.stochastic else None
        return run_plan(model, x, plan, extra_args=extra_args, callback=callback, disable=disable,
                        transform=_transform(opts), sigma_dtype=_sigma_dtype(sigmas), noise=noise)

    def _check(self, sigmas: torch.Tensor, options: dict[str, Any]) -> None:
        """Check the sigmas and options as a run would (raising what it would), without running."""
        self._plan(sigmas, options)

    def plan(self, sigmas: torch.Tensor, **options: Any) -> Plan | None:
        """The stages this sampler would run on `sigmas` (None when there is nothing to do)."""
        return self._plan(sigmas, options)[0]

    def count_model_calls(self, sigmas: torch.Tensor, **options: Any) -> int:
        """Exact number of model calls for this grid and these options, without running the model."""
        plan = self.plan(sigmas, **options)
        return 0 if plan is None else plan.nfe

    def _plan(self, sigmas: torch.Tensor, options: dict[str, Any]) -> tuple[Plan | None, dict[str, Any]]:
        assert self.spec is not None
        learned = options.pop("learned_plan", None)  # multistep ODE samplers: samplers/learned.py
        opts = parse_options(self.name, self.defaults, options)
        if learned is not None:
            from .learned import check_learned

            check_learned(learned, self.name, self.spec.structure, self.stochastic, opts)
        schedule = opts["schedule"]
        grid = read_grid(sigmas, schedule)
        if len(grid) <= 1:
            return None, opts
        return _cached_plan(self.spec, grid, schedule, opts, learned), opts


_RUN_ONLY = frozenset({"seed", "noise_sampler"})
"""Options that pick the noise but do not shape a plan: left out of the plan cache's key."""


def _build(spec: SolverSpec, grid: list[float], schedule: Any, opts: dict[str, Any], learned: Any) -> Plan:
    """build_plan, then the learned plan's corrections when one is given."""
    plan = build_plan(spec, grid, schedule, opts)
    if learned is None:
        return plan
    from .learned import apply_learned

    return apply_learned(plan, learned, grid)


@functools.lru_cache(maxsize=64)
def _build_cached(spec: SolverSpec, grid: tuple[float, ...], schedule: Any, options: tuple[tuple[str, Any], ...],
                  learned: Any = None) -> Plan:
    return _build(spec, list(grid), schedule, dict(options), learned)


def _cached_plan(spec: SolverSpec, grid: list[float], schedule: Any, opts: Mapping[str, Any],
                 learned: Any = None) -> Plan:
    """build_plan memoised on (spec, grid, schedule, options, learned plan) when they are hashable (hosts rerun
    one grid with new seeds); plans are shared, and nothing modifies a finished plan."""
    key = tuple(sorted((k, v) for k, v in opts.items() if k not in _RUN_ONLY))
    try:
        hash((spec, schedule, key, learned))
    except TypeError:
        return _build(spec, grid, schedule, dict(opts), learned)
    return _build_cached(spec, tuple(grid), schedule, key, learned)


def _transform(opts: Mapping[str, Any]) -> DynamicThreshold | None:
    if opts["thresholding"]:
        return DynamicThreshold(opts["threshold_quantile"], opts["threshold_max"])
    return None


def _sigma_dtype(sigmas: Any) -> torch.dtype:
    return sigmas.dtype if isinstance(sigmas, torch.Tensor) and sigmas.is_floating_point() else torch.float32


@dataclass(frozen=True)
class AdaptiveEntry(SamplerEntry):
    """An adaptive-step sampler: it chooses its own steps between the grid's first and last nonzero sigma."""

    def _sample(self, model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None,
                callback: Callback | None, disable: bool | None, options: dict[str, Any]) -> torch.Tensor:
        """Integrate x from sigmas[0] to sigmas[-1] with adaptive steps (see samplers/adaptive.py)."""
        assert self.spec is not None
        grid, opts = self._grid(sigmas, options)
        if len(grid) <= 1:
            return x
        return sample_adaptive(model, x, grid, opts["schedule"], self.spec.prediction, opts, name=self.name,
                               extra_args=extra_args, callback=callback, disable=disable,
                               transform=_transform(opts), sigma_dtype=_sigma_dtype(sigmas))

    def _check(self, sigmas: torch.Tensor, options: dict[str, Any]) -> None:
        self._grid(sigmas, options)

    def plan(self, sigmas: torch.Tensor, **options: Any) -> Plan | None:
        """Adaptive samplers have no plan: their steps depend on the model's outputs."""
        raise ModelCallsUnknown(f"{self.name} chooses its steps while it runs: it has no plan")

    def count_model_calls(self, sigmas: torch.Tensor, **options: Any) -> int:
        """Raises ModelCallsUnknown: the count depends on the model's outputs. Pass `info={}` to the sampler to
        read the count after a run (bounded by the max_nfe option)."""
        _, opts = self._grid(sigmas, options)
        raise ModelCallsUnknown(
            f"{self.name} chooses its steps while it runs, so its model calls cannot be counted in advance (at "
            f"most max_nfe={opts['max_nfe']}); pass info={{}} to the sampler to read nfe, accepted and rejected "
            "steps after a run")

    def _grid(self, sigmas: torch.Tensor, options: dict[str, Any]) -> tuple[list[float], dict[str, Any]]:
        opts = parse_options(self.name, self.defaults, options)
        return read_grid(sigmas, opts["schedule"]), opts


@dataclass(frozen=True)
class SdsEntry(SamplerEntry):
    """Score distillation as a sampler (samplers/sds.py): the grid is the annealing schedule of an SGD on the
    clean latent. Not an ODE solver (`solves_ode` False); with its defaults it is DDIM."""

    solves_ode: ClassVar[bool] = False

    def _sample(self, model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None,
                callback: Callback | None, disable: bool | None, options: dict[str, Any]) -> torch.Tensor:
        """Optimise x0 along `sigmas` from x noised at sigmas[0]; returns x0 noised at sigmas[-1]."""
        opts = sds.parse_sds_options(self.name, self.defaults, options)
        grid = read_grid(sigmas, opts["schedule"])
        if len(grid) <= 1:
            return x
        return sds.sample_sds(model, x, grid, opts, extra_args=extra_args, callback=callback, disable=disable,
                              sigma_dtype=_sigma_dtype(sigmas))

    def _check(self, sigmas: torch.Tensor, options: dict[str, Any]) -> None:
        self.count_model_calls(sigmas, **options)

    def plan(self, sigmas: torch.Tensor, **options: Any) -> Plan | None:
        """SDS is a loop of optimisation steps, not a plan of linear stages."""
        raise NotImplementedError(f"{self.name} is an optimisation loop: it has no plan (see count_model_calls)")

    def count_model_calls(self, sigmas: torch.Tensor, **options: Any) -> int:
        """Exact number of model calls for this grid and these options (sds.count_sds_calls)."""
        opts = sds.parse_sds_options(self.name, self.defaults, options)
        grid = read_grid(sigmas, opts["schedule"])
        return 0 if len(grid) <= 1 else sds.count_sds_calls(grid, opts)


def _entry(name: str, label: str, description: str, spec: SolverSpec, **defaults: Any) -> SamplerEntry:
    table = MappingProxyType({o: defaults.get(o, OPTIONS[o].default) for o in spec.options})
    stochastic = spec.noise != "none"
    if spec.structure == "adaptive":
        return AdaptiveEntry(name, label, description, spec.order, False, table, spec)
    calls = spec.order if spec.structure == "singlestep" else 1
    return SamplerEntry(name, label, description, calls, stochastic, table, spec)


SDS_OPTIONS = ("schedule", "thresholding", "threshold_quantile", "threshold_max", "sds_mode", "sds_weighting", "sds_lr",
               "sds_inner_steps", "sds_grad_clip", "sds_noise", "sds_inversion_steps", "seed", "guidance_parts",
               "noise_sampler")
"""Options of dpm_solver_sds (defaults: DDIM; see samplers/sds.py)."""


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
    _entry("dpm_solver_pp_sde", "DPM-Solver++ SDE",
           "singlestep second-order SDE, data prediction, 2 calls per step, seeded Brownian noise",
           SolverSpec("singlestep", 2, "data", noise="sde")),
    _entry("dpm_solver_pp_2m_sde", "DPM-Solver++ 2M SDE", "multistep second-order SDE, data prediction",
           SolverSpec("multistep", 2, "data", noise="sde")),
    _entry("dpm_solver_pp_3m_sde", "DPM-Solver++ 3M SDE", "multistep third-order SDE, data prediction",
           SolverSpec("multistep", 3, "data", noise="sde")),
    _entry("dpm_solver_pp_2s_ancestral", "DPM-Solver++ 2S ancestral",
           "singlestep second order to sigma_down, then fresh noise (ancestral), 2 calls per step",
           SolverSpec("singlestep", 2, "data", noise="ancestral")),
    _entry("dpm_solver_adaptive", "DPM-Solver adaptive",
           "adaptive step size, DPM-Solver-12/23 embedded pairs, noise prediction",
           SolverSpec("adaptive", 3, "noise")),
    _entry("dpm_solver_pp_adaptive", "DPM-Solver++ adaptive",
           "adaptive step size, DPM-Solver++ 12/23 embedded pairs, data prediction",
           SolverSpec("adaptive", 3, "data")),
    _entry("dpm_solver_pp_pc", "DPM-Solver++ PC",
           "DPM-Solver++ multistep predictor with a corrector: UniC (no extra calls) or Langevin",
           SolverSpec("multistep", 3, "data", corrector=True)),
    SdsEntry("dpm_solver_sds", "DPM-Solver SDS",
             "score distillation along the grid (annealed sigma): x0 <- x0 - lr lambda(sigma)(x0 - D); modes sds, "
             "csd, sdi; defaults = DDIM", 1, False, MappingProxyType({o: OPTIONS[o].default for o in SDS_OPTIONS})),
])
