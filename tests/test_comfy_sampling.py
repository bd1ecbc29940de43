"""The functions ComfyUI calls: model family from model_sampling, seed, progress/cancel, inference mode."""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
import torch
from test_comfy_support import FakeDenoiser, fake_comfy_package, make_model_sampling

from samplers import SAMPLERS, grids

PACKAGE = "dpm_solver_samplers_sampling_test"


def planned(name: str) -> bool:
    """Does the entry know its model calls in advance (not an adaptive sampler)?"""
    try:
        SAMPLERS[name].count_model_calls(grids.karras(3, 0.03, 14.6))
    except (NotImplementedError, ValueError):
        return False
    return True


ADAPTIVE = [name for name in SAMPLERS if not planned(name)]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict, Any]]:
    with fake_comfy_package(monkeypatch, PACKAGE) as loaded:
        yield loaded


def _function(modules: dict, name: str) -> Any:
    return getattr(modules["comfy.k_diffusion.sampling"], f"sample_{name}")


@pytest.mark.parametrize("kind", ["eps", "v", "edm", "x0", "flow"])
def test_family_from_model_sampling(env: tuple[dict, Any], kind: str) -> None:
    modules, package = env
    family = package.nodes.family
    denoiser = FakeDenoiser(make_model_sampling(modules, kind))
    assert family.family_of_denoiser(denoiser) == ("flow" if kind == "flow" else "ve")


def test_the_model_sampling_of_a_patcher_or_guider_without_the_usual_accessors(env: tuple[dict, Any]) -> None:
    modules, package = env
    family = package.nodes.family
    model_sampling = make_model_sampling(modules, "flow")
    patcher = SimpleNamespace(model=SimpleNamespace(model_sampling=model_sampling))
    assert family.model_sampling_of_patcher(patcher) is model_sampling
    with pytest.raises(family.UnsupportedModelFamily, match="cannot find the model_sampling of SimpleNamespace"):
        family.model_sampling_of_patcher(SimpleNamespace(model=None))
    guider = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=model_sampling))  # no model_patcher
    assert family.model_sampling_of_denoiser(SimpleNamespace(inner_model=guider)) is model_sampling
    with pytest.raises(family.UnsupportedModelFamily, match="could not find the model's model_sampling"):
        family.model_sampling_of_denoiser(SimpleNamespace(inner_model=SimpleNamespace(inner_model=None)))


def test_unknown_family_is_a_clear_error(env: tuple[dict, Any]) -> None:
    modules, _ = env

    class Mystery:
        sigmas = torch.ones(3)

    denoiser = FakeDenoiser(Mystery())
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"do not know this model's sampling type \(Mystery\)"):
        _function(modules, "dpm_solver_pp_2m")(denoiser, x, grids.karras(4, 0.03, 14.6))
    assert denoiser.calls == []


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_dropdown_function_is_the_core_entry_with_the_models_family(env: tuple[dict, Any], name: str,
                                                                     kind: str) -> None:
    modules, _ = env
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    sigmas = grids.flow_simple(6, shift=3.0) if kind == "flow" else grids.karras(6, 0.0292, 14.6146)
    schedule = "flow" if kind == "flow" else "ve"
    denoiser = FakeDenoiser(make_model_sampling(modules, kind))
    entry = SAMPLERS[name]
    given: dict[str, Any] = {"info": {}} if "info" in entry.defaults else {}
    got = _function(modules, name)(denoiser, x.clone(), sigmas, extra_args={"seed": 3}, **given)
    options: dict[str, Any] = {"seed": 3} if "seed" in entry.defaults else {}
    expected = entry(lambda y, s: 0.5 * y, x.clone(), sigmas, schedule=schedule, **options)
    assert torch.equal(got, expected)
    calls = given["info"]["nfe"] if given else entry.count_model_calls(sigmas, schedule=schedule)
    assert len(denoiser.calls) == calls


def test_extra_args_reach_the_model_unchanged(env: tuple[dict, Any]) -> None:
    modules, _ = env
    denoiser = FakeDenoiser(make_model_sampling(modules, "eps"))
    mask, options = torch.ones(1, 1, 8, 8), {"transformer_options": {}}
    extra = {"denoise_mask": mask, "model_options": options, "seed": 11}
    _function(modules, "dpm_solver_pp_3s")(denoiser, torch.randn(1, 4, 8, 8), grids.karras(3, 0.03, 14.6),
                                           extra_args=extra)
    assert denoiser.calls
    for _, kwargs in denoiser.calls:
        assert kwargs["denoise_mask"] is mask and kwargs["model_options"] is options and kwargs["seed"] == 11


