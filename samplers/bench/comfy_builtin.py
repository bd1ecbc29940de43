"""ComfyUI's built-in samplers run in-process on the benchmark cases, on the same grids, noises and references.

ComfyUI is imported from COMFYUI_PATH (or a path given on the command line) in CPU mode; nothing of it is copied
here. Each sampler is fetched the way ComfyUI's KSampler does (`comfy.samplers.sampler_object(name)`: the
function plus its extra options, with the dpm_fast / dpm_adaptive wrappers that read sigma_min, sigma_max and n
from the grid) and called with a `ComfyModel`: the case's exact model D(x, sigma) behind the attributes the
samplers read (`model.inner_model.inner_model.model_sampling`, `model.inner_model.model_patcher
.get_model_object("model_sampling")`), a real `comfy.model_sampling` object of the case's family (EPS on a
continuous VE sigma range for "ve", CONST with the case's shift for "flow"), and a call counter: NFE is the number
of model calls made, as in our tables.

Where a sampler stops matters for its reference. Most samplers end on the grid's last sigma (0: the final
denoise), like ours, and are compared with the same target. dpm_fast and dpm_adaptive stop at the last nonzero
sigma without the final denoise, and uni_pc replaces a final 0 by UNI_PC_LAST; those are compared with the exact
ODE state where they stop (their solver error, not the missing denoise); the error against the grid's target is
recorded too (`rmse_grid_ref`).
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import math
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from .cases import Case
from .measure import ADAPTIVE_GRID, ATOL_PER_RTOL, DTYPE, OVERSHOOT, CaseRunner, errors, measured
from .problems import SEED

COMFYUI_ENV = "COMFYUI_PATH"
UNI_PC_LAST = 0.001
"""ComfyUI's uni_pc integrates to sigma = 0.001 instead of a final 0 (and returns that state, not denoised)."""
STOPS_AT_LAST_NONZERO = ("dpm_fast", "dpm_adaptive")
DISCARD_PENULTIMATE = "discard_penultimate"


@dataclass(frozen=True)
class Comfy:
    """The imported ComfyUI: `samplers` is comfy.samplers, `model_sampling` comfy.model_sampling."""

    path: str
    version: str
    samplers: types.ModuleType
    model_sampling: types.ModuleType


def comfyui_path(explicit: str | None = None) -> str | None:
    """The ComfyUI checkout to compare with: `explicit`, else $COMFYUI_PATH, else None."""
    return explicit or os.environ.get(COMFYUI_ENV) or None


def _stub_torchvision() -> None:
    """comfy imports torchvision at module level (model definitions no sampler uses); register an import-only
    stand-in when the real package is not installed (the PyPI wheel does not load with this CPU torch)."""
    try:
        if importlib.util.find_spec("torchvision") is not None:
            return
    except (ImportError, ValueError):
        pass
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    models = types.ModuleType("torchvision.models")
    functional.InterpolationMode = enum.Enum(  # type: ignore[attr-defined]
        "InterpolationMode", {"NEAREST": "nearest", "BILINEAR": "bilinear", "BICUBIC": "bicubic"})
    root.transforms, root.models, transforms.functional = transforms, models, functional  # type: ignore[attr-defined]
    root.__version__ = "0.0.0+import-stub"  # type: ignore[attr-defined]
    for module in (root, transforms, functional, models):  # a spec, as importlib.util.find_spec expects
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
    sys.modules.update({m.__name__: m for m in (root, transforms, functional, models)})


