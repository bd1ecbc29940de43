"""Build a random-weight checkpoint that ComfyUI loads as Stable Diffusion 1.5, offline, from ComfyUI's classes.

    python dpmsolver_tools/make_test_checkpoint.py --comfyui /tmp/ComfyUI --out /tmp/models/checkpoints/test.safetensors

Every tensor of the three parts is filled (no "missing keys" when ComfyUI loads it):

- model.diffusion_model.*: ComfyUI's UNetModel with SD1.5's width (model_channels 320, context_dim 768, 8
  heads) but a single level with one res block + transformer and no middle block (~26 M parameters), which
  ComfyUI's model detection still classifies as SD15;
- cond_stage_model.transformer.text_model.*: ComfyUI's CLIP-L text model (SD1.5's text encoder);
- first_stage_model.*: ComfyUI's TAESD (a tiny VAE with the SD1.5 latent: 4 channels, /8).

Weights are N(0, 1/fan_in) with a fixed seed, biases 0, norm scales 1: the outputs are finite noise, so the
checkpoint exercises every code path of a real one at a fraction of the cost, and produces no picture.
Stored in float16 (~300 MB). Runs with ComfyUI's requirements installed; imports ComfyUI from --comfyui.

`--variant webui` makes the checkpoint the WebUI end-to-end test loads in Forge (tests/test_webui_e2e.py): Forge's
UNet always builds a middle block and its VAE is SD1.5's KL autoencoder, so that variant has a middle block (one
res block + transformer + res block) and a random KL VAE of SD1.5's shape (~84 M parameters, ~470 MB in all).

`--variant sd3` is a rectified-flow model in SD3's checkpoint layout, for A1111's SD3 loader (which reads the MMDiT's
size from the tensor shapes, but builds SD3's VAE and text encoders at full size):
- model.diffusion_model.*: ComfyUI's MMDiT of depth 2 (hidden size 128, ~2 M parameters), which ComfyUI detects as
  SD3;
- first_stage_model.*: a KL autoencoder of SD3's shape (16 latent channels, no quant convs; ~84 M parameters);
- text_encoders.clip_l.* and text_encoders.clip_g.*: ComfyUI's CLIP-L and CLIP-G text models (~818 M parameters;
  A1111 would otherwise download them). No T5: A1111 leaves it out unless its sd3_enable_t5 setting is on.
About 1.8 GB in float16.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

UNET_CONFIG = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320, "num_res_blocks": [1],
    "channel_mult": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
    "transformer_depth_middle": -2, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
    "use_linear_in_transformer": False, "use_spatial_transformer": True, "legacy": False,
    "use_checkpoint": False, "adm_in_channels": None, "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
KL_VAE_CONFIG = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}
"""SD1.5's first-stage autoencoder (embed_dim 4)."""
SD3_VAE_CONFIG = {**KL_VAE_CONFIG, "z_channels": 16}
"""SD3's first-stage autoencoder: SD1.5's with 16 latent channels (and no quant convs)."""
MMDIT_CONFIG = {
    "patch_size": 2, "in_channels": 16, "depth": 2, "adm_in_channels": 2048, "pos_embed_max_size": 32,
    "num_patches": 1024,
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
}
"""A 2-block MMDiT (hidden size 64 * depth) with SD3's inputs: 16 latent channels, the pooled CLIP-L + CLIP-G vector
(2048) and the 4096-wide token context; position embeddings for latents up to 64 x 64 (512-pixel images)."""
VARIANTS = {"comfyui": (UNET_CONFIG, "taesd"), "webui": ({**UNET_CONFIG, "transformer_depth_middle": 1}, "kl")}
"""variant -> (UNet config, first stage: ComfyUI's TAESD or the KL autoencoder of KL_VAE_CONFIG), the SD1.5 ones."""
DETECTED = {"comfyui": "SD15", "webui": "SD15", "sd3": "SD3"}
"""variant -> the model class ComfyUI's detection must give the checkpoint's diffusion model."""


def ldm_config() -> str:
    """The webui variant as an LDM model config (A1111 builds a checkpoint's model from the `<name>.yaml` beside it,
    else from SD1.5's full-size config), written as JSON, which YAML reads."""
    unet = VARIANTS["webui"][0]
    assert unet["transformer_depth_middle"] == unet["transformer_depth"][0] and len(unet["num_res_blocks"]) == 1
    unet_params = {key: unet[key] for key in ("image_size", "in_channels", "out_channels", "model_channels",
                                              "channel_mult", "num_heads", "context_dim", "use_spatial_transformer",
                                              "use_checkpoint", "legacy")}
    unet_params.update(num_res_blocks=unet["num_res_blocks"][0], transformer_depth=unet["transformer_depth"][0],
                       attention_resolutions=[2 ** level for level in range(len(unet["channel_mult"]))])
    return json.dumps({"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "timesteps": 1000,
        "first_stage_key": "jpg", "cond_stage_key": "txt", "image_size": 64, "channels": 4,
        "cond_stage_trainable": False, "conditioning_key": "crossattn", "scale_factor": 0.18215, "use_ema": False,
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet_params},
        "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 4, "ddconfig": KL_VAE_CONFIG, "lossconfig": {"target": "torch.nn.Identity"}}},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"},
    }}}, indent=2)


