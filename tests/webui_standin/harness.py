"""Test harness around the WebUI stand-in: load a fork flavor, fake models, load our script like the WebUI.

The fake models denoise Gaussian data exactly (x0 ~ N(mu, c^2), mu from the prompt), for VE
(x = x0 + sigma*eps) and rectified-flow (x = (1-sigma)*x0 + sigma*eps) forward processes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch

STANDIN = Path(__file__).resolve().parent
ROOT = STANDIN.parents[1]
SCRIPT = ROOT / "scripts" / "dpm_solver_samplers.py"
FLAVORS = ("a1111", "forge", "reforge", "neo")
_PURGE_PREFIXES = ("modules", "gradio", "launch", "standin_flavor", "dpmsolver_webui")


def purge() -> None:
    """Forget the stand-in and our adapter (a new WebUI process); the core stays loaded (it is stateless)."""
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") or name.startswith(p + "_") for p in _PURGE_PREFIXES):
            del sys.modules[name]


def load_webui(flavor: str = "a1111", family: str = "ve") -> SimpleNamespace:
    """A fresh stand-in WebUI of `flavor` with a fake model of `family` ('ve' or 'flow') loaded."""
    purge()
    if str(STANDIN) not in sys.path:
        sys.path.insert(0, str(STANDIN))
    flavor_module = importlib.import_module("standin_flavor")
    flavor_module.FLAVOR = flavor
    names = ("shared", "sd_schedulers", "sd_samplers_common", "sd_samplers_kdiffusion", "sd_samplers",
             "infotext_utils", "processing", "scripts", "script_callbacks", "errors")
    webui = SimpleNamespace(flavor=flavor, **{n: importlib.import_module(f"modules.{n}") for n in names})
    webui.shared.sd_model = FakeModel(flavor, family)
    return webui


def unload() -> None:
    """Remove the stand-in from sys.path and sys.modules."""
    purge()
    while str(STANDIN) in sys.path:
        sys.path.remove(str(STANDIN))


def load_script() -> ModuleType:
    """Execute scripts/dpm_solver_samplers.py as the WebUI's `script_loading.load_module` does."""
    spec = importlib.util.spec_from_file_location(os.path.basename(SCRIPT), SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ve_table() -> torch.Tensor:
    """SD1.x sigma table (scaled-linear betas, 1000 steps), ascending: 0.0292 ... 14.6146."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()


def flow_table(shift: float = 3.0) -> torch.Tensor:
    """SD3-style discrete flow sigma table, ascending: shift*t/(1+(shift-1)t), t = 1/1000 ... 1."""
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    return (shift * t / (1 + (shift - 1) * t)).float()


class GaussianData:
    """Exact denoiser of x0 ~ N(mu, c^2) per element, mu given per sample by the conditioning."""

    def __init__(self, family: str, c: float = 0.8) -> None:
        self.family, self.c2 = family, c * c

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        s = sigma.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        mu = torch.zeros_like(x) if cond is None else cond.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        alpha = torch.ones_like(s) if self.family == "ve" else 1.0 - s
        gain = alpha * self.c2 / (alpha * alpha * self.c2 + s * s)
        return mu + gain * (x - alpha * mu)


class TableDenoiser(torch.nn.Module):
    """k-diffusion-style wrapper (`CompVisDenoiser` shape): sigma table, get_sigmas, model call."""

    def __init__(self, sd_model: Any, sigmas: torch.Tensor) -> None:
        super().__init__()
        self.inner_model = sd_model
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())

    def get_sigmas(self, n: int) -> torch.Tensor:
        t = torch.linspace(len(self.sigmas) - 1, 0, n).round().long()
        return torch.cat([self.sigmas[t], self.sigmas.new_zeros([1])])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.inner_model.data.denoise(x, sigma, cond)


class SD3Denoiser(TableDenoiser):
    """Named like A1111 1.10's SD3 denoiser; the family is on `inner_model.model.model_sampling`."""


class ModelSamplingDiscreteFlow:
    """Named like `modules/models/sd3/sd3_impls.py`'s class (A1111 1.10)."""


class FakePredictor:
    """Forge's predictor shape (`backend/modules/k_prediction.py`): prediction_type, sigmas, a model call."""

    def __init__(self, family: str, data: GaussianData) -> None:
        self.prediction_type = "const" if family == "flow" else "epsilon"
        self.sigmas = flow_table() if family == "flow" else ve_table()
        self.data = data

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.data.denoise(x, sigma, cond)


class FakeModel:
    """`shared.sd_model` stand-in; the prompt 'a cat' conditions on mean 0.3, the empty prompt on 0."""

    is_sdxl = False
    latent_channels = 4

    def __init__(self, flavor: str, family: str) -> None:
        self.flavor, self.family = flavor, family
        self.data = GaussianData(family)
        predictor = FakePredictor(family, self.data)
        self.forge_objects = SimpleNamespace(unet=SimpleNamespace(model=SimpleNamespace(predictor=predictor)))
        self.model = SimpleNamespace(model_sampling=ModelSamplingDiscreteFlow() if family == "flow" else None)

    def create_denoiser(self) -> TableDenoiser:
        if self.family == "flow":
            return SD3Denoiser(self, flow_table())
        return TableDenoiser(self, ve_table())

    def get_learned_conditioning(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([0.3 if prompt else 0.0 for prompt in prompts])
