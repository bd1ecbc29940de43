"""Helpers for the ComfyUI adapter tests: a tiny stand-in `comfy` package and loading this repository the way
ComfyUI does (as a package, so `from .samplers import ...` works). No ComfyUI code is used or needed.

The stand-in has only what the adapter touches: `comfy.samplers` (SAMPLER_NAMES, the same list as
KSampler.SAMPLERS, a separate KSAMPLER_NAMES, KSAMPLER), `comfy.k_diffusion.sampling` and
`comfy.model_sampling` (the prediction-type classes and two sigma tables written from their definitions).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_NAMES = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_fast", "dpm_adaptive", "dpmpp_2m", "lcm"]


def _module(name: str, package: bool = False) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
    if package:
        module.__path__ = []
    return module


def make_fake_comfy() -> dict[str, types.ModuleType]:
    """Fresh stand-in modules, keyed by module name (put them into sys.modules)."""
    comfy = _module("comfy", package=True)
    samplers = _module("comfy.samplers")
    k_diffusion = _module("comfy.k_diffusion", package=True)
    k_sampling = _module("comfy.k_diffusion.sampling")
    model_sampling = _module("comfy.model_sampling")

    ksampler_names = list(BUILTIN_NAMES)
    samplers.KSAMPLER_NAMES = ksampler_names
    samplers.SAMPLER_NAMES = [*ksampler_names, "ddim", "uni_pc"]

    class KSampler:
        SAMPLERS = samplers.SAMPLER_NAMES

    class KSAMPLER:
        def __init__(self, sampler_function: Any, extra_options: dict | None = None,
                     inpaint_options: dict | None = None) -> None:
            self.sampler_function = sampler_function
            self.extra_options = dict(extra_options or {})
            self.inpaint_options = dict(inpaint_options or {})

    samplers.KSampler = KSampler
    samplers.KSAMPLER = KSAMPLER

    def sample_euler(model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Any = None, callback: Any = None,
                     disable: Any = None) -> torch.Tensor:
        return x

    k_sampling.sample_euler = sample_euler

    class EPS:
        pass

    class V_PREDICTION(EPS):
        pass

    class EDM(V_PREDICTION):
        pass

    class X0(EPS):
        pass

    class CONST:
        pass

    class COSMOS_RFLOW:
        pass

    for cls in (EPS, V_PREDICTION, EDM, X0, CONST, COSMOS_RFLOW):
        setattr(model_sampling, cls.__name__, cls)

    comfy.samplers = samplers
    comfy.k_diffusion = k_diffusion
    comfy.model_sampling = model_sampling
    k_diffusion.sampling = k_sampling
    return {m.__name__: m for m in (comfy, samplers, k_diffusion, k_sampling, model_sampling)}


def install_fake_comfy(monkeypatch: Any) -> dict[str, types.ModuleType]:
    modules = make_fake_comfy()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return modules


def purge_package(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def load_package(name: str = "dpm_solver_samplers_under_test") -> types.ModuleType:
    """Import the repository root as package `name` (fresh), as ComfyUI imports a custom node folder.
    Call purge_package(name) when done."""
    purge_package(name)
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        purge_package(name)
        raise
    return module


@contextlib.contextmanager
def fake_comfy_package(monkeypatch: Any, name: str) -> Iterator[tuple[dict[str, types.ModuleType], types.ModuleType]]:
    """The stand-in `comfy` installed and this repository loaded as package `name`: (stand-in modules, package);
    the package is purged on exit."""
    modules = install_fake_comfy(monkeypatch)
    try:
        yield modules, load_package(name)
    finally:
        purge_package(name)


# --- stand-ins for ComfyUI model objects --------------------------------------------------------------------

def sd15_sigma_table(n: int = 1000) -> torch.Tensor:
    """VE sigmas of SD1.5's "scaled linear" beta schedule: beta_k = (sqrt(b0) + k/(n-1)(sqrt(b1)-sqrt(b0)))^2."""
    lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
    betas = torch.tensor([(lo + k / (n - 1) * (hi - lo)) ** 2 for k in range(n)], dtype=torch.float64)
    alphas_bar = torch.cumprod(1.0 - betas, dim=0)
    return ((1.0 - alphas_bar) / alphas_bar).sqrt().float()


def flow_sigma_table(shift: float = 3.0, n: int = 1000) -> torch.Tensor:
    t = torch.arange(1, n + 1, dtype=torch.float64) / n
    return (shift * t / (1.0 + (shift - 1.0) * t)).float()


def make_model_sampling(modules: dict[str, types.ModuleType], kind: str = "eps", shift: float = 3.0) -> Any:
    """A model_sampling like ComfyUI's: a prediction-type class mixed with a sigma table."""
    ms = modules["comfy.model_sampling"]
    base = {"eps": ms.EPS, "v": ms.V_PREDICTION, "edm": ms.EDM, "x0": ms.X0, "flow": ms.CONST}[kind]
    table = flow_sigma_table(shift) if kind == "flow" else sd15_sigma_table()

    class Sampling(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.sigmas = table

        @property
        def sigma_min(self) -> torch.Tensor:
            return self.sigmas[0]

        @property
        def sigma_max(self) -> torch.Tensor:
            return self.sigmas[-1]

    return Sampling()


class FakePatcher:
    """A MODEL (ModelPatcher) as far as the adapter looks: get_model_object("model_sampling")."""

    def __init__(self, model_sampling: Any) -> None:
        self.model_sampling = model_sampling

    def get_model_object(self, name: str) -> Any:
        assert name == "model_sampling"
        return self.model_sampling


class FakeDenoiser:
    """ComfyUI's KSamplerX0Inpaint as the sampler function sees it: D(x, sigma, **extra_args), with
    inner_model (the guider) holding model_patcher. Records every call."""

    def __init__(self, model_sampling: Any, scale: float = 0.5) -> None:
        self.inner_model = types.SimpleNamespace(model_patcher=FakePatcher(model_sampling))
        self.scale = scale
        self.calls: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, denoise_mask: Any = None, model_options: Any = None,
                 seed: Any = None) -> torch.Tensor:
        self.calls.append((float(sigma[0]), {"denoise_mask": denoise_mask, "model_options": model_options,
                                             "seed": seed}))
        return x * self.scale
