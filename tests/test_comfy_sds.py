"""SDS on the ComfyUI side without ComfyUI: noise levels from percent or sigma, the post-CFG hook, the csd path of
the dpm_solver_sds sampler function, and input validation of the SDS nodes (stand-in comfy package)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from test_comfy_support import (
    FakeDenoiser,
    fake_comfy_package,
    make_model_sampling,
    sd15_sigma_table,
)

from samplers import SAMPLERS

PACKAGE = "dpm_solver_samplers_sds_test"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict, Any]]:
    with fake_comfy_package(monkeypatch, PACKAGE) as loaded:
        yield loaded


class PercentSampling:
    """percent_to_sigma like ComfyUI's: discrete VE (SD1.5 table, t = (1 - p) * 999, log-sigma interpolated) or
    shifted flow (sigma = s t / (1 + (s - 1) t), t = 1 - p)."""

    def __init__(self, family: str, shift: float = 3.0) -> None:
        self.family, self.shift = family, shift
        self.table = sd15_sigma_table().double()
        self.sigma_max = 1.0 if family == "flow" else float(self.table[-1])

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0 and self.family != "flow":
            return 999999999.9  # what ComfyUI's discrete schedules answer at 0
        t = 1.0 - percent
        if self.family == "flow":
            return self.shift * t / (1.0 + (self.shift - 1.0) * t)
        k = t * 999.0
        lo = math.floor(k)
        hi = min(lo + 1, 999)
        w = k - lo
        return math.exp((1 - w) * math.log(float(self.table[lo])) + w * math.log(float(self.table[hi])))


# --- noise levels ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["ve", "flow"])
def test_percent_and_sigma_are_inverse(env: tuple[dict, Any], family: str) -> None:
    _, package = env
    sig = package.nodes.sds_sigmas
    ms = PercentSampling(family)
    assert sig.sigma_at_percent(ms, 0.0) == ms.sigma_max
    previous = math.inf
    for p in (0.0, 0.01, 0.3, 0.5, 0.9, 0.999):
        sigma = sig.sigma_at_percent(ms, p)
        assert 0.0 < sigma < previous
        previous = sigma
        assert sig.percent_at_sigma(ms, sigma) == pytest.approx(p, abs=1e-9)
    assert sig.percent_at_sigma(ms, 2 * ms.sigma_max) == 0.0


@pytest.mark.parametrize("family", ["ve", "flow"])
def test_annealing_is_linear_in_percent_with_exact_ends(env: tuple[dict, Any], family: str) -> None:
    _, package = env
    sig = package.nodes.sds_sigmas
    ms = PercentSampling(family)
    grid = sig.annealing_sigmas(ms, family, 5, 0.2, 0.8)
    assert grid[0] == sig.sigma_at_percent(ms, 0.2) and grid[-1] == sig.sigma_at_percent(ms, 0.8)
    assert [sig.percent_at_sigma(ms, s) for s in grid] == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8], abs=1e-9)
    start = 0.5 * sig.sigma_at_percent(ms, 0.1)
    grid = sig.annealing_sigmas(ms, family, 3, 0.9, 0.8, start_sigma=start)
    middle = 0.5 * (sig.percent_at_sigma(ms, start) + 0.8)
    assert grid[0] == start and grid[1] == pytest.approx(sig.sigma_at_percent(ms, middle), rel=1e-9)
    assert sig.annealing_sigmas(ms, family, 1, 0.2, 0.8) == [sig.sigma_at_percent(ms, 0.2)]
    assert sig.sds_sigma(ms, family, 0.7, 0.25) == 0.25 and sig.sds_sigma(ms, family, 0.7, 1) == 1.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda s, ms: s.sigma_at_percent(ms, 1.0), "input 'percent' must be at least 0 and below 1"),
    (lambda s, ms: s.sds_sigma(ms, "flow", 0.5, 1.5), "input 'sigma' must be at most 1 on a flow model"),
    (lambda s, ms: s.sds_sigma(ms, "flow", 0.5, -0.1), "input 'sigma' must be a positive number"),
    (lambda s, ms: s.check_sigma(0.0, "ve"), "input 'sigma' must be a positive number"),
    (lambda s, ms: s.sds_sigma(SimpleNamespace(sigma_max=14.6, percent_to_sigma=lambda p: 0.0), "ve", 0.5, 0,
                               ("start_percent", "start_sigma")), "input 'start_percent' must be a positive number"),
    (lambda s, ms: s.annealing_sigmas(ms, "flow", 0, 0.2, 0.8), "input 'steps' must be a whole number"),
    (lambda s, ms: s.annealing_sigmas(ms, "flow", 4, 0.2, 1.0), "input 'end_percent' must be at least 0"),
    (lambda s, ms: s.annealing_sigmas(ms, "flow", 4, 0.2, 0.8, end_sigma=3.0), "input 'end_sigma' must be at most 1"),
])
def test_bad_noise_levels_name_the_input(env: tuple[dict, Any], call: Any, message: str) -> None:
    _, package = env
    with pytest.raises(package.nodes.widgets.InputError, match=message):
        call(package.nodes.sds_sigmas, PercentSampling("flow"))


# --- the post-CFG hook ----------------------------------------------------------------------------------------

def test_hook_is_appended_without_touching_the_hosts_options(env: tuple[dict, Any]) -> None:
    _, package = env
    guidance = package.nodes.sds_guidance

    def theirs(args: dict[str, Any]) -> torch.Tensor:
        return args["denoised"]

    model_options = {guidance.POST_CFG_KEY: [theirs], "transformer_options": {"a": 1}}
    extra_args = {"model_options": model_options, "seed": 3}
    hooked, recorder = guidance.with_guidance_hook(extra_args)
    assert model_options == {guidance.POST_CFG_KEY: [theirs], "transformer_options": {"a": 1}}
    assert hooked["seed"] == 3 and hooked["model_options"][guidance.POST_CFG_KEY] == [theirs, recorder]
    assert hooked["model_options"][guidance.NO_CFG1_SHORTCUT_KEY] is True
    assert recorder.parts() is None
    cond, uncond, denoised = torch.ones(2), torch.zeros(2), torch.full((2,), 7.0)
    assert recorder({"cond_denoised": cond, "uncond_denoised": uncond, "cond_scale": 4, "denoised": denoised}) \
        is denoised
    assert recorder.parts() == (cond, uncond, 4.0) and recorder.calls == 1


def test_recorded_parts_are_blended_like_comfyuis_output_under_an_inpaint_mask(env: tuple[dict, Any]) -> None:
    """KSamplerX0Inpaint blends D m + latent (1 - m) after CFG; the recorder blends both parts with the mask of the
    same call, which it records through denoise_mask_function (the host's own still runs first)."""
    _, package = env
    guidance = package.nodes.sds_guidance

    class Inpaint:  # what ComfyUI hands the sampler: KSamplerX0Inpaint with its latent_image
        latent_image = torch.full((1, 4), 10.0)

    def theirs(sigma: torch.Tensor, mask: torch.Tensor, extra_options: Any = None) -> torch.Tensor:
        return mask * 0.5

    hooked, recorder = guidance.with_guidance_hook({"model_options": {guidance.MASK_FUNCTION_KEY: theirs}},
                                                   Inpaint())
    cond, uncond = torch.ones(1, 4), torch.zeros(1, 4)
    recorder({"cond_denoised": cond, "uncond_denoised": uncond, "cond_scale": 3.0, "denoised": cond})
    assert recorder.parts() == (cond, uncond, 3.0)  # no mask seen: as recorded
    mapped = hooked["model_options"][guidance.MASK_FUNCTION_KEY](torch.ones(1), torch.tensor([[0.0, 0.0, 1.0, 1.0]]),
                                                                 extra_options={})
    assert torch.equal(mapped, torch.tensor([[0.0, 0.0, 0.5, 0.5]]))
    blended_cond, blended_uncond, cfg = recorder.parts()
    assert torch.equal(blended_cond, torch.tensor([[10.0, 10.0, 5.5, 5.5]]))
    assert torch.equal(blended_uncond, torch.tensor([[10.0, 10.0, 5.0, 5.0]])) and cfg == 3.0


class CfgDenoiser(FakeDenoiser):
    """ComfyUI's denoiser as far as CFG goes: D_cond = 0.5 x, D_uncond = 0.2 x, D_cfg = D_uncond + cfg (D_cond -
    D_uncond), then the post-CFG functions of model_options."""

    CFG = 3.0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, denoise_mask: Any = None, model_options: Any = None,
                 seed: Any = None) -> torch.Tensor:
        super().__call__(x, sigma, denoise_mask, model_options, seed)
        cond, uncond = 0.5 * x, 0.2 * x
        out = uncond + self.CFG * (cond - uncond)
        for fn in (model_options or {}).get("sampler_post_cfg_function", []):
            out = fn({"denoised": out, "cond_denoised": cond, "uncond_denoised": uncond, "cond_scale": self.CFG})
        return out


