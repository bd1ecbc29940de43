"""SAMPLER nodes: inputs, tooltips, validation messages naming the input, and the SAMPLER they build."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
import torch
from test_comfy_support import FakeDenoiser, fake_comfy_package, make_model_sampling

from samplers import SAMPLERS, grids
from samplers.options import OPTIONS

PACKAGE = "dpm_solver_samplers_nodes_test"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict, Any]]:
    with fake_comfy_package(monkeypatch, PACKAGE) as loaded:
        yield loaded


def _defaults(cls: Any) -> dict[str, Any]:
    return {name: spec[1]["default"] for name, spec in cls.INPUT_TYPES()["required"].items()
            if isinstance(spec[1], dict) and "default" in spec[1]}


def _sampler_nodes(package: Any) -> dict[str, Any]:
    return {k: v for k, v in package.NODE_CLASS_MAPPINGS.items() if v.RETURN_TYPES == ("SAMPLER",)}


def test_every_input_has_a_tooltip_and_a_valid_default(env: tuple[dict, Any]) -> None:
    _, package = env
    for node_id, cls in package.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional"}, node_id
        for name, (kind, options) in spec["required"].items():
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if isinstance(kind, list):
                assert options["default"] in kind, f"{node_id}.{name}"
            elif kind in ("INT", "FLOAT"):
                assert options["min"] <= options["default"] <= options["max"], f"{node_id}.{name}"
        assert cls.CATEGORY.startswith("sampling/custom_sampling/"), node_id
        assert package.NODE_DISPLAY_NAME_MAPPINGS[node_id]
        assert getattr(cls, "DESCRIPTION", "")


def test_every_registry_entry_has_a_node(env: tuple[dict, Any]) -> None:
    _, package = env
    reachable = set()
    for cls in _sampler_nodes(package).values():
        reachable.update(cls.MEMBERS.values())
    assert reachable == set(SAMPLERS)


def test_every_widget_option_of_every_entry_is_an_input(env: tuple[dict, Any]) -> None:
    _, package = env
    widget_for = package.nodes.widgets.widget_for
    for node_id, cls in _sampler_nodes(package).items():
        inputs = set(cls.INPUT_TYPES()["required"])
        for name in cls.MEMBERS.values():
            for option in SAMPLERS[name].defaults:
                if widget_for(option) is not None:
                    assert option in inputs, f"{node_id} lacks {option} of {name}"
                else:
                    assert option in {"schedule", "seed", "noise_sampler", "info", "guidance_parts"}, option


@pytest.mark.parametrize("node_id", ["DPMSolverSinglestepSampler", "DPMSolverMultistepSampler",
                                     "DPMSolverPPSinglestepSampler", "DPMSolverPPMultistepSampler",
                                     "DPMSolverFastSampler"])
def test_defaults_build_each_members_sampler_with_its_defaults(env: tuple[dict, Any], node_id: str) -> None:
    modules, package = env
    cls = package.NODE_CLASS_MAPPINGS[node_id]
    for order, name in cls.MEMBERS.items():
        inputs = {**_defaults(cls), "order": order}
        (sampler,) = cls().get_sampler(**inputs)
        assert isinstance(sampler, modules["comfy.samplers"].KSAMPLER)
        assert sampler.sampler_function.__name__ == f"sample_{name}"
        entry = SAMPLERS[name]
        assert set(sampler.extra_options) <= set(entry.defaults)
        for option, value in sampler.extra_options.items():
            assert value == entry.defaults[option], (name, option)


def test_the_sampler_runs_with_its_options(env: tuple[dict, Any]) -> None:
    modules, package = env
    cls = package.NODE_CLASS_MAPPINGS["DPMSolverPPSinglestepSampler"]
    inputs = {**_defaults(cls), "order": 3, "solver_type": "taylor", "r1": 0.3, "r2": 0.6}
    (sampler,) = cls().get_sampler(**inputs)
    assert sampler.extra_options["r1"] == 0.3 and sampler.extra_options["solver_type"] == "taylor"
    x = torch.randn(1, 4, 8, 8)
    sigmas = grids.karras(5, 0.03, 14.6)
    got = sampler.sampler_function(FakeDenoiser(make_model_sampling(modules, "eps")), x.clone(), sigmas,
                                   **sampler.extra_options)
    expected = SAMPLERS["dpm_solver_pp_3s"](lambda y, s: 0.5 * y, x.clone(), sigmas, solver_type="taylor", r1=0.3,
                                           r2=0.6)
    assert torch.equal(got, expected)


@pytest.mark.parametrize(("change", "message"), [
    ({"r1": 0.7, "r2": 0.6}, r"r1 < r2"),
    ({"r1": -0.1}, r"input 'r1' must be at least 0"),
    ({"r2": 1.0}, r"input 'r2' must be at most 0.99"),
    ({"solver_type": "euler"}, r"input 'solver_type' must be one of 'dpmsolver', 'taylor'"),
    ({"lower_order_final": "sometimes"}, r"input 'lower_order_final' must be one of 'auto', 'on', 'off'"),
    ({"order": 4}, r"input 'order' must be one of 1, 2, 3"),
    ({"thresholding": "yes"}, r"input 'thresholding' must be true or false"),
])
def test_invalid_inputs_are_reported_by_name(env: tuple[dict, Any], change: dict[str, Any], message: str) -> None:
    _, package = env
    cls = package.NODE_CLASS_MAPPINGS["DPMSolverSinglestepSampler"]
    inputs = {**_defaults(cls), "order": 3, **change}
    with pytest.raises(ValueError, match=message) as caught:
        cls().get_sampler(**inputs)
    assert str(caught.value).startswith("DPM-Solver (singlestep): ")


def test_validate_inputs_is_what_comfyui_calls(env: tuple[dict, Any]) -> None:
    """ComfyUI reads VALIDATE_INPUTS' argument names (inspect.getfullargspec), passes exactly those inputs,
    and reports a returned string for them with HTTP 400."""
    _, package = env
    cls = package.NODE_CLASS_MAPPINGS["DPMSolverPPSinglestepSampler"]
    argspec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
    assert argspec.args == ["cls", "order", "r1", "r2"] and argspec.varkw is None
    assert cls.VALIDATE_INPUTS(order=3, r1=0.0, r2=0.0) is True
    assert cls.VALIDATE_INPUTS(order=3, r1=0.5, r2=0.6) is True
    assert cls.VALIDATE_INPUTS(order=2, r1=0.5, r2=0.4) is True  # r2 is not used at order 2
    result = cls.VALIDATE_INPUTS(order=3, r1=0.7, r2=0.6)
    assert isinstance(result, str) and "r1" in result and "r2" in result
    assert "r1" in cls.VALIDATE_INPUTS(order=3, r1=1.5, r2=0.0)
    assert cls.VALIDATE_INPUTS(order=3, r1=None, r2=0.2) is True  # a linked input: checked when it runs
    assert not hasattr(package.NODE_CLASS_MAPPINGS["DPMSolverPPMultistepSampler"], "VALIDATE_INPUTS")


def test_widget_values_map_to_options(env: tuple[dict, Any]) -> None:
    _, package = env
    check = package.nodes.widgets.check_option
    assert check("x", "lower_order_final", "auto") is None
    assert check("x", "lower_order_final", "on") is True
    assert check("x", "lower_order_final", "off") is False
    assert check("x", "r1", 0.0) is None
    assert check("x", "r1", 0.25) == 0.25
    assert check("x", "third_order", "consistent") == "consistent"
    with pytest.raises(ValueError, match="input 'schedule' is not an option"):
        check("x", "schedule", "ve")


def test_every_numeric_widget_range_is_accepted_by_the_core(env: tuple[dict, Any]) -> None:
    """The ends of a number widget's range are values the core accepts: a widget never offers an impossible
    option (threshold_quantile once went down to 0 while the core needs a quantile in (0, 1])."""
    _, package = env
    widgets = package.nodes.widgets
    checked = []
    for name in OPTIONS:
        spec = widgets.widget_for(name)
        if spec is None or spec.kind not in ("INT", "FLOAT"):
            continue
        for end in (spec.minimum, spec.maximum):
            if end is not None:
                widgets.check_option("x", name, end)
                checked.append(name)
    assert "threshold_quantile" in checked and "threshold_max" in checked
    with pytest.raises(widgets.InputError, match=r"input 'threshold_quantile' must be at least 0.001, got 0.0"):
        widgets.check_option("x", "threshold_quantile", 0.0)


def test_every_value_a_sampler_nodes_number_widget_offers_passes_its_check(env: tuple[dict, Any]) -> None:
    """ComfyUI lets the user pick anything in [min, max]; the node must not refuse it (the widget's range is
    stretched to hold the default, so a check narrower than the range would refuse the default itself)."""
    _, package = env
    widgets = package.nodes.widgets
    for node_id, cls in _sampler_nodes(package).items():
        for name, (kind, extra) in cls.INPUT_TYPES()["required"].items():
            if kind in ("INT", "FLOAT") and not (name == "order" and len(cls.MEMBERS) > 1):  # orders: entry_for
                for value in (extra["min"], extra["default"], extra["max"]):
                    widgets.check_option(node_id, name, value)


def test_widget_values_show_option_values(env: tuple[dict, Any]) -> None:
    widgets = env[1].nodes.widgets
    lower_order_final = widgets.widget_for("lower_order_final")
    assert [lower_order_final.widget_value(v) for v in (None, True, False)] == ["auto", "on", "off"]
    r1 = widgets.widget_for("r1")
    assert r1.widget_value(None) == 0.0 and r1.widget_value(0.4) == 0.4
    assert widgets.widget_for("eta").widget_value(0.5) == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        r1.maximum = 2.0  # type: ignore[misc]


def test_options_the_adapter_fills_itself_are_not_widgets(env: tuple[dict, Any]) -> None:
    widgets = env[1].nodes.widgets
    assert all(widgets.widget_for(name) is None for name in widgets.NOT_WIDGETS)
    assert "schedule" in OPTIONS and "seed" in OPTIONS  # known to the core, yet filled by the adapter
    assert widgets.widget_for("not_an_option") is None


@pytest.mark.parametrize("value", [True, "0.5", None])
def test_a_number_input_refuses_what_is_not_a_number(env: tuple[dict, Any], value: Any) -> None:
    widgets = env[1].nodes.widgets
    with pytest.raises(widgets.InputError, match=r"input 'eta' must be a number, got"):
        widgets.check_option("x", "eta", value)


def test_widgets_of_options_the_table_does_not_know_come_from_the_core(env: tuple[dict, Any]) -> None:
    """A core option added later gets a widget from its default and choices alone."""
    _, package = env
    widgets, option = package.nodes.widgets, package.samplers.options.Option
    flag = widgets._derived(option("flag", False, bool, "a flag", (False, True)))
    assert (flag.kind, flag.tooltip, flag.comfy_input(False)) == ("BOOLEAN", "A flag", ("BOOLEAN", {
        "default": False, "tooltip": "A flag"}))
    assert widgets._derived(option("flag", True, bool, "")).tooltip == "flag"  # no doc: the name
    small = widgets._derived(option("small", 0, int, "a count", (0, 1)))  # 0 == False, but not a flag
    assert (small.kind, small.choices) == ("COMBO", (0, 1))
    mode = widgets._derived(option("mode", None, str, "a mode", (None, "a", "b")))
    assert (mode.choices, mode.option_value("auto"), mode.widget_value(None)) == (("auto", "a", "b"), None, "auto")
    count = widgets._derived(option("count", 4, int, "a count")).comfy_input(4)
    assert count == ("INT", {"default": 4, "tooltip": "A count", "min": -2**31, "max": 2**31 - 1, "step": 1})
    scale = widgets._derived(option("scale", 0.5, float, "a scale")).comfy_input(0.5)
    assert scale == ("FLOAT", {"default": 0.5, "tooltip": "A scale", "min": -2**31, "max": 2**31 - 1, "step": 0.001,
                               "round": False})
    assert widgets._derived(option("name", "x", str, "a name")) is None


def test_a_dropdown_follows_the_core_when_it_offers_more_choices(env: tuple[dict, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, package = env
    options = package.samplers.options
    grown = dataclasses.replace(options.OPTIONS["solver_type"], choices=("dpmsolver", "taylor", "newer"))
    monkeypatch.setitem(options.OPTIONS, "solver_type", grown)
    assert package.nodes.widgets.widget_for("solver_type").choices == ("dpmsolver", "taylor", "newer")
    assert package.nodes.widgets.widget_for("lower_order_final").choices == ("auto", "on", "off")  # labelled


class _FakeEntry:
    """A sampler the adapter has never seen, with an option the widget table does not know."""

    name = "dpm_solver_future"
    label = "DPM-Solver future"
    description = "a later addition"
    calls_per_step = 1
    stochastic = True
    defaults = MappingProxyType({"schedule": "ve", "eta": 1.0, "seed": None, "solver_type": "dpmsolver"})

    def count_model_calls(self, sigmas: Any, **options: Any) -> int:
        return len(sigmas) - 1

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return args[1]


def test_new_registry_entries_get_a_node_of_their_own(env: tuple[dict, Any]) -> None:
    registry = {**SAMPLERS, "dpm_solver_future": _FakeEntry()}
    nodes = sys.modules[f"{PACKAGE}.nodes.sampler_nodes"].sampler_nodes(registry)
    cls, display = nodes["DPMSolverSampler_dpm_solver_future"]
    assert display == "DPM-Solver future"
    assert list(cls.INPUT_TYPES()["required"]) == ["solver_type", "eta"]
    (sampler,) = cls().get_sampler(solver_type="taylor", eta=0.5)
    assert sampler.extra_options == {"solver_type": "taylor", "eta": 0.5}
    with pytest.raises(ValueError, match="input 'eta' must be at least 0"):
        cls().get_sampler(solver_type="taylor", eta=-1.0)


def test_a_family_node_with_a_member_missing_offers_the_orders_left(env: tuple[dict, Any]) -> None:
    registry = {name: entry for name, entry in SAMPLERS.items() if name != "dpm_solver_3"}
    nodes = sys.modules[f"{PACKAGE}.nodes.sampler_nodes"].sampler_nodes(registry)
    cls, _ = nodes["DPMSolverSinglestepSampler"]
    order = cls.INPUT_TYPES()["required"]["order"]
    assert order[0] == "INT" and (order[1]["default"], order[1]["min"], order[1]["max"]) == (2, 1, 2)
    assert "1: DPM-Solver-1" in order[1]["tooltip"] and "3:" not in order[1]["tooltip"]
    assert cls.VALIDATE_INPUTS(order=3, r1=0.5, r2=None) is True  # linked: judged at run time
    assert "input 'order' must be one of 1, 2, got 3" in cls.VALIDATE_INPUTS(order=3, r1=0.5, r2=0.75)
    for order_value, name in ((1, "dpm_solver_1"), (2, "dpm_solver_2")):
        (sampler,) = cls().get_sampler(order=order_value)
        assert sampler.sampler_function.__name__ == f"sample_{name}"


def test_tooltips_name_the_members_an_input_is_for(env: tuple[dict, Any]) -> None:
    _, package = env
    for node_id, (_, members, _) in package.nodes.interface.FAMILY_NODES.items():
        cls = package.NODE_CLASS_MAPPINGS[node_id]
        for name, spec in cls.INPUT_TYPES()["required"].items():
            users = [SAMPLERS[m].label for m in members.values() if name in SAMPLERS[m].defaults]
            if name == "order" or len(users) == len(members):
                assert "Used by" not in spec[1]["tooltip"], (node_id, name)
            else:
                assert spec[1]["tooltip"].endswith(" Used by: " + ", ".join(users) + "."), (node_id, name)


def test_released_input_order_wins_over_canonical_order(env: tuple[dict, Any]) -> None:
    _, package = env
    order = package.nodes.interface.input_order
    assert order("DPMSolverMultistepSampler", ["threshold_max", "eta", "order", "third_order", "solver_type",
                                               "lower_order_final", "thresholding", "threshold_quantile"]) == [
        "order", "solver_type", "lower_order_final", "third_order", "thresholding", "threshold_quantile",
        "threshold_max", "eta"]
    assert order("SomethingNew", ["threshold_max", "zeta", "eta", "order"]) == ["order", "eta", "threshold_max", "zeta"]


@pytest.mark.parametrize("name", [n for n, e in SAMPLERS.items() if "rtol" in e.defaults])
def test_adaptive_nodes_validate_with_the_core(env: tuple[dict, Any], name: str) -> None:
    modules, package = env
    cls = package.NODE_CLASS_MAPPINGS[f"DPMSolverSampler_{name}"]
    defaults = _defaults(cls)
    (sampler,) = cls().get_sampler(**defaults)
    assert sampler.extra_options["max_nfe"] == SAMPLERS[name].defaults["max_nfe"]
    assert "info" not in sampler.extra_options  # filled in by the sampler function, then logged
    with pytest.raises(ValueError, match="input 'rtol' must be at least"):
        cls().get_sampler(**{**defaults, "rtol": 0.0})
    with pytest.raises(ValueError, match="input 'controller' must be one of"):
        cls().get_sampler(**{**defaults, "controller": "bang-bang"})
    info: dict[str, Any] = {}
    x = torch.randn(1, 4, 8, 8)
    out = sampler.sampler_function(FakeDenoiser(make_model_sampling(modules, "flow")), x,
                                   grids.flow_simple(8), info=info, **sampler.extra_options)
    assert torch.isfinite(out).all() and info["nfe"] > 0