def _fill(shape: tuple[int, ...], key: str, generator):
    import torch

    leaf = key.rsplit(".", 1)[-1]
    if len(shape) == 0:
        return torch.tensor(0.0 if "shift" in key else 1.0)
    if len(shape) == 1:
        if leaf == "weight" or leaf == "scale":
            return torch.ones(shape)
        return torch.zeros(shape)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=generator) / math.sqrt(fan_in)


def _shapes(module: Any) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of a torch module, by state-dict key."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def unet_shapes(config: dict = UNET_CONFIG) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of ComfyUI's UNetModel(**config), built on the meta device (comfy must be importable)."""
    import comfy.ops
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        unet = UNetModel(**config, dtype=torch.float32, device="meta", operations=comfy.ops.disable_weight_init)
    return _shapes(unet)


def random_unet_state(config: dict = UNET_CONFIG, seed: int = 0, dtype=None) -> dict:
    """UNetModel(**config)'s weights filled as this checkpoint's are (`_fill`, one generator seeded `seed`), each
    tensor cast to `dtype` (default float32) as it is made."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return {k: _fill(shape, k, generator).to(dtype or torch.float32) for k, shape in unet_shapes(config).items()}


def vae_shapes(kind: str) -> dict[str, tuple[int, ...]]:
    """First-stage parameter shapes: ComfyUI's TAESD ("taesd"), its KL autoencoder of SD1.5's shape ("kl"), or
    SD3's encoder and decoder ("sd3": SD3_VAE_CONFIG, no quant convs)."""
    import comfy.taesd.taesd
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.model import Decoder, Encoder

    with torch.device("meta"):
        if kind == "kl":
            return _shapes(AutoencoderKL(ddconfig=KL_VAE_CONFIG, embed_dim=4))
        if kind == "sd3":
            return {**{f"encoder.{k}": v for k, v in _shapes(Encoder(**SD3_VAE_CONFIG)).items()},
                    **{f"decoder.{k}": v for k, v in _shapes(Decoder(**SD3_VAE_CONFIG)).items()}}
    return _shapes(comfy.taesd.taesd.TAESD(latent_channels=4))


def checkpoint_shapes(variant: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """The checkpoint's parameter shapes, part by part (key prefix -> shapes), from ComfyUI's classes on the meta
    device (comfy must be importable)."""
    import comfy.ops
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import torch
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

    with torch.device("meta"):
        clip_l = comfy.sd1_clip.SDClipModel(device="meta")
        if variant == "sd3":
            mmdit = MMDiT(**MMDIT_CONFIG, device="meta", operations=comfy.ops.disable_weight_init)
            clip_g = comfy.sdxl_clip.SDXLClipG(device="meta")
            return {"model.diffusion_model.": _shapes(mmdit), "first_stage_model.": vae_shapes("sd3"),
                    "text_encoders.clip_l.": _shapes(clip_l), "text_encoders.clip_g.": _shapes(clip_g)}
    unet_config, first_stage = VARIANTS[variant]
    return {"model.diffusion_model.": unet_shapes(unet_config),
            "cond_stage_model.": {k: v for k, v in _shapes(clip_l).items() if k.startswith("transformer.text_model.")},
            "first_stage_model.": vae_shapes(first_stage)}


def build(comfyui: Path, out: Path, seed: int = 0, variant: str = "comfyui") -> dict[str, object]:
    """Write the checkpoint of `variant` (see the module docstring); returns a summary (parameter counts, detected
    model class)."""
    if variant not in DETECTED:
        raise ValueError(f"variant must be one of {list(DETECTED)}, got {variant!r}")
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_detection
    import comfy.utils
    import torch

    generator = torch.Generator().manual_seed(seed)
    parts = checkpoint_shapes(variant)
    state = {}
    counts = {}
    for prefix, shapes in parts.items():
        counts[prefix] = sum(math.prod(s) for s in shapes.values())
        for key, shape in shapes.items():
            state[prefix + key] = _fill(shape, key, generator).to(torch.float16).contiguous()

    detected = comfy.model_detection.model_config_from_unet(state, "model.diffusion_model.")
    name = type(detected).__name__ if detected is not None else None
    if name != DETECTED[variant]:
        raise RuntimeError(f"ComfyUI detects the test model as {name}, not {DETECTED[variant]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    comfy.utils.save_torch_file(state, str(out), metadata={"format": "pt", "note": "random test weights"})
    return {"path": str(out), "detected": name, "parameters": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI checkout")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write (.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=list(DETECTED), default="comfyui",
                        help="comfyui (default); webui: a middle block and a KL VAE, for Forge; sd3: a flow MMDiT")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(build(args.comfyui.resolve(), args.out.resolve(), args.seed, args.variant))


if __name__ == "__main__":
    main()
