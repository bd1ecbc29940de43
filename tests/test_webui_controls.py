"""Accordion options as data: parsing, validation, filtering per sampler, infotext round trip."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from dpmsolver_webui.controls import (
    CONTROLS,
    CONTROLS_BY_OPTION,
    DEFAULT_CHOICE,
    Control,
    controls_used_by,
    explicit_options,
    options_for_entry,
    ui_values_from_args,
)
from dpmsolver_webui.infotext import infotext_params, parse_params, ui_value
from samplers import SAMPLERS

# The WebUI's infotext parameter regex (modules/infotext_utils.py, A1111 1.10).
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def test_control_names_and_keys_are_unique_and_stable() -> None:
    assert len({c.option for c in CONTROLS}) == len(CONTROLS)
    assert len({c.infotext.lower() for c in CONTROLS}) == len(CONTROLS)
    assert [c.option for c in CONTROLS][:4] == ["order", "solver_type", "lower_order_final", "third_order"]
    for control in CONTROLS:
        assert RE_PARAM.fullmatch(f"{control.infotext}: 1")
        assert control.setting_key.startswith("dpmsolver_ext_")


def test_unset_values_mean_nothing_is_passed() -> None:
    untouched = {c.option: c.unset_value for c in CONTROLS}
    assert explicit_options(untouched) == {}
    assert explicit_options({}) == {}
    assert CONTROLS_BY_OPTION["solver_type"].unset_value == DEFAULT_CHOICE
    assert CONTROLS_BY_OPTION["r1"].unset_value == 0.0


def test_choices_are_validated_by_the_core() -> None:
    assert CONTROLS_BY_OPTION["solver_type"].available_choices() == [DEFAULT_CHOICE, "dpmsolver", "taylor"]
    assert CONTROLS_BY_OPTION["third_order"].available_choices() == [DEFAULT_CHOICE, "reference", "consistent"]
    assert CONTROLS_BY_OPTION["lower_order_final"].available_choices() == [DEFAULT_CHOICE, "on", "off"]


def test_explicit_options_convert_and_validate() -> None:
    chosen = explicit_options({"solver_type": "taylor", "lower_order_final": "off", "r1": 0.4, "order": "2"})
    assert chosen == {"solver_type": "taylor", "lower_order_final": False, "r1": 0.4, "order": 2}
    assert explicit_options({"lower_order_final": True}) == {"lower_order_final": True}
    with pytest.raises(ValueError, match="solver_type"):
        explicit_options({"solver_type": "heun"})
    with pytest.raises(ValueError, match="r1"):
        explicit_options({"r1": 1.5})


@pytest.mark.parametrize("value", ["abc", [0.1], {"x": 1}])
def test_a_number_control_names_itself_when_the_value_is_not_a_number(value: object) -> None:
    with pytest.raises(ValueError, match=r"DPM-Solver option rtol: .* is not a number"):
        explicit_options({"rtol": value})
    with pytest.raises(ValueError, match=r"DPM-Solver option rtol: .* is not a number"):
        explicit_options({}, {"dpmsolver_ext_rtol": value})


def test_settings_fill_in_unset_controls_and_ui_wins() -> None:
    settings = {"dpmsolver_ext_solver_type": "taylor", "dpmsolver_ext_third_order": "consistent"}
    chosen = explicit_options({"third_order": "reference"}, settings)
    assert chosen == {"solver_type": "taylor", "third_order": "reference"}


def test_script_args_positional_or_dict() -> None:
    positional = tuple(c.unset_value for c in CONTROLS)
    assert explicit_options(ui_values_from_args(positional)) == {}
    changed = list(positional)
    changed[1] = "taylor"
    assert explicit_options(ui_values_from_args(tuple(changed))) == {"solver_type": "taylor"}
    named = ui_values_from_args(({"solver_type": "taylor", "eta": 0.5}, *positional[1:]))
    assert explicit_options(named) == {"solver_type": "taylor", "eta": 0.5}
    with pytest.raises(ValueError, match="unknown DPM-Solver option"):
        ui_values_from_args(({"solvertype": "taylor"},))


def test_options_an_entry_does_not_accept_are_not_passed() -> None:
    chosen = {"solver_type": "taylor", "third_order": "consistent", "eta": 0.3, "r1": 0.4}
    assert options_for_entry(chosen, SAMPLERS["dpm_solver_1"].defaults) == {}
    assert options_for_entry(chosen, SAMPLERS["dpm_solver_pp_3m"].defaults) == {
        "solver_type": "taylor", "third_order": "consistent"}
    assert options_for_entry(chosen, SAMPLERS["dpm_solver_2"].defaults) == {"solver_type": "taylor", "r1": 0.4}
    same_as_default = {"third_order": SAMPLERS["dpm_solver_pp_3m"].defaults["third_order"]}
    assert options_for_entry(same_as_default, SAMPLERS["dpm_solver_pp_3m"].defaults) == {}


def test_controls_used_by_current_registry() -> None:
    used = controls_used_by(e.defaults for e in SAMPLERS.values())
    assert {"solver_type", "lower_order_final", "third_order", "r1", "r2"} <= used
    assert "thresholding" not in used
    assert controls_used_by([{"eta": 1.0, "noise_sampler": None}]) == {"eta"}


def test_only_non_default_values_reach_the_infotext() -> None:
    chosen = {"solver_type": "taylor", "third_order": "reference", "r1": 0.4}
    params = infotext_params(chosen, [SAMPLERS["dpm_solver_pp_3m"].defaults])
    assert params == {"DPM-Solver solver type": "taylor"}  # third_order=reference is the default; no r1 in 3M
    assert infotext_params(chosen, []) == {}


@pytest.mark.parametrize("chosen", [
    {"solver_type": "taylor"},
    {"lower_order_final": False, "third_order": "consistent"},
    {"r1": 0.35, "r2": 0.7},
    {"eta": 0.25, "s_noise": 1.1, "rtol": 0.02, "atol": 0.001, "order": 2, "corrector": "langevin"},
])
def test_infotext_round_trip(chosen: dict) -> None:
    accepts_all = {c.option: None for c in CONTROLS}
    params = infotext_params(chosen, [accepts_all])
    line = "Steps: 8, Sampler: DPM-Solver++ 3M, " + ", ".join(f"{k}: {v}" for k, v in params.items())
    parsed = dict(RE_PARAM.findall(line))
    assert parsed["Sampler"] == "DPM-Solver++ 3M"
    restored = explicit_options(parse_params(parsed))
    assert restored.keys() == chosen.keys()
    for key, value in chosen.items():
        if isinstance(value, float):
            assert math.isclose(restored[key], value)
        else:
            assert restored[key] == value


def test_missing_or_invalid_infotext_values_reset_to_unset() -> None:
    control = CONTROLS_BY_OPTION["solver_type"]
    assert ui_value({}, control) == DEFAULT_CHOICE
    assert ui_value({"DPM-Solver solver type": "nonsense"}, control) == DEFAULT_CHOICE
    number = CONTROLS_BY_OPTION["eta"]
    assert ui_value({"DPM-Solver eta": "abc"}, number) == number.unset_value
    assert ui_value({"DPM-Solver eta": "0.5"}, number) == 0.5


RELEASED_CHOICES = [
    ("order", "Order", "DPM-Solver order", ("1", "2", "3")),
    ("solver_type", "Solver type", "DPM-Solver solver type", ("dpmsolver", "taylor")),
    ("lower_order_final", "Lower order final steps", "DPM-Solver lower order final", ("on", "off")),
    ("third_order", "3M update", "DPM-Solver third order", ("reference", "consistent")),
    ("corrector", "Corrector", "DPM-Solver corrector", ("none", "langevin", "unic")),
    ("sds_noise", "SDS noise", "DPM-Solver SDS noise", ("implied", "fresh")),
]
RELEASED_NUMBERS = [  # option, label, infotext key, unset, slider minimum, maximum, step
    ("r1", "r1 (0 = default)", "DPM-Solver r1", 0.0, 0.0, 0.95, 0.05),
    ("r2", "r2 (0 = default)", "DPM-Solver r2", 0.0, 0.0, 0.95, 0.05),
    ("eta", "Eta", "DPM-Solver eta", 1.0, 0.0, 2.0, 0.01),
    ("s_noise", "Noise scale (s_noise)", "DPM-Solver s_noise", 1.0, 0.0, 2.0, 0.01),
    ("rtol", "Relative tolerance", "DPM-Solver rtol", 0.05, 0.001, 0.5, 0.001),
    ("atol", "Absolute tolerance", "DPM-Solver atol", 0.0078, 0.0001, 0.1, 0.0001),
]


def test_the_accordion_is_as_released() -> None:
    """Labels, infotext keys, choices and slider ranges are what shared infotexts and API calls rely on."""
    choices = [(c.option, c.label, c.infotext, c.choices) for c in CONTROLS if c.kind == "choice"]
    numbers = [(c.option, c.label, c.infotext, c.unset, c.minimum, c.maximum, c.step)
               for c in CONTROLS if c.kind == "number"]
    assert choices == RELEASED_CHOICES and numbers == RELEASED_NUMBERS
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONTROLS[0].label = "changed"  # type: ignore[misc]


def test_a_number_control_is_unset_at_the_cores_default_where_the_core_has_one() -> None:
    assert Control("eta", "Eta", "DPM-Solver eta", "number", "", unset=0.3).unset_value == 1.0
    assert Control("r1", "r1", "DPM-Solver r1", "number", "", unset=0.3).unset_value == 0.3  # the core's is None


def test_offered_choices_are_those_the_core_accepts() -> None:
    unknown = Control("not_a_core_option", "New", "DPM-Solver new", "choice", "", choices=("a", "b"))
    assert unknown.available_choices() == [DEFAULT_CHOICE, "a", "b"]  # the core cannot judge: all of them
    r1 = Control("r1", "r1", "DPM-Solver r1", "choice", "", choices=("0.5", "2"), convert=float)
    assert r1.available_choices() == [DEFAULT_CHOICE, "0.5"]  # the core's check refuses r1 = 2


def test_fewer_script_args_than_controls_fill_the_first_controls() -> None:
    """An API call written for an older release sends fewer positional arguments."""
    assert ui_values_from_args(("2", "taylor")) == {"order": "2", "solver_type": "taylor"}