def load_comfy(path: str, cpu: bool = True) -> Comfy:
    """Import ComfyUI from the checkout at `path` (CPU mode unless `cpu=False`, which leaves ComfyUI its own
    device choice; its folder is appended to sys.path, so this repository's own modules keep precedence). The
    mode holds from the first import on: ComfyUI fixes its device when comfy.model_management is imported."""
    root = os.path.abspath(path)
    if not os.path.isfile(os.path.join(root, "comfy", "samplers.py")):
        raise FileNotFoundError(f"COMFYUI_PATH={path!r}: expected a ComfyUI checkout (with comfy/samplers.py)")
    if root not in sys.path:
        sys.path.append(root)
    _stub_torchvision()
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    import comfy.model_sampling
    import comfy.samplers

    version = "unknown"
    version_file = os.path.join(root, "comfyui_version.py")
    if os.path.isfile(version_file):
        with open(version_file, encoding="utf-8") as f:
            for line in f:
                if line.startswith("__version__"):
                    version = line.split("=", 1)[1].strip().strip("'\"")
    return Comfy(root, version, comfy.samplers, comfy.model_sampling)


@dataclass(frozen=True)
class ComfySampler:
    """One ComfyUI sampler as the comparison runs it: `name` from comfy.samplers.SAMPLER_NAMES, `options` added
    to the extra options ComfyUI gives it; `grid` "case" (the case's n-interval grid) or DISCARD_PENULTIMATE (what
    KSampler does for uni_pc and dpm_2: n + 1 intervals with the penultimate sigma dropped); `adaptive` runs the
    tolerance ladder (rtol, atol = rtol * ATOL_PER_RTOL) instead of step counts."""

    label: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    grid: str = "case"
    adaptive: bool = False


BUILTIN: tuple[ComfySampler, ...] = (
    ComfySampler("euler", "euler"),
    ComfySampler("heun", "heun"),
    ComfySampler("lms", "lms"),
    ComfySampler("dpm_fast", "dpm_fast"),
    ComfySampler("dpm_adaptive", "dpm_adaptive", adaptive=True),
    ComfySampler("dpmpp_2s_ancestral eta 0", "dpmpp_2s_ancestral", {"eta": 0.0}),
    ComfySampler("dpmpp_2m", "dpmpp_2m"),
    ComfySampler("dpmpp_2m_sde eta 0", "dpmpp_2m_sde", {"eta": 0.0}),
    ComfySampler("dpmpp_3m_sde eta 0", "dpmpp_3m_sde", {"eta": 0.0}),
    ComfySampler("ipndm", "ipndm"),
    ComfySampler("ipndm_v", "ipndm_v"),
    ComfySampler("deis", "deis"),
    ComfySampler("res_multistep", "res_multistep"),
    ComfySampler("uni_pc", "uni_pc"),
    ComfySampler("uni_pc_bh2", "uni_pc_bh2"),
    ComfySampler("uni_pc (KSampler grid)", "uni_pc", grid=DISCARD_PENULTIMATE),
    ComfySampler("uni_pc_bh2 (KSampler grid)", "uni_pc_bh2", grid=DISCARD_PENULTIMATE),
)
"""The samplers of the comparison (issue 8). uni_pc also as the KSampler node runs it (penultimate sigma of an
n + 1 grid discarded), so that 'their best' is the better of the two."""

EXTRA: tuple[ComfySampler, ...] = (
    ComfySampler("dpmpp_2m_sde_heun eta 0", "dpmpp_2m_sde_heun", {"eta": 0.0}),
    ComfySampler("dpmpp_sde eta 0", "dpmpp_sde", {"eta": 0.0}),
    ComfySampler("dpm_2", "dpm_2", grid=DISCARD_PENULTIMATE),
    ComfySampler("heunpp2", "heunpp2"),
    ComfySampler("gradient_estimation", "gradient_estimation"),
)
"""Further deterministic ComfyUI samplers (or eta-0 settings) run too, so that no cheap winner is left out."""


class _Patcher:
    """The model_patcher attribute: get_model_object('model_sampling') as ComfyUI's ModelPatcher answers it."""

    def __init__(self, model_sampling: Any) -> None:
        self._model_sampling = model_sampling

    def get_model_object(self, name: str) -> Any:
        if name != "model_sampling":
            raise KeyError(f"get_model_object: only 'model_sampling' is available here, got {name!r}")
        return self._model_sampling


