"""ComfyUI's own DPM-Solver++ samplers, loaded in-process from COMFYUI_PATH, as timing twins of ours.

Nothing of ComfyUI is copied here: its `comfy.k_diffusion.sampling` module is imported through
`comfy_builtin.load_comfy` (CPU mode, an import-only torchvision where the real one does not load) and its
functions are called on the same trivial model, latent and grid as our samplers, wrapped as KSAMPLER hands a
model over (`comfy_builtin.ComfyModel`) with an SD1.x-style discrete eps model_sampling. The SDE twins run with
their defaults (eta = 1, s_noise = 1, noise sampler = their torchsde BrownianTree, seeded from extra_args); on CUDA
their `_gpu` variants, which build that tree on the latent's device, are timed too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .comfy_builtin import ComfyModel, comfyui_path, load_comfy

TWINS = {"dpm_solver_pp_2m": "sample_dpmpp_2m", "dpm_solver_pp_2m_sde": "sample_dpmpp_2m_sde",
         "dpm_solver_pp_3m_sde": "sample_dpmpp_3m_sde"}
"""Our registry name -> the ComfyUI sampling function that computes the same update."""

DEVICE_TREE_TWINS = {"dpm_solver_pp_2m_sde": "sample_dpmpp_2m_sde_gpu",
                     "dpm_solver_pp_3m_sde": "sample_dpmpp_3m_sde_gpu"}
"""The same SDE updates with ComfyUI's Brownian tree on the latent's device instead of the CPU (its dropdown's
dpmpp_2m_sde_gpu / dpmpp_3m_sde_gpu): a second twin each where the latent is on a GPU."""


def twin_pairs(device: torch.device | str) -> list[tuple[str, str]]:
    """(our name, ComfyUI function) of every twin timed on `device`: TWINS, and on CUDA DEVICE_TREE_TWINS too."""
    pairs = list(TWINS.items())
    if torch.device(device).type == "cuda":
        pairs += list(DEVICE_TREE_TWINS.items())
    return pairs


def twin_runs(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, seed: int = 0,
              path: str | None = None) -> dict[str, Callable[[], torch.Tensor]]:
    """{ComfyUI function: zero-argument run of it on (model, x, sigmas)} for the twin_pairs of x's device; empty
    without COMFYUI_PATH."""
    path = comfyui_path(path)
    if path is None:
        return {}
    comfy = load_comfy(path)
    import comfy.k_diffusion.sampling as sampling  # importable once load_comfy has put the checkout on sys.path

    ms = comfy.model_sampling
    discrete_eps = type("ModelSamplingEPS", (ms.ModelSamplingDiscrete, ms.EPS), {})
    wrapped = ComfyModel(model, discrete_eps())
    extra = {"seed": seed}

    def run(fn: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:
        return lambda: fn(wrapped, x, sigmas, extra_args=extra, disable=True)

    return {theirs: run(getattr(sampling, theirs)) for _, theirs in twin_pairs(x.device)}
