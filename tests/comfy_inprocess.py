"""A real ComfyUI imported in-process for node tests (the tests skip without COMFYUI_PATH).

`real_comfy_models` puts the checkout and an import-only torchvision on sys.path, switches ComfyUI to CPU (unless
told otherwise) and loads a random-weight UNet that ComfyUI detects as SD1.5 (dpmsolver_tools/make_test_checkpoint.py's
UNet; no CLIP or VAE, conditioning tensors are made up) with ComfyUI's own loader, plus the same model behind
ModelSamplingSD3 (shift 3) for the flow path. The sys.path entries are removed again when the context ends.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def real_comfy_models(comfyui_path: str, stub_dir: Path, cpu: bool = True) -> Iterator[dict[str, Any]]:
    """{"ve": ModelPatcher, "flow": the same model through ModelSamplingSD3(3.0)} from the checkout; `cpu=False`
    leaves ComfyUI its own device choice (the GPU where there is one)."""
    from dpmsolver_tools.comfy_server import TORCHVISION_STUB
    from dpmsolver_tools.make_test_checkpoint import random_unet_state

    for rel, text in TORCHVISION_STUB.items():
        (stub_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (stub_dir / rel).write_text(text)
    added = [str(Path(comfyui_path).resolve()), str(stub_dir)]
    sys.path[:0] = added
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = cpu
        import comfy.sd
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3

        model = comfy.sd.load_diffusion_model_state_dict(random_unet_state())
        (flow_model,) = ModelSamplingSD3().patch(model, 3.0)
        yield {"ve": model, "flow": flow_model}
    finally:
        for path in added:
            sys.path.remove(path)


def conditioning(seed: int) -> list[list[Any]]:
    """A made-up SD1.x conditioning (CLIP-L shaped), seeded."""
    return [[torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(seed)), {}]]