class _Guider:
    """Stands where ComfyUI's guider sits: .inner_model.model_sampling (the BaseModel's) and .model_patcher."""

    def __init__(self, model_sampling: Any) -> None:
        self.inner_model = types.SimpleNamespace(model_sampling=model_sampling)
        self.model_patcher = _Patcher(model_sampling)


class ComfyModel:
    """What KSAMPLER hands a sampler function: model(x, sigma[B], **extra_args) -> D, counting calls."""

    def __init__(self, model: Callable[..., torch.Tensor], model_sampling: Any) -> None:
        self.model = model
        self.inner_model = _Guider(model_sampling)
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        self.calls += 1
        return self.model(x, sigma, **extra_args)


def model_sampling_for(comfy: Comfy, case: Case) -> Any:
    """A real comfy.model_sampling object of the case's family whose sigma range covers the case: EPS on
    ModelSamplingContinuousEDM for "ve", CONST on ModelSamplingDiscreteFlow with the case's shift for "flow"."""
    ms = comfy.model_sampling
    problem = case.problem
    if problem.family == "flow":
        cls = type("FlowModelSampling", (ms.ModelSamplingDiscreteFlow, ms.CONST), {})
        settings: dict[str, Any] = {"shift": problem.flow_shift, "multiplier": 1000}
    elif problem.family == "ve":
        cls = type("VEModelSampling", (ms.ModelSamplingContinuousEDM, ms.EPS), {})
        settings = {"sigma_min": problem.sigma_min * 0.5, "sigma_max": problem.sigma_max * 2.0, "sigma_data": 1.0}
    else:
        raise ValueError(f"case {case.name}: unknown family {problem.family!r} (expected 've' or 'flow')")
    return cls(types.SimpleNamespace(sampling_settings=settings))


def sampler_grid(case: Case, sampler: ComfySampler, n: int) -> torch.Tensor:
    """The sigmas the sampler is given for n intervals (float64)."""
    if sampler.grid == "case":
        return case.grid(n).clone()
    if sampler.grid == DISCARD_PENULTIMATE:
        full = case.grid(n + 1)
        return torch.cat([full[:-2], full[-1:]])
    raise ValueError(f"{sampler.label}: unknown grid {sampler.grid!r} (expected 'case' or {DISCARD_PENULTIMATE!r})")


def stop_sigma(name: str, sigmas: torch.Tensor) -> float | None:
    """Where a ComfyUI sampler's output lives when that is not the grid's end: the last nonzero sigma for dpm_fast
    and dpm_adaptive, UNI_PC_LAST for uni_pc on a grid ending at 0; None for the grid's own end."""
    values = sigmas.tolist()
    if name in STOPS_AT_LAST_NONZERO:
        return values[-2] if values[-1] == 0 else values[-1]
    if name.startswith("uni_pc") and values[-1] == 0:
        return UNI_PC_LAST
    return None


def _state_at(runner: CaseRunner, sigma: float) -> torch.Tensor:
    refs: Any = runner.refs
    chain = refs if hasattr(refs, "state_at") else refs.reference  # networks: NetworkReferences wraps the chain
    return chain.state_at(sigma).to(DTYPE)


@dataclass(frozen=True)
class ComfyRun:
    """One run: grid intervals, model calls made, RMSE, median per-sample error (against the reference where the
    sampler stops), the RMSE against the grid's target, the grid's last nonzero sigma, and `stop` (None: the
    grid's end)."""

    n_steps: int
    nfe: int
    rmse: float
    median_err: float
    rmse_grid_ref: float
    sigma_last: float
    stop: float | None = None
    rtol: float | None = None
    error: str | None = None
    sample_errors: tuple[float, ...] = field(default=(), repr=False)
    """Each sample's RMS error against the same reference as `rmse` (empty on failure); not part of as_dict."""

    def as_dict(self, data_std: float) -> dict[str, Any]:
        out: dict[str, Any] = {"n_steps": self.n_steps, "nfe": self.nfe, "rmse": _finite(self.rmse),
                               "rel_rmse": _finite(self.rmse / data_std), "median_err": _finite(self.median_err),
                               "rmse_grid_ref": _finite(self.rmse_grid_ref), "sigma_last": self.sigma_last,
                               "stop": self.stop}
        if self.rtol is not None:
            out["rtol"] = self.rtol
        if self.error is not None:
            out["error"] = self.error
        return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torch's default dtype set to the state's while a ComfyUI sampler runs: some build constants with
    torch.tensor / torch.linspace (float32 by default), which float64 states cannot be combined with (uni_pc) or
    which would round the time grid to float32 (dpm_fast)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


