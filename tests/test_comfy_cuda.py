"""Every sampler name of ours through a real ComfyUI's own sampling call on CUDA, in-process (skipped without
COMFYUI_PATH or a CUDA device; run on an H100).

ComfyUI keeps its own device choice (the GPU) and loads a random-weight SD1.5-shaped UNet with its own loader
(tests/comfy_inprocess.py); `comfy.sample.sample` is what the KSampler node calls: KSampler's grid, CFG 5, its
noise from the seed. Checked per name, for the eps model and the same model behind ModelSamplingSD3 (flow): the
model ran on the GPU, the latent is finite and not the input, and the same seed gives the same bits. ComfyUI
fixes its device when first imported, so run this file on its own:

    COMFYUI_PATH=/path/to/ComfyUI python -m pytest tests/test_comfy_cuda.py
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from comfy_inprocess import conditioning, real_comfy_models

from samplers import SAMPLERS

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH or not torch.cuda.is_available(),
                                reason="needs COMFYUI_PATH and a CUDA device")
PACKAGE = "dpm_solver_samplers_cuda_inprocess"
POSITIVE, NEGATIVE = conditioning(1), conditioning(2)
SCHEDULER = {"ve": "karras", "flow": "simple"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    management = sys.modules.get("comfy.model_management")
    if management is not None and management.get_torch_device().type != "cuda":
        pytest.skip("ComfyUI was imported in CPU mode earlier in this process (its device is fixed at import): "
                    "run tests/test_comfy_cuda.py on its own")
    with real_comfy_models(COMFYUI_PATH or "", tmp_path_factory.mktemp("stubs"), cpu=False) as models:
        from test_comfy_support import load_package, purge_package

        package = load_package(PACKAGE)
        yield {"package": package, **models}
        purge_package(PACKAGE)


def sample(env: dict[str, Any], family: str, name: str, seed: int) -> torch.Tensor:
    import comfy.sample

    latent = torch.zeros(2, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(env[family], noise, 4, 5.0, name, SCHEDULER[family], POSITIVE, NEGATIVE, latent,
                               seed=seed, disable_pbar=True)


def test_comfyui_runs_the_model_on_the_gpu(env: dict[str, Any]) -> None:
    import comfy.model_management

    assert comfy.model_management.get_torch_device().type == "cuda"
    assert set(env["package"].nodes.REGISTERED_SAMPLERS) == set(SAMPLERS)


@pytest.mark.parametrize("family", ["ve", "flow"])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_name_samples_on_cuda_in_comfyui(env: dict[str, Any], family: str, name: str) -> None:
    out = sample(env, family, name, 7)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    assert torch.equal(out, sample(env, family, name, 7))
    assert next(env[family].model.parameters()).device.type == "cuda"  # loaded there by ComfyUI
