"""Full generations through the registered constructor (stand-in WebUI, exact Gaussian denoiser)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
import torch
from webui_standin import harness

from samplers import SAMPLERS


@pytest.fixture(params=harness.FLAVORS)
def flavor(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
    harness.unload()


def job(webui: SimpleNamespace, sampler: str, args: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """A txt2img job running our always-on script with the accordion's defaults, changed by `args`."""
    script = harness.load_script().DpmSolverScript()
    runner = webui.scripts.ScriptRunner([script])
    runner.setup_ui()
    script_args = runner.default_args()
    controls = sys.modules["dpmsolver_webui.controls"].CONTROLS
    for index, control in enumerate(controls):
        if args and control.option in args:
            script_args[index] = args[control.option]
    return webui.processing.StableDiffusionProcessingTxt2Img(sampler_name=sampler, scripts=runner,
                                                             script_args=script_args, **kwargs)


def our_keys(webui: SimpleNamespace, infotext: str) -> list[str]:
    """Infotext keys written by the accordion."""
    return [k for k in webui.infotext_utils.parse_generation_parameters(infotext) if k.startswith("DPM-Solver ")]


def direct(webui: SimpleNamespace, p: Any, entry: Any, **options: Any) -> torch.Tensor:
    """The same generation by calling the core entry on the sigmas and CFG denoiser the WebUI used."""
    sampler = p.sampler
    x = torch.stack([torch.randn(4, p.height, p.width, generator=torch.Generator().manual_seed(s)) for s in p.seeds])
    sigmas = sampler.sigmas_used
    return entry(sampler.model_wrap_cfg, x * sigmas[0], sigmas, extra_args=sampler.sampler_extra_args,
                 disable=True, **options)


@pytest.mark.parametrize("name", ["dpm_solver_pp_2m", "dpm_solver_3", "dpm_solver_fast"])
@pytest.mark.parametrize("family", ["ve", "flow"])
def test_generation_matches_the_core_entry(flavor: str, family: str, name: str) -> None:
    webui = harness.load_webui(flavor, family)
    entry = SAMPLERS[name]
    p = job(webui, entry.label, steps=7)
    samples, infotext = webui.processing.process_images(p)
    calls = len(p.sampler.model_wrap_cfg.calls)
    family_option = {"schedule": "flow"} if family == "flow" else {}
    expected = direct(webui, p, entry, **family_option)
    torch.testing.assert_close(samples, expected, rtol=0, atol=0)
    assert torch.isfinite(samples).all()
    assert f"Sampler: {entry.label}," in infotext and our_keys(webui, infotext) == []
    assert p.sampler.callback_steps == list(range(7))  # one WebUI progress tick per step
    assert calls == entry.count_model_calls(p.sampler.sigmas_used, **family_option)
    assert p.total_steps_for_conds == webui.sd_samplers.all_samplers_map[entry.label].total_steps(7)
    if family == "flow":
        assert float(p.sampler.sigmas_used[0]) <= 1.0
        wrong_family = direct(webui, p, entry)
        assert not torch.allclose(samples, wrong_family)


@pytest.mark.parametrize("flavor_name", ["forge", "a1111"])
def test_flow_model_is_sampled_as_a_flow(flavor_name: str) -> None:
    """Without guidance the flow ODE maps the initial noise z to mu + c*z exactly (Gaussian data, c = 0.8,
    mu = 0.3); the logSNR uniform grid starts at 1 - sigma_min. (That the flow schedule, not the VE one, is
    used is checked exactly by test_generation_matches_the_core_entry.)"""
    webui = harness.load_webui(flavor_name, "flow")
    try:
        p = job(webui, "DPM-Solver++ 3M", steps=24, batch_size=2, cfg_scale=1.0)
        p.scheduler = "logSNR uniform"
        samples, infotext = webui.processing.process_images(p)
        z = torch.stack([torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in p.seeds])
        target = 0.3 + 0.8 * z
        assert "Schedule type: logSNR uniform" in infotext
        error = float((samples - target).abs().max())
        assert error < 3e-2, error
    finally:
        harness.unload()


def test_accordion_options_reach_the_entry_and_the_infotext(flavor: str) -> None:
    webui = harness.load_webui(flavor)
    entry = SAMPLERS["dpm_solver_pp_3m"]
    p = job(webui, entry.label, {"solver_type": "taylor", "third_order": "consistent", "r1": 0.4}, steps=6)
    samples, infotext = webui.processing.process_images(p)
    expected = direct(webui, p, entry, solver_type="taylor", third_order="consistent")
    torch.testing.assert_close(samples, expected, rtol=0, atol=0)
    params = webui.infotext_utils.parse_generation_parameters(infotext)
    assert params["DPM-Solver solver type"] == "taylor"
    assert params["DPM-Solver third order"] == "consistent"
    assert "DPM-Solver r1" not in params  # 3M does not take r1
    default_job = job(webui, entry.label, steps=6)
    default_samples, default_infotext = webui.processing.process_images(default_job)
    assert our_keys(webui, default_infotext) == []
    assert not torch.equal(samples, default_samples)