class ComfyCaseRunner:
    """Runs ComfyUI samplers on one case from the CaseRunner's initial noises, against its references."""

    def __init__(self, comfy: Comfy, runner: CaseRunner) -> None:
        self.comfy = comfy
        self.runner = runner
        self.model_sampling = model_sampling_for(comfy, runner.case)

    def model(self) -> ComfyModel:
        """A fresh counting wrapper of the case's model."""
        return ComfyModel(self.runner.case.problem.model, self.model_sampling)

    def call(self, sampler: ComfySampler, sigmas: torch.Tensor, options: Mapping[str, Any] | None = None,
             model: ComfyModel | None = None) -> torch.Tensor:
        """The sampler's output from the case's initial noises on `sigmas` (model calls counted in `model`). The
        sampler gets a copy of `sigmas`: uni_pc writes its final 0.001 into the tensor it is given."""
        ksampler = self.comfy.samplers.sampler_object(sampler.name)
        opts = {**ksampler.extra_options, **sampler.options, **(options or {})}
        x = self.runner.x0.clone()
        with torch.no_grad(), default_dtype(x.dtype), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # dpm_fast/dpm_adaptive copy-construct tensors
            return ksampler.sampler_function(model or self.model(), x, sigmas.clone(), extra_args={"seed": SEED + 1},
                                             callback=None, disable=True, **opts)

    def run(self, sampler: ComfySampler, sigmas: torch.Tensor, n_steps: int,
            options: Mapping[str, Any] | None = None) -> ComfyRun:
        """One run on `sigmas`, measured; a failing sampler gives a run with infinite errors and the message."""
        stop = stop_sigma(sampler.name, sigmas)
        rtol = None if options is None else options.get("rtol")
        model = self.model()
        try:
            target = self.runner.refs.target(sigmas.clone())
            out = self.call(sampler, sigmas, options, model)
            ref = target if stop is None else _state_at(self.runner, stop)
            rmse, median, per_sample, error = measured(out, ref)
            grid_rmse = rmse if stop is None else errors(out, target)[0]
        except Exception as exc:  # a failing sampler is reported, not fatal to the comparison
            rmse = median = grid_rmse = math.inf
            per_sample, error = (), f"{type(exc).__name__}: {exc}"
        last = [v for v in sigmas.tolist() if v > 0][-1]
        return ComfyRun(n_steps, model.calls, rmse, median, grid_rmse, last, stop, rtol, error, per_sample)

    def scan(self, sampler: ComfySampler, max_nfe: int) -> list[ComfyRun]:
        """Runs at n = 2, 3, ... intervals (one interval has no ODE to solve: its reference is the model's own
        output) until OVERSHOOT grids in a row exceed `max_nfe` model calls (adaptive:
        the tolerance ladder on the ADAPTIVE_GRID grid); only runs within max_nfe are returned."""
        if sampler.adaptive:
            sigmas = sampler_grid(self.runner.case, sampler, ADAPTIVE_GRID)
            runs = [self.run(sampler, sigmas.clone(), ADAPTIVE_GRID, {"rtol": r, "atol": r * ATOL_PER_RTOL})
                    for r in self.runner.rtols]
            return [r for r in runs if r.nfe <= max_nfe]
        runs, over = [], 0
        for n in range(2, max_nfe + 1):
            r = self.run(sampler, sampler_grid(self.runner.case, sampler, n), n)
            if r.nfe > max_nfe:
                over += 1
                if over >= OVERSHOOT:
                    break
                continue
            over = 0
            runs.append(r)
        return runs
