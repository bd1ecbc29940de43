"""ComfyUI's own DPM-Solver++ samplers, loaded in-process from COMFYUI_PATH, as timing twins of ours.

Nothing of ComfyUI is copied here: its `comfy.k_diffusion.sampling` module is imported from the checkout the
environment variable names (CPU mode, torchvision replaced by an import-only stub when it does not import) and
its functions are called on the same trivial model, latent and grid as our samplers. The SDE twins run with
their defaults (eta = 1, s_noise = 1, noise sampler = their torchsde BrownianTree, seeded from extra_args).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

TWINS = {"dpm_solver_pp_2m": "sample_dpmpp_2m", "dpm_solver_pp_2m_sde": "sample_dpmpp_2m_sde",
         "dpm_solver_pp_3m_sde": "sample_dpmpp_3m_sde"}
"""Our registry name -> the ComfyUI sampling function that computes the same update."""

_STUB_DIR: tempfile.TemporaryDirectory | None = None


def comfyui_path() -> Path | None:
    """The ComfyUI checkout named by COMFYUI_PATH, or None when unset."""
    value = os.environ.get("COMFYUI_PATH")
    return Path(value) if value else None


def _stub_torchvision() -> None:
    """Put an import-only torchvision on sys.path when the real one does not import (ComfyUI imports it)."""
    global _STUB_DIR
    try:
        import torchvision  # noqa: F401
        return
    except Exception:
        sys.modules.pop("torchvision", None)
    from dpmsolver_tools.comfy_server import TORCHVISION_STUB

    _STUB_DIR = tempfile.TemporaryDirectory(prefix="torchvision-stub-")
    for rel, text in TORCHVISION_STUB.items():
        target = Path(_STUB_DIR.name) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    sys.path.insert(0, _STUB_DIR.name)


def load_sampling(path: Path) -> tuple[Any, Any]:
    """(comfy.k_diffusion.sampling, comfy.model_sampling) imported from the checkout at `path` in CPU mode."""
    if not (path / "comfy" / "k_diffusion" / "sampling.py").is_file():
        raise FileNotFoundError(f"COMFYUI_PATH={path} does not hold comfy/k_diffusion/sampling.py")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    _stub_torchvision()
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before any other comfy import
    import comfy.k_diffusion.sampling as sampling
    import comfy.model_sampling as model_sampling

    return sampling, model_sampling


class _Patcher:
    """What ComfyUI's SDE samplers read from `model.inner_model.model_patcher`: the model_sampling object."""

    def __init__(self, model_sampling: Any) -> None:
        self.model_sampling = model_sampling

    def get_model_object(self, name: str) -> Any:
        if name != "model_sampling":
            raise KeyError(name)
        return self.model_sampling


class TwinModel:
    """A denoiser D(x, sigma) carrying an SD1.x-style (discrete, eps-prediction) ComfyUI model_sampling."""

    def __init__(self, fn: Callable[..., torch.Tensor], model_sampling_module: Any) -> None:
        cls = type("ModelSamplingEPS", (model_sampling_module.ModelSamplingDiscrete, model_sampling_module.EPS), {})
        self.fn = fn
        self.inner_model = SimpleNamespace(model_patcher=_Patcher(cls()))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        return self.fn(x, sigma)


def twin_runs(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, seed: int = 0,
              path: Path | None = None) -> dict[str, Callable[[], torch.Tensor]]:
    """{our name: zero-argument run of ComfyUI's twin on (model, x, sigmas)}; empty without COMFYUI_PATH."""
    path = path or comfyui_path()
    if path is None:
        return {}
    sampling, model_sampling = load_sampling(path)
    wrapped = TwinModel(model, model_sampling)
    extra = {"seed": seed}

    def run(fn: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:
        return lambda: fn(wrapped, x, sigmas, extra_args=extra, disable=True)

    return {ours: run(getattr(sampling, theirs)) for ours, theirs in TWINS.items()}
