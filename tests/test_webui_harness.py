"""The WebUI end-to-end harness (dpmsolver_tools/webui_server.py) without a WebUI: how it starts each host on the CPU,
the model config it gives A1111 for the test checkpoint, the SD3 test checkpoint's shape, and the offline Hugging Face
cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dpmsolver_tools.make_test_checkpoint import (
    DETECTED,
    KL_VAE_CONFIG,
    MMDIT_CONFIG,
    SD3_VAE_CONFIG,
    VARIANTS,
    ldm_config,
)
from dpmsolver_tools.webui_server import HUB_FILES, TEST_CHECKPOINTS, cpu_arguments, offline_hub, prepare_datadir


def test_the_forge_family_runs_with_always_cpu_and_a1111_with_use_cpu(tmp_path: Path) -> None:
    """Forge defines its options in backend/args.py, reForge and Forge Classic in ldm_patched's args_parser.py."""
    for name in ("backend/args.py", "ldm_patched/modules/args_parser.py"):
        (tmp_path / name).parent.mkdir(parents=True)
        (tmp_path / name).write_text('vram_group.add_argument("--always-cpu", action="store_true")\n')
        assert cpu_arguments(tmp_path) == ["--always-cpu"]
        (tmp_path / name).unlink()
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "cmd_args.py").write_text('parser.add_argument("--use-cpu", nargs="+")\n')
    assert cpu_arguments(tmp_path) == ["--use-cpu", "all", "--no-half"]


def test_the_ldm_config_describes_the_webui_checkpoint() -> None:
    """One level of SD1.5's width with attention, a middle block of one transformer, SD1.5's KL VAE and CLIP-L."""
    params = json.loads(ldm_config())["model"]["params"]
    unet = params["unet_config"]["params"]
    variant = VARIANTS["webui"][0]
    assert (unet["model_channels"], unet["channel_mult"], unet["num_res_blocks"], unet["transformer_depth"]) == \
        (variant["model_channels"], variant["channel_mult"], 1, 1) == (320, [1], 1, 1)
    assert unet["attention_resolutions"] == [1] and unet["context_dim"] == 768 and unet["num_heads"] == 8
    assert params["first_stage_config"]["params"]["ddconfig"] == KL_VAE_CONFIG
    assert params["cond_stage_config"]["target"].endswith("FrozenCLIPEmbedder")
    assert (params["linear_start"], params["linear_end"], params["scale_factor"]) == (0.00085, 0.012, 0.18215)


def test_the_sd3_checkpoint_has_the_shapes_a1111_reads_its_model_from() -> None:
    """A1111 sizes the MMDiT from the tensors (depth = hidden size / 64, a square of position embeddings) but feeds it
    SD3's own inputs: 16 latent channels, CLIP-L + CLIP-G pooled (768 + 1280) and a 4096-wide token context."""
    context = MMDIT_CONFIG["context_embedder_config"]["params"]
    assert context["out_features"] == 64 * MMDIT_CONFIG["depth"] and context["in_features"] == 4096
    assert MMDIT_CONFIG["adm_in_channels"] == 768 + 1280 and MMDIT_CONFIG["in_channels"] == 16
    assert math.isqrt(MMDIT_CONFIG["num_patches"]) == MMDIT_CONFIG["pos_embed_max_size"] >= 512 // 8 // 2
    assert SD3_VAE_CONFIG == {**KL_VAE_CONFIG, "z_channels": 16}
    assert DETECTED == {"comfyui": "SD15", "webui": "SD15", "sd3": "SD3"} and set(TEST_CHECKPOINTS) < set(DETECTED)


@pytest.mark.parametrize("variant", ["webui", "sd3"])
def test_the_data_directory_without_comfyui_needs_the_checkpoint_built(tmp_path: Path, variant: str) -> None:
    """Only the SD1.5 checkpoint gets an LDM config beside it (A1111 finds SD3's by its keys)."""
    checkpoint = tmp_path / "models" / "Stable-diffusion" / TEST_CHECKPOINTS[variant]
    with pytest.raises(FileNotFoundError, match=f"{checkpoint}.*COMFYUI_PATH"):
        prepare_datadir(tmp_path, None, variant)
    checkpoint.write_bytes(b"")
    assert prepare_datadir(tmp_path, None, variant) == checkpoint
    assert checkpoint.with_suffix(".yaml").exists() == (variant == "webui")
    assert (tmp_path / "extensions").is_dir() and json.loads((tmp_path / "config.json").read_text())


def test_the_offline_cache_holds_the_hub_files_from_comfyui(tmp_path: Path) -> None:
    comfyui = tmp_path / "ComfyUI"
    for repo, files in HUB_FILES.items():
        for name, source in files.items():
            (comfyui / source).parent.mkdir(parents=True, exist_ok=True)
            (comfyui / source).write_text(f"ComfyUI's {repo} {name}")
    env = offline_hub(tmp_path / "work", comfyui)
    assert env == {"HF_HOME": str(tmp_path / "work" / "huggingface"), "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1"}
    for repo, files in HUB_FILES.items():
        cached = tmp_path / "work" / "huggingface" / "hub" / f"models--{repo.replace('/', '--')}"
        snapshot = cached / "snapshots" / (cached / "refs" / "main").read_text()
        assert {p.name: p.read_text() for p in snapshot.iterdir()} == {n: f"ComfyUI's {repo} {n}" for n in files}
    assert offline_hub(tmp_path / "work", None) == env  # later runs reuse the cache
    assert {"vocab.json", "merges.txt", "config.json"} <= set(HUB_FILES["openai/clip-vit-large-patch14"])
    assert "tokenizer.json" in HUB_FILES["google/t5-v1_1-xxl"]