def _grid() -> torch.Tensor:
    return torch.tensor([14.6, 4.0, 1.0, 0.3, 0.0])


def test_csd_gets_the_parts_from_the_hook(env: tuple[dict, Any]) -> None:
    modules, _ = env
    sample = modules["comfy.k_diffusion.sampling"].sample_dpm_solver_sds
    denoiser = CfgDenoiser(make_model_sampling(modules, "eps"))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 14.6
    model_options: dict[str, Any] = {"transformer_options": {}}
    out = sample(denoiser, x, _grid(), extra_args={"model_options": model_options, "seed": 5}, sds_mode="csd")
    assert model_options == {"transformer_options": {}}  # the host's dict is not modified
    seen = [call[1]["model_options"] for call in denoiser.calls]
    assert len(seen) == 4 and all(o["disable_cfg1_optimization"] for o in seen)

    latest: dict[str, Any] = {}

    def reference_model(y: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        latest["parts"] = (0.5 * y, 0.2 * y, CfgDenoiser.CFG)
        return 0.2 * y + CfgDenoiser.CFG * 0.3 * y

    expected = SAMPLERS["dpm_solver_sds"](reference_model, x, _grid(), schedule="ve", seed=5, sds_mode="csd",
                                          guidance_parts=lambda: latest["parts"], disable=True)
    torch.testing.assert_close(out, expected)


def test_other_modes_leave_the_model_options_alone(env: tuple[dict, Any]) -> None:
    modules, _ = env
    sample = modules["comfy.k_diffusion.sampling"].sample_dpm_solver_sds
    denoiser = CfgDenoiser(make_model_sampling(modules, "flow"))
    model_options: dict[str, Any] = {}
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sample(denoiser, x, torch.tensor([1.0, 0.5, 0.2, 0.0]), extra_args={"model_options": model_options, "seed": 1})
    assert all(call[1]["model_options"] is model_options for call in denoiser.calls)


def test_the_sds_sampler_node_builds_a_csd_sampler(env: tuple[dict, Any]) -> None:
    _, package = env
    cls = package.NODE_CLASS_MAPPINGS["DPMSolverSampler_dpm_solver_sds"]
    inputs = {name: options["default"] for name, (_, options) in cls.INPUT_TYPES()["required"].items()}
    assert "guidance_parts" not in inputs
    (sampler,) = cls().get_sampler(**{**inputs, "sds_mode": "csd"})
    assert sampler.extra_options["sds_mode"] == "csd" and "guidance_parts" not in sampler.extra_options


SDS_NUMBERS = {"sds_lr": ("FLOAT", 0.001, 10.0, 1.0), "sds_inner_steps": ("INT", 1, 50, 1),
               "sds_grad_clip": ("FLOAT", 0.0, 1000.0, 0.0), "sds_inversion_steps": ("INT", 1, 50, 4)}
"""The SDS sampler node's numeric inputs: kind, min, max, default."""


def test_the_sds_sampler_nodes_numbers_have_sensible_ranges(env: tuple[dict, Any]) -> None:
    _, package = env
    cls = package.NODE_CLASS_MAPPINGS["DPMSolverSampler_dpm_solver_sds"]
    spec = cls.INPUT_TYPES()["required"]
    assert list(spec) == list(package.nodes.interface.RELEASED_INPUTS["DPMSolverSampler_dpm_solver_sds"])
    for name, (kind, low, high, default) in SDS_NUMBERS.items():
        got_kind, options = spec[name]
        assert (got_kind, options["min"], options["max"], options["default"]) == (kind, low, high, default), name
        assert 0 < options["step"] <= (1 if kind == "INT" else 0.1), name
        assert options["tooltip"].startswith("Score distillation") and len(options["tooltip"]) > 60, name


@pytest.mark.parametrize(("name", "value", "message"), [
    ("sds_lr", 0.0, "input 'sds_lr' must be at least 0.001"),
    ("sds_lr", 11.0, "input 'sds_lr' must be at most 10.0"),
    ("sds_inner_steps", 51, "input 'sds_inner_steps' must be at most 50"),
    ("sds_inner_steps", 2**31 - 1, "input 'sds_inner_steps' must be at most 50"),
    ("sds_grad_clip", -1.0, "input 'sds_grad_clip' must be at least 0.0"),
    ("sds_grad_clip", 1e9, "input 'sds_grad_clip' must be at most 1000.0"),
    ("sds_inversion_steps", 0, "input 'sds_inversion_steps' must be at least 1"),
    ("sds_inversion_steps", 51, "input 'sds_inversion_steps' must be at most 50"),
])
def test_the_sds_sampler_node_refuses_numbers_out_of_range(env: tuple[dict, Any], name: str, value: Any,
                                                           message: str) -> None:
    _, package = env
    cls = package.NODE_CLASS_MAPPINGS["DPMSolverSampler_dpm_solver_sds"]
    inputs = {n: options["default"] for n, (_, options) in cls.INPUT_TYPES()["required"].items()}
    with pytest.raises(package.nodes.widgets.InputError, match=f"^DPM-Solver SDS: {message}"):
        cls().get_sampler(**{**inputs, name: value})


# --- the nodes' inputs ----------------------------------------------------------------------------------------

class Patcher:
    """A MODEL with a model_sampling and an affine latent format x_model = (x - shift) * scale."""

    def __init__(self, model_sampling: Any, scale: float = 0.5, shift: float = 0.25) -> None:
        self.objects = {"model_sampling": model_sampling,
                        "latent_format": type("Format", (), {
                            "process_out": staticmethod(lambda z: z / scale + shift)})()}

    def get_model_object(self, name: str) -> Any:
        return self.objects[name]


def test_a_latent_difference_maps_with_the_scale_only(env: tuple[dict, Any]) -> None:
    _, package = env
    delta = torch.randn(1, 4, 2, 2)
    out = package.nodes.sds_nodes.latent_difference_out(Patcher(PercentSampling("ve")), delta)
    torch.testing.assert_close(out, delta / 0.5)


def _gradient_inputs(**changes: Any) -> dict[str, Any]:
    return {"percent": 0.5, "sigma": 0.0, "cfg": 7.5, "seed": 0, "mode": "sds", "weighting": "dreamfusion", **changes}


def _refine_inputs(**changes: Any) -> dict[str, Any]:
    return {"steps": 4, "optimizer": "adam", "lr": 0.05, "start_percent": 0.3, "end_percent": 0.9,
            "start_sigma": 0.0, "end_sigma": 0.0, "cfg": 7.5, "seed": 0, "mode": "sds", "weighting": "dreamfusion",
            "inner_steps": 1, "grad_clip": 0.0, **changes}


def test_node_defaults_are_the_documented_inputs(env: tuple[dict, Any]) -> None:
    _, package = env
    for node_id, expected in (("DPMSolverSDSGradient", _gradient_inputs()),
                              ("DPMSolverSDSRefine", _refine_inputs(steps=20))):
        spec = package.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"]
        defaults = {name: options["default"] for name, (_, options) in spec.items() if "default" in options}
        assert defaults == expected
        assert spec["seed"][1]["control_after_generate"] is True
        assert spec["mode"][0] == ["sds", "csd", "sdi"] and spec["weighting"][0] == ["dreamfusion", "sjc", "uniform"]


@pytest.mark.parametrize(("node_id", "changes", "message"), [
    ("DPMSolverSDSGradient", {"mode": "bogus"}, "input 'mode' must be one of 'sds', 'csd', 'sdi'"),
    ("DPMSolverSDSGradient", {"percent": 1.0}, "input 'percent' must be at most 0.999"),
    ("DPMSolverSDSGradient", {"sigma": 3.0}, "input 'sigma' must be at most 1 on a flow model"),
    ("DPMSolverSDSRefine", {"lr": 0.0}, "input 'lr' must be at least 1e-06"),
    ("DPMSolverSDSRefine", {"optimizer": "lbfgs"}, "input 'optimizer' must be one of 'sgd', 'adam'"),
    ("DPMSolverSDSRefine", {"steps": 2.5}, "input 'steps' must be a whole number"),
    ("DPMSolverSDSRefine", {"end_sigma": 1.5}, "input 'end_sigma' must be at most 1 on a flow model"),
])
def test_bad_inputs_are_refused_by_name(env: tuple[dict, Any], node_id: str, changes: dict[str, Any],
                                        message: str) -> None:
    modules, package = env
    cls = package.NODE_CLASS_MAPPINGS[node_id]
    ms = make_model_sampling(modules, "flow")
    ms.percent_to_sigma = PercentSampling("flow").percent_to_sigma
    model = Patcher(ms)
    inputs = (_gradient_inputs if node_id == "DPMSolverSDSGradient" else _refine_inputs)(**changes)
    run = getattr(cls(), cls.FUNCTION)
    with pytest.raises(package.nodes.widgets.InputError, match=f"{cls.DISPLAY_NAME}: {message}"):
        run(model, [], [], {"samples": torch.zeros(1, 4, 8, 8)}, **inputs)