def test_api_override_settings_and_dict_script_args(flavor: str) -> None:
    webui = harness.load_webui(flavor)
    entry = SAMPLERS["dpm_solver_2m"]
    p = job(webui, entry.label, steps=5, override_settings={"dpmsolver_ext_solver_type": "taylor"})
    samples, infotext = webui.processing.process_images(p)
    torch.testing.assert_close(samples, direct(webui, p, entry, solver_type="taylor"), rtol=0, atol=0)
    assert "DPM-Solver solver type: taylor" in infotext
    assert webui.shared.opts.data["dpmsolver_ext_solver_type"] == "default"  # restored after the job
    named = job(webui, entry.label, steps=5)
    named.script_args[0] = {"solver_type": "taylor", "lower_order_final": False}
    samples, infotext = webui.processing.process_images(named)
    torch.testing.assert_close(samples, direct(webui, named, entry, solver_type="taylor", lower_order_final=False),
                               rtol=0, atol=0)
    assert "DPM-Solver lower order final: off" in infotext


@pytest.mark.parametrize(("named", "message"), [
    ({"eta": -1.0}, "eta must be a finite number >= 0"),
    ({"corrector": "bogus"}, "corrector: 'bogus' is not one of"),
    ({"solver_type": "taylor", "bogus_option": 3}, "unknown DPM-Solver option.s. bogus_option"),
])
def test_a_bad_option_stops_the_generation(flavor: str, named: dict[str, Any], message: str) -> None:
    """The WebUI logs an exception from a script's process and goes on; the sampler then raises it, so no image
    is made with the sampler's defaults in place of the asked value."""
    webui = harness.load_webui(flavor)
    p = job(webui, SAMPLERS["dpm_solver_pp_2m_sde"].label, steps=4)
    p.script_args[0] = named
    with pytest.raises(ValueError, match=message):
        webui.processing.process_images(p)
    assert any("Error running process" in text and "ValueError" in text for text in webui.errors.REPORTED)


def test_a_bad_setting_stops_the_generation(flavor: str) -> None:
    webui = harness.load_webui(flavor)
    p = job(webui, SAMPLERS["dpm_solver_pp_2m_sde"].label, steps=4, override_settings={"dpmsolver_ext_eta": -2.0})
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        webui.processing.process_images(p)


def test_a_bad_option_leaves_other_samplers_alone(flavor: str) -> None:
    """The options only reach DPM-Solver samplers: with the WebUI's own sampler the job goes on (error logged)."""
    webui = harness.load_webui(flavor)
    p = job(webui, "Euler", steps=4)
    p.script_args[0] = {"eta": -1.0}
    samples, infotext = webui.processing.process_images(p)
    assert torch.isfinite(samples).all() and our_keys(webui, infotext) == []
    assert any("eta must be a finite number" in text for text in webui.errors.REPORTED)


def test_hires_sampler_options_are_recorded(flavor: str) -> None:
    webui = harness.load_webui(flavor)
    p = job(webui, "Euler", {"third_order": "consistent"}, steps=4, enable_hr=True, hr_sampler_name="DPM-Solver++ 3M")
    _, infotext = webui.processing.process_images(p)
    assert "DPM-Solver third order: consistent" in infotext


@dataclass(frozen=True)
class FakeStochasticEntry:
    """A stochastic registry entry (none exists yet): adds WebUI noise or seeded noise after each DDIM step."""

    name: str = "dpm_solver_fake_sde"
    label: str = "DPM-Solver fake SDE"
    description: str = "test double"
    calls_per_step: int = 1
    stochastic: bool = True
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType(
        {"schedule": "ve", "noise_sampler": None, "seed": None, "eta": 1.0, "s_noise": 1.0}))
    received: list = field(default_factory=list)

    def count_model_calls(self, sigmas: torch.Tensor, **options: Any) -> int:
        return len(sigmas) - 1

    def __call__(self, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Any = None, callback: Any = None,
                 disable: Any = None, **options: Any) -> torch.Tensor:
        self.received.append(options)
        sampler = options.get("noise_sampler")
        seed = options.get("seed")
        first = seed[0] if isinstance(seed, list) else seed  # per-image seeds: this stand-in uses the first
        generator = torch.Generator().manual_seed(first) if seed is not None else None
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i] * s_in, **(extra_args or {}))
            x = denoised + (x - denoised) * (sigmas[i + 1] / sigmas[i]) * 0.5
            if sigmas[i + 1] > 0:
                noise = sampler(sigmas[i], sigmas[i + 1]) if sampler else torch.randn(x.shape, generator=generator)
                x = x + noise * sigmas[i + 1] * 0.75 ** 0.5 * options.get("eta", 1.0)
            if callback:
                callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        return x


def register_fake(webui: SimpleNamespace) -> FakeStochasticEntry:
    harness.load_script()
    fake = FakeStochasticEntry()
    sys.modules["dpmsolver_webui.registration"].register_all([*SAMPLERS.values(), fake])
    return fake


