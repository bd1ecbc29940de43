"""The WebUI end-to-end harness (dpmsolver_tools/webui_server.py) without a WebUI: how it starts each host on the CPU,
the model config it gives A1111 for the test checkpoint, and the offline Hugging Face cache."""

from __future__ import annotations

import json
from pathlib import Path

from dpmsolver_tools.make_test_checkpoint import KL_VAE_CONFIG, VARIANTS, ldm_config
from dpmsolver_tools.webui_server import CLIP_L_FILES, cpu_arguments, offline_hub


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


def test_the_offline_cache_holds_clip_l_from_comfyui(tmp_path: Path) -> None:
    comfyui = tmp_path / "ComfyUI"
    for name, source in CLIP_L_FILES.items():
        (comfyui / source).parent.mkdir(parents=True, exist_ok=True)
        (comfyui / source).write_text(f"ComfyUI's {name}")
    env = offline_hub(tmp_path / "work", comfyui)
    assert env == {"HF_HOME": str(tmp_path / "work" / "huggingface"), "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1"}
    repo = tmp_path / "work" / "huggingface" / "hub" / "models--openai--clip-vit-large-patch14"
    snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text()
    assert {p.name: p.read_text() for p in snapshot.iterdir()} == {name: f"ComfyUI's {name}" for name in CLIP_L_FILES}
    assert offline_hub(tmp_path / "work", None) == env  # later runs reuse the cache
    assert {"vocab.json", "merges.txt", "config.json"} <= set(CLIP_L_FILES)
