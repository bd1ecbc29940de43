"""samplers/bench/ksampler.py without a GPU: the table, the command's errors, and (with COMFYUI_PATH) that ComfyUI
detects the random UNet as SD1.5 at its full size. The timing itself: docs/ksampler_cuda.md."""

from __future__ import annotations

import math
import os

import pytest
import torch

from samplers.bench import ksampler


def test_table_gives_seconds_and_each_sides_own_cost_per_step() -> None:
    result = {"euler_ms_per_step": 20.0, "pairs": [
        {"ours": "dpm_solver_pp_2m_sde", "theirs": "dpmpp_2m_sde", "ours_s": 0.41, "theirs_s": 0.5,
         "ours_own_ms_per_step": 0.5, "theirs_own_ms_per_step": 5.0}]}
    row = ksampler.ksampler_table(result).splitlines()[2]
    assert row == "| `dpm_solver_pp_2m_sde` | `dpmpp_2m_sde` | 0.410 | 0.500 | 0.50 (2%) | 5.00 (25%) |"


def test_the_command_needs_comfyui_and_sane_sizes(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    with pytest.raises(SystemExit):
        ksampler.main([])
    assert "set COMFYUI_PATH" in capsys.readouterr().err
    monkeypatch.setenv("COMFYUI_PATH", "/nowhere")
    with pytest.raises(SystemExit):
        ksampler.main(["--size", "100"])
    assert "--size needs a multiple of 8" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH is not set: needs a ComfyUI checkout")
def test_comfyui_detects_the_random_unet_as_sd15() -> None:
    from samplers.bench.comfy_builtin import load_comfy

    load_comfy(os.environ["COMFYUI_PATH"])
    import comfy.model_detection

    from dpmsolver_tools.make_test_checkpoint import unet_shapes

    shapes = unet_shapes(ksampler.SD15_UNET)
    config = comfy.model_detection.model_config_from_unet(
        {k: torch.empty(s, device="meta") for k, s in shapes.items()}, "")
    assert type(config).__name__ == "SD15"
    assert sum(math.prod(s) for s in shapes.values()) == pytest.approx(860e6, rel=0.01)
