"""The SDS nodes and the csd hook inside a real ComfyUI, in-process (skipped without COMFYUI_PATH).

The model is a random-weight UNet that ComfyUI detects as SD1.5 (dpmsolver_tools/make_test_checkpoint.py's
UNet, no CLIP or VAE: conditioning tensors are made up), loaded with ComfyUI's own loader; ModelSamplingSD3 in
front of it gives the flow path. Checks are identities that hold for any weights:

- csd through the post-CFG hook equals the difference of two sds gradients at cfg = c and cfg = 0 (same noise);
- latent - gradient == target in the LATENT's space (the latent scale factor is respected);
- one SGD step of lr 1 with uniform weighting moves the latent exactly to the gradient node's target;
- the SDS sampler in mode csd gets distinct conditional and unconditional predictions through the hook.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from comfy_inprocess import conditioning, real_comfy_models

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: needs a ComfyUI checkout")

PACKAGE = "dpm_solver_samplers_sds_inprocess"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with real_comfy_models(COMFYUI_PATH or "", tmp_path_factory.mktemp("stubs")) as models:
        import comfy
        from test_comfy_support import load_package, purge_package

        package = load_package(PACKAGE)
        yield {"package": package, **models, "comfy": comfy}
        purge_package(PACKAGE)


POSITIVE, NEGATIVE = conditioning(1), conditioning(2)


def latent(batch: int = 2) -> dict[str, Any]:
    return {"samples": torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(3))}


def node(env: dict[str, Any], node_id: str) -> Any:
    return env["package"].NODE_CLASS_MAPPINGS[node_id]()


def gradient(env: dict[str, Any], family: str, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor, float]:
    values = {"percent": 0.5, "sigma": 0.0, "cfg": 5.0, "seed": 7, "mode": "sds", "weighting": "dreamfusion",
              **inputs}
    lat = inputs.pop("latent", None) or latent()
    values.pop("latent", None)
    g, t, loss = node(env, "DPMSolverSDSGradient").gradient(env[family], POSITIVE, NEGATIVE, lat, **values)
    return g["samples"], t["samples"], loss


@pytest.mark.parametrize("family", ["ve", "flow"])
def test_csd_through_the_hook_is_the_guidance_part_of_sds(env: dict[str, Any], family: str) -> None:
    cfg = 4.0
    csd, _, _ = gradient(env, family, mode="csd", cfg=cfg, weighting="sjc")
    full, _, _ = gradient(env, family, mode="sds", cfg=cfg, weighting="sjc")
    uncond_only, _, _ = gradient(env, family, mode="sds", cfg=0.0, weighting="sjc")
    assert csd.abs().max() > 1e-3
    torch.testing.assert_close(csd, full - uncond_only, rtol=1e-3, atol=1e-3 * float(csd.abs().max()))


@pytest.mark.parametrize("family", ["ve", "flow"])
@pytest.mark.parametrize("mode", ["sds", "csd", "sdi"])
def test_gradient_and_target_are_in_the_latent_space(env: dict[str, Any], family: str, mode: str) -> None:
    lat = latent()
    g, target, loss = gradient(env, family, mode=mode, latent=lat)
    assert g.shape == target.shape == lat["samples"].shape
    assert torch.isfinite(g).all() and loss > 0.0
    torch.testing.assert_close(lat["samples"] - g, target, rtol=1e-4, atol=1e-4)
    scale = env[family].get_model_object("latent_format").scale_factor
    assert loss == pytest.approx(0.5 * float((g * scale).square().mean()), rel=1e-4)


def test_percent_and_sigma_agree(env: dict[str, Any]) -> None:
    ms = env["ve"].get_model_object("model_sampling")
    sigma = float(ms.percent_to_sigma(0.3))
    by_percent, _, _ = gradient(env, "ve", percent=0.3)
    by_sigma, _, _ = gradient(env, "ve", percent=0.9, sigma=sigma)
    torch.testing.assert_close(by_percent, by_sigma)


@pytest.mark.parametrize("family", ["ve", "flow"])
def test_one_sgd_step_of_lr_1_reaches_the_target(env: dict[str, Any], family: str) -> None:
    lat = latent()
    _, target, loss = gradient(env, family, weighting="uniform", percent=0.4, latent=lat)
    refined, last, history = node(env, "DPMSolverSDSRefine").refine(
        env[family], POSITIVE, NEGATIVE, lat, steps=1, optimizer="sgd", lr=1.0, start_percent=0.4,
        end_percent=0.9, start_sigma=0.0, end_sigma=0.0, cfg=5.0, seed=7, mode="sds", weighting="uniform",
        inner_steps=1, grad_clip=0.0)
    torch.testing.assert_close(refined["samples"], target, rtol=1e-4, atol=1e-4)
    assert history == [pytest.approx(loss, rel=1e-4)] and last == history[0]


@pytest.mark.parametrize("family", ["ve", "flow"])
@pytest.mark.parametrize(("mode", "optimizer"), [("sds", "adam"), ("csd", "sgd"), ("sdi", "adam")])
def test_refine_runs_every_mode(env: dict[str, Any], family: str, mode: str, optimizer: str) -> None:
    lat = latent()
    refined, last, history = node(env, "DPMSolverSDSRefine").refine(
        env[family], POSITIVE, NEGATIVE, lat, steps=3, optimizer=optimizer, lr=0.05, start_percent=0.2,
        end_percent=0.8, start_sigma=0.0, end_sigma=0.0, cfg=5.0, seed=1, mode=mode, weighting="dreamfusion",
        inner_steps=2, grad_clip=1.0)
    out = refined["samples"]
    assert out.shape == lat["samples"].shape and torch.isfinite(out).all()
    assert not torch.equal(out, lat["samples"])
    assert len(history) == 6 and last == history[-1] and all(h > 0 for h in history)


def test_flow_sigma_above_one_is_refused_by_name(env: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"input 'sigma' must be at most 1 on a flow model"):
        gradient(env, "flow", sigma=2.0)


@pytest.mark.parametrize("family", ["ve", "flow"])
def test_sds_sampler_in_csd_mode_sees_distinct_cond_and_uncond(env: dict[str, Any], family: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import comfy.samplers

    guidance = env["package"].nodes.sds_guidance
    seen: list[tuple[torch.Tensor, torch.Tensor, float]] = []

    class Spy(guidance.GuidanceRecorder):
        def __call__(self, args: dict[str, Any]) -> torch.Tensor:
            out = super().__call__(args)
            assert self.latest is not None
            seen.append(self.latest)
            return out

    monkeypatch.setattr(guidance, "GuidanceRecorder", Spy)
    node_cls = env["package"].NODE_CLASS_MAPPINGS["DPMSolverSampler_dpm_solver_sds"]
    spec = node_cls.INPUT_TYPES()["required"]
    inputs = {name: options["default"] for name, (_, options) in spec.items()}
    model = env[family]
    results = {}
    for mode in ("csd", "sds"):
        (sampler,) = node_cls().get_sampler(**{**inputs, "sds_mode": mode})
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(POSITIVE, NEGATIVE)
        guider.set_cfg(1.0)  # ComfyUI skips the unconditional call at cfg 1 unless the hook asks for it
        sigmas = torch.tensor([1.0, 0.6, 0.3, 0.0]) if family == "flow" else torch.tensor([14.6, 3.0, 0.5, 0.0])
        noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
        with torch.inference_mode():
            results[mode] = guider.sample(noise, torch.zeros(1, 4, 8, 8), sampler, sigmas, seed=5)
    assert len(seen) == 3  # one per model call of the csd run, none in the sds run
    for cond, uncond, cfg in seen:
        assert cfg == 1.0 and cond.shape == uncond.shape == (1, 4, 8, 8)
        assert (cond - uncond).abs().max() > 1e-3
    assert torch.isfinite(results["csd"]).all() and not torch.allclose(results["csd"], results["sds"])


@pytest.mark.parametrize("family", ["ve", "flow"])
@pytest.mark.parametrize("mode", ["sds", "csd", "sdi"])
def test_refine_keeps_the_latent_outside_its_noise_mask(env: dict[str, Any], family: str, mode: str) -> None:
    """csd once read its conditional and unconditional parts before ComfyUI blends the mask in (0.8 off outside)."""
    lat = latent(1)
    mask = torch.zeros(1, 8, 8)
    mask[:, :, 4:] = 1.0  # only the right half may change
    refined, _, _ = node(env, "DPMSolverSDSRefine").refine(
        env[family], POSITIVE, NEGATIVE, {**lat, "noise_mask": mask}, steps=3, optimizer="adam", lr=0.1,
        start_percent=0.2, end_percent=0.8, start_sigma=0.0, end_sigma=0.0, cfg=5.0, seed=1, mode=mode,
        weighting="uniform", inner_steps=1, grad_clip=0.0)
    out, before = refined["samples"], lat["samples"]
    torch.testing.assert_close(out[..., :4], before[..., :4], rtol=1e-5, atol=1e-5)
    assert (out[..., 4:] - before[..., 4:]).abs().max() > 1e-2
    g, _, _ = gradient(env, family, mode=mode, latent={**lat, "noise_mask": mask})
    assert float(g[..., :4].abs().max()) <= 1e-5 < float(g[..., 4:].abs().max())


@pytest.mark.parametrize("family", ["ve", "flow"])
def test_sds_sampler_in_csd_mode_keeps_the_latent_outside_the_mask(env: dict[str, Any], family: str) -> None:
    """The sampler path (KSamplerX0Inpaint's mask, with a host denoise_mask_function kept): outside the mask the
    result is the latent, as with every other sampler."""
    import comfy.samplers

    node_cls = env["package"].NODE_CLASS_MAPPINGS["DPMSolverSampler_dpm_solver_sds"]
    spec = node_cls.INPUT_TYPES()["required"]
    (sampler,) = node_cls().get_sampler(**{**{n: o["default"] for n, (_, o) in spec.items()}, "sds_mode": "csd"})
    model = env[family].clone()
    mapped: list[int] = []

    def host_mask_function(sigma: torch.Tensor, mask: torch.Tensor, extra_options: Any = None) -> torch.Tensor:
        mapped.append(1)
        return mask

    model.model_options["denoise_mask_function"] = host_mask_function
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(POSITIVE, NEGATIVE)
    guider.set_cfg(5.0)
    sigmas = torch.tensor([0.6, 0.3, 0.1, 0.0]) if family == "flow" else torch.tensor([3.0, 1.0, 0.3, 0.0])
    image = latent(1)["samples"]
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1.0
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        out = guider.sample(noise, image, sampler, sigmas, denoise_mask=mask, seed=5)
    torch.testing.assert_close(out[..., :4], image[..., :4], rtol=1e-5, atol=1e-5)
    assert (out[..., 4:] - image[..., 4:]).abs().max() > 1e-2 and mapped


@pytest.mark.parametrize(("mode", "calls_per_step"), [("sds", 1), ("sdi", 5)])
def test_refine_progress_counts_model_calls_and_a_cancel_stops_it(env: dict[str, Any], mode: str,
                                                                  calls_per_step: int) -> None:
    """ComfyUI's progress hook sees every model call (sdi: 4 inversion calls + 1 per step) and is where a
    user's Cancel is raised: raising there stops the run at once."""
    import comfy.model_management
    import comfy.utils

    seen: list[tuple[int, int]] = []
    stop_at: list[int] = [0]

    def hook(value: int, total: int, preview: Any, node_id: Any = None) -> None:
        seen.append((value, total))
        if value == stop_at[0]:
            raise comfy.model_management.InterruptProcessingException()

    inputs = {"steps": 3, "optimizer": "sgd", "lr": 0.1, "start_percent": 0.2, "end_percent": 0.8,
              "start_sigma": 0.0, "end_sigma": 0.0, "cfg": 5.0, "seed": 1, "mode": mode, "weighting": "uniform",
              "inner_steps": 2, "grad_clip": 0.0}
    refine = node(env, "DPMSolverSDSRefine").refine
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        refine(env["ve"], POSITIVE, NEGATIVE, latent(1), **inputs)
        total = 3 * 2 * calls_per_step
        assert seen == [(i, total) for i in range(1, total + 1)]
        seen.clear()
        stop_at[0] = 2
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            refine(env["ve"], POSITIVE, NEGATIVE, latent(1), **inputs)
        assert seen == [(1, total), (2, total)]
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