def test_stochastic_entry_gets_the_webui_noise_sampler_and_per_image_seeds(flavor: str) -> None:
    webui = harness.load_webui(flavor)
    fake = register_fake(webui)
    data = webui.sd_samplers.all_samplers_map[fake.label]
    assert data.options["brownian_noise"] is True
    assert all(("brownian_noise" in d.options) == ("noise_sampler" in SAMPLERS[d.options["dpmsolver_entry"]].defaults)
               for d in webui.sd_samplers.all_samplers if d.options.get("dpmsolver_entry") in SAMPLERS)
    batch = job(webui, fake.label, {"eta": 0.5, "solver_type": "taylor"}, steps=5, batch_size=2, seed=100)
    batch_samples, infotext = webui.processing.process_images(batch)
    options = fake.received[-1]
    assert options["noise_sampler"].seeds == [100, 101]
    assert options["eta"] == 0.5 and "solver_type" not in options and "seed" not in options
    assert "DPM-Solver eta: 0.5" in infotext
    single = job(webui, fake.label, {"eta": 0.5}, steps=5, batch_size=1, seed=101)
    single_samples, _ = webui.processing.process_images(single)
    torch.testing.assert_close(batch_samples[1:], single_samples)  # batch-invariant: seeds drive the noise


def test_stochastic_entry_falls_back_to_the_seed_without_a_noise_sampler(flavor: str) -> None:
    webui = harness.load_webui(flavor)
    fake = register_fake(webui)
    webui.shared.opts.data["no_dpmpp_sde_batch_determinism"] = True
    p = job(webui, fake.label, steps=3, seed=77)
    webui.processing.process_images(p)
    assert "noise_sampler" not in fake.received[-1]
    assert fake.received[-1]["seed"] == [77]  # the batch's per-image seeds


def test_sds_fresh_noise_follows_each_images_seed(flavor: str) -> None:
    """Score distillation with fresh noise takes the WebUI's noise sampler, seeded per image like the SDE
    samplers' noise: an image comes out the same alone or in a batch, whatever the other images' seeds."""
    webui = harness.load_webui(flavor)
    label = SAMPLERS["dpm_solver_sds"].label
    batch = job(webui, label, {"sds_noise": "fresh"}, steps=6, batch_size=2, seed=100)
    batch.all_seeds = batch.seeds = [100, 7]  # per-image seeds need not be consecutive (variation seeds, API)
    batch_samples, infotext = webui.processing.process_images(batch)
    assert "DPM-Solver SDS noise: fresh" in infotext and torch.isfinite(batch_samples).all()
    single = job(webui, label, {"sds_noise": "fresh"}, steps=6, batch_size=1, seed=7)
    single_samples, _ = webui.processing.process_images(single)
    torch.testing.assert_close(batch_samples[1:], single_samples, rtol=0, atol=0)
    implied = job(webui, label, steps=6, batch_size=1, seed=7)
    implied_samples, implied_infotext = webui.processing.process_images(implied)
    assert our_keys(webui, implied_infotext) == [] and not torch.allclose(implied_samples, single_samples)


def test_langevin_noise_follows_each_images_seed_under_variation_seeds(flavor: str) -> None:
    """Variation seeds give every image of a batch the same seed; our own seeded noise (the Langevin corrector
    here) once keyed image b by first seed + b, so batch image 1 differed from the same image made alone."""
    webui = harness.load_webui(flavor)
    label = SAMPLERS["dpm_solver_pp_pc"].label
    batch = job(webui, label, {"corrector": "langevin"}, steps=5, batch_size=2, seed=100)
    batch.all_seeds = batch.seeds = [100, 100]
    batch_samples, _ = webui.processing.process_images(batch)
    single = job(webui, label, {"corrector": "langevin"}, steps=5, batch_size=1, seed=100)
    single_samples, _ = webui.processing.process_images(single)
    torch.testing.assert_close(batch_samples[1:], single_samples, rtol=0, atol=0)


def test_interrupt_returns_the_last_latent(flavor: str) -> None:
    webui = harness.load_webui(flavor)
    p = job(webui, "DPM-Solver++ 2M", steps=6)
    webui.shared.state.interrupted = True
    try:
        samples, _ = webui.processing.process_images(p)
    finally:
        webui.shared.state.interrupted = False
    torch.testing.assert_close(samples, p.sampler.last_latent)


@pytest.mark.parametrize("flavor_name", ["forge", "a1111"])
def test_total_steps_follow_the_jobs_options(flavor_name: str) -> None:
    """The WebUI times prompt editing and the refiner switch by model calls made / total_steps; with the Langevin
    corrector PC makes one more call per step, which total_steps once left out (a [cat:dog:0.5] switched at step 6
    of 20 instead of 10). The next job without it counts as before."""
    webui = harness.load_webui(flavor_name)
    try:
        label = SAMPLERS["dpm_solver_pp_pc"].label
        for args, per_step in (({"corrector": "langevin"}, 2), ({}, 1)):
            p = job(webui, label, args, steps=6)
            webui.processing.process_images(p)
            calls = len(p.sampler.model_wrap_cfg.calls)
            assert p.total_steps_for_conds == calls, (args, calls)
            assert calls in (6 * per_step, 6 * per_step - 1), (args, calls)  # no corrector move after the last step
    finally:
        harness.unload()