def test_flow_grid_a_rounding_error_above_one_is_accepted(env: tuple[dict, Any]) -> None:
    modules, _ = env
    denoiser = FakeDenoiser(make_model_sampling(modules, "flow"))
    sigmas = grids.flow_simple(5).float()
    sigmas[0] = 1.0000001
    out = _function(modules, "dpm_solver_pp_2m")(denoiser, torch.randn(1, 4, 8, 8), sigmas)
    assert torch.isfinite(out).all()
    sigmas[0] = 1.5
    with pytest.raises(ValueError, match="flow"):
        _function(modules, "dpm_solver_pp_2m")(denoiser, torch.randn(1, 4, 8, 8), sigmas)


class _HostBar:
    """What KSAMPLER.sample hands the sampler: callback(x) -> host(x["i"], x["denoised"], x["x"], steps)."""

    def __init__(self, steps: int, stop_at: int | None = None) -> None:
        self.steps = steps
        self.stop_at = stop_at
        self.values: list[int] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        assert payload["denoised"].shape == payload["x"].shape
        self.values.append(min(payload["i"] + 1, self.steps))  # ProgressBar.update_absolute(i + 1, steps)
        if self.stop_at is not None and len(self.values) >= self.stop_at:
            raise InterruptedError("cancelled")


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n not in ADAPTIVE])
def test_progress_counts_model_calls_on_the_host_scale(env: tuple[dict, Any], name: str) -> None:
    modules, _ = env
    sigmas = grids.karras(8, 0.0292, 14.6146)
    steps = len(sigmas) - 1
    bar = _HostBar(steps)
    denoiser = FakeDenoiser(make_model_sampling(modules, "eps"))
    _function(modules, name)(denoiser, torch.randn(1, 4, 8, 8), sigmas, callback=bar)
    nfe = SAMPLERS[name].count_model_calls(sigmas)
    assert len(bar.values) == nfe == len(denoiser.calls)
    assert bar.values == sorted(bar.values) and bar.values[-1] == steps
    if nfe > steps:  # k calls per step: the bar does not fill before the last call
        assert bar.values[-2] < steps
    for c, value in enumerate(bar.values):
        assert value == max(1, (c + 1) * steps // nfe)


def _host_step(package: Any, grid: list[float], family: str, payload: dict[str, Any]) -> int | None:
    """The payload's "i" after the progress adapter, or None where the payload reached the host unchanged."""
    seen: list[dict[str, Any]] = []
    package.nodes.sampling.progress_callback(seen.append, grid, family)(payload)
    if seen[0] is payload:
        return None
    assert seen[0]["call"] == payload["i"]
    return seen[0]["i"]


def test_progress_adapter_maps_planned_calls_and_leaves_what_it_cannot_map(env: tuple[dict, Any]) -> None:
    _, package = env
    assert package.nodes.sampling.progress_callback(None, [1.0, 0.0], "ve") is None
    grid = [10.0, 1.0, 0.1, 0.0]

    def step(payload: dict[str, Any], on: list[float] = grid) -> int | None:
        return _host_step(package, on, "ve", payload)

    assert step({"i": None, "total": 6}) is None and step({"i": "0", "total": 6}) is None
    assert step({"i": 1, "total": 3}) is None  # one call per step: already on the host's scale
    assert [step({"i": c, "total": 6}) for c in range(6)] == [0, 0, 0, 1, 1, 2]
    assert step({"i": 0, "total": 1}) == 2  # a single planned call fills the bar
    assert step({"i": 0, "total": 0, "sigma": 1.0}) is None  # no plan and not adaptive
    assert step({"i": 0, "total": "3", "sigma": 1.0}) is None and step({"i": 0}) is None
    assert [step({"i": c, "total": 2}, [10.0, 0.0]) for c in range(2)] == [0, 0]  # one step of two calls
    assert step({"i": 0, "total": 4}, [10.0]) is None  # an empty grid has no steps to show


def test_progress_adapter_places_adaptive_calls_by_half_log_snr(env: tuple[dict, Any]) -> None:
    _, package = env
    grid = [10.0, 1.0, 0.1, 0.0]  # lambda = -log 10, 0, log 10

    def step(sigma: Any, on: list[float] = grid, family: str = "ve") -> int | None:
        return _host_step(package, on, family, {"i": 7, "total": None, "sigma": sigma})

    assert [step(s) for s in (100.0, 10.0, 3.0, 1.0, 0.5, 0.1, 0.01, 0.0)] == [0, 0, 0, 1, 1, 2, 2, 2]
    assert step(torch.tensor([1.0, 10.0])) == 1  # a batch of sigmas: the first
    assert step(5.0, [10.0, 0.0]) == 0  # a single finite half-log-SNR: the first step
    flow = [1.0, 0.8, 0.2, 0.0]
    assert [step(s, flow, "flow") for s in (1.0, 1.5, 0.8, 0.5, 0.2)] == [0, 0, 0, 1, 2]  # 1.5 is off the schedule
    assert step(0.5, [1.5, 0.5, 0.0], "flow") is None  # a grid off the schedule: the core reports it


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_adaptive_progress_follows_the_noise_level(env: tuple[dict, Any], name: str, kind: str) -> None:
    modules, _ = env
    sigmas = grids.flow_simple(10) if kind == "flow" else grids.karras(10, 0.0292, 14.6146)
    steps = len(sigmas) - 1
    bar = _HostBar(steps)
    denoiser = FakeDenoiser(make_model_sampling(modules, kind))
    info: dict[str, Any] = {}
    _function(modules, name)(denoiser, torch.randn(1, 4, 8, 8), sigmas, callback=bar, info=info)
    assert len(bar.values) == info["nfe"] == len(denoiser.calls)
    assert all(1 <= v <= steps for v in bar.values)
    assert bar.values[0] == 1 and bar.values[len(bar.values) // 2] < steps and bar.values[-1] == steps


@pytest.mark.parametrize("name", ["dpm_solver_3", "dpm_solver_pp_3m", "dpm_solver_fast", *ADAPTIVE])
def test_cancel_raised_in_the_callback_stops_sampling(env: tuple[dict, Any], name: str) -> None:
    modules, _ = env
    denoiser = FakeDenoiser(make_model_sampling(modules, "eps"))
    with pytest.raises(InterruptedError):
        _function(modules, name)(denoiser, torch.randn(1, 4, 8, 8), grids.karras(30, 0.03, 14.6),
                                 callback=_HostBar(30, stop_at=4))
    assert len(denoiser.calls) == 4


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_runs_under_inference_mode(env: tuple[dict, Any], kind: str) -> None:
    modules, _ = env
    denoiser = FakeDenoiser(make_model_sampling(modules, kind))
    sigmas = grids.flow_simple(5) if kind == "flow" else grids.karras(5, 0.03, 14.6)
    with torch.inference_mode():
        x = torch.randn(1, 4, 8, 8)
        for name in SAMPLERS:
            out = _function(modules, name)(denoiser, x, sigmas.float(), callback=_HostBar(5))
            assert torch.isfinite(out).all() and out.dtype == x.dtype


def test_half_precision_state_is_returned_in_its_dtype(env: tuple[dict, Any]) -> None:
    modules, _ = env
    denoiser = FakeDenoiser(make_model_sampling(modules, "eps"))
    x = torch.randn(1, 4, 8, 8).to(torch.bfloat16)
    out = _function(modules, "dpm_solver_pp_3m")(denoiser, x, grids.karras(5, 0.03, 14.6).float())
    assert out.dtype == torch.bfloat16


class _SeededEntry:
    """A stochastic registry entry as issue 3 adds them: accepts `seed` (and `schedule`)."""

    name = "fake_sde"
    label = "Fake SDE"
    description = "records its options"
    calls_per_step = 1
    stochastic = True
    defaults = MappingProxyType({"schedule": "ve", "eta": 1.0, "seed": None})

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def __call__(self, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Any = None,
                 callback: Any = None, disable: Any = None, **options: Any) -> torch.Tensor:
        self.seen = options
        return x


def test_stochastic_samplers_get_comfyuis_seed(env: tuple[dict, Any]) -> None:
    modules, package = env
    entry = _SeededEntry()
    function = package.nodes.sampling.make_sampler_function(entry)
    denoiser = FakeDenoiser(make_model_sampling(modules, "flow"))
    function(denoiser, torch.zeros(1), grids.flow_simple(3), extra_args={"seed": 1234})
    assert entry.seen == {"schedule": "flow", "seed": 1234}
    function(denoiser, torch.zeros(1), grids.flow_simple(3), extra_args={"seed": 1234}, seed=5, eta=0.5)
    assert entry.seen == {"schedule": "flow", "seed": 5, "eta": 0.5}


def test_deterministic_samplers_get_no_seed(env: tuple[dict, Any]) -> None:
    modules, _ = env
    denoiser = FakeDenoiser(make_model_sampling(modules, "eps"))
    # the core rejects unknown options: passing the seed would raise
    _function(modules, "dpm_solver_pp_2m")(denoiser, torch.randn(1, 4, 8, 8), grids.karras(3, 0.03, 14.6),
                                           extra_args={"seed": 9})
