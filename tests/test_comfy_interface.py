"""Node ids and input order are a public interface: saved workflows give widget values by position.

GOLDEN lists every released node with its inputs in order. Released nodes may only gain inputs at the end,
and never disappear. comfy_widgets_released.json holds each released input's type, default, range and step (the
choices of a dropdown may only grow at the end). When a node gains inputs or a new node appears (e.g. a sampler
added to the core), this test warns: add it to GOLDEN and nodes/interface.py RELEASED_INPUTS when it is
released, then run `python tests/pin_released_widgets.py` to pin its widgets in comfy_widgets_released.json.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pin_released_widgets
import pytest
from pin_released_widgets import pin, render, widget_entry
from test_comfy_support import fake_comfy_package

from samplers import SAMPLERS

PACKAGE = "dpm_solver_samplers_interface_test"

GOLDEN: dict[str, list[str]] = {
    "DPMSolverSinglestepSampler": ["order", "solver_type", "lower_order_final", "r1", "r2", "thresholding",
                                   "threshold_quantile", "threshold_max"],
    "DPMSolverMultistepSampler": ["order", "solver_type", "lower_order_final", "third_order", "thresholding",
                                  "threshold_quantile", "threshold_max"],
    "DPMSolverPPSinglestepSampler": ["order", "solver_type", "lower_order_final", "r1", "r2", "thresholding",
                                     "threshold_quantile", "threshold_max"],
    "DPMSolverPPMultistepSampler": ["order", "solver_type", "lower_order_final", "third_order", "thresholding",
                                    "threshold_quantile", "threshold_max"],
    "DPMSolverFastSampler": ["solver_type", "thresholding", "threshold_quantile", "threshold_max"],
    "DPMSolverScheduler": ["model", "steps", "spacing", "denoise"],
    "DPMSolverFastScheduler": ["model", "steps", "spacing", "denoise"],
    "DPMSolverSampler_dpm_solver_pp_sde": ["solver_type", "lower_order_final", "r1", "eta", "s_noise", "thresholding",
                                           "threshold_quantile", "threshold_max"],
    "DPMSolverSampler_dpm_solver_pp_2m_sde": ["solver_type", "lower_order_final", "eta", "s_noise", "thresholding",
                                              "threshold_quantile", "threshold_max"],
    "DPMSolverSampler_dpm_solver_pp_3m_sde": ["solver_type", "lower_order_final", "third_order", "eta", "s_noise",
                                              "thresholding", "threshold_quantile", "threshold_max"],
    "DPMSolverSampler_dpm_solver_pp_2s_ancestral": ["solver_type", "lower_order_final", "r1", "eta", "s_noise",
                                                    "thresholding", "threshold_quantile", "threshold_max"],
    "DPMSolverSampler_dpm_solver_adaptive": ["order", "rtol", "atol", "h_init", "theta", "controller", "max_nfe",
                                             "thresholding", "threshold_quantile", "threshold_max"],
    "DPMSolverSampler_dpm_solver_pp_adaptive": ["order", "rtol", "atol", "h_init", "theta", "controller", "max_nfe",
                                                "thresholding", "threshold_quantile", "threshold_max"],
    "DPMSolverSampler_dpm_solver_pp_pc": ["order", "solver_type", "lower_order_final", "third_order", "s_noise",
                                          "corrector", "corrector_steps", "snr", "thresholding", "threshold_quantile",
                                          "threshold_max"],
    "DPMSolverSDSGradient": ["model", "positive", "negative", "latent", "percent", "sigma", "cfg", "seed", "mode",
                             "weighting"],
    "DPMSolverSDSRefine": ["model", "positive", "negative", "latent", "steps", "optimizer", "lr", "start_percent",
                           "end_percent", "start_sigma", "end_sigma", "cfg", "seed", "mode", "weighting", "inner_steps",
                           "grad_clip"],
    "DPMSolverCalibrateGrid": ["model", "positive", "negative", "cfg", "latent_image", "sampler_name", "scheduler",
                               "nfe", "calibration_seeds", "seed", "reference_steps", "max_evals", "file_name"],
    "DPMSolverLoadGrid": ["file_name", "sampler_name", "nfe", "model"],
    "DPMSolverSampler_dpm_solver_sds": ["sds_mode", "sds_weighting", "sds_lr", "sds_inner_steps", "sds_grad_clip",
                                        "sds_noise", "sds_inversion_steps", "thresholding", "threshold_quantile",
                                        "threshold_max"],
}

GOLDEN_ORDERS: dict[str, dict[int, str]] = {
    "DPMSolverSinglestepSampler": {1: "dpm_solver_1", 2: "dpm_solver_2", 3: "dpm_solver_3"},
    "DPMSolverMultistepSampler": {1: "dpm_solver_1", 2: "dpm_solver_2m", 3: "dpm_solver_3m"},
    "DPMSolverPPSinglestepSampler": {1: "dpm_solver_1", 2: "dpm_solver_pp_2s", 3: "dpm_solver_pp_3s"},
    "DPMSolverPPMultistepSampler": {1: "dpm_solver_1", 2: "dpm_solver_pp_2m", 3: "dpm_solver_pp_3m"},
    "DPMSolverFastSampler": {3: "dpm_solver_fast"},
}
"""What the `order` input of each family node selects (a saved workflow's order must keep its meaning)."""

GOLDEN_DEFAULT_ORDERS = {"DPMSolverSinglestepSampler": 3, "DPMSolverMultistepSampler": 3,
                         "DPMSolverPPSinglestepSampler": 2, "DPMSolverPPMultistepSampler": 2, "DPMSolverFastSampler": 3}
"""The order a family node is created with."""

GOLDEN_SAMPLER_NAMES = ["dpm_solver_1", "dpm_solver_2", "dpm_solver_3", "dpm_solver_2m", "dpm_solver_3m",
                        "dpm_solver_pp_2s", "dpm_solver_pp_3s", "dpm_solver_pp_2m", "dpm_solver_pp_3m",
                        "dpm_solver_fast", "dpm_solver_pp_sde", "dpm_solver_pp_2m_sde", "dpm_solver_pp_3m_sde",
                        "dpm_solver_pp_2s_ancestral", "dpm_solver_adaptive", "dpm_solver_pp_adaptive",
                        "dpm_solver_pp_pc", "dpm_solver_sds"]
"""Dropdown names saved in KSampler widgets."""

RELEASED_WIDGETS = Path(__file__).with_name("comfy_widgets_released.json")

GOLDEN_OUTPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[bool, ...] | None]] = {
    "DPMSolverScheduler": (("SIGMAS",), ("sigmas",), None),
    "DPMSolverFastScheduler": (("SIGMAS",), ("sigmas",), None),
    "DPMSolverCalibrateGrid": (("SIGMAS",), ("sigmas",), None),
    "DPMSolverLoadGrid": (("SIGMAS",), ("sigmas",), None),
    "DPMSolverSDSGradient": (("LATENT", "LATENT", "FLOAT"), ("gradient", "target", "loss"), None),
    "DPMSolverSDSRefine": (("LATENT", "FLOAT", "FLOAT"), ("latent", "loss", "loss_history"), (False, False, True)),
}
"""Output types, names and list flags of the nodes that are not sampler nodes (links name outputs by slot)."""


@pytest.fixture
def mappings(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    with fake_comfy_package(monkeypatch, PACKAGE) as (_, package):
        yield package.NODE_CLASS_MAPPINGS, package.NODE_DISPLAY_NAME_MAPPINGS


def _inputs(cls: Any) -> list[str]:
    spec = cls.INPUT_TYPES()
    return [*spec.get("required", {}), *spec.get("optional", {})]


def test_released_nodes_keep_their_ids_and_input_order(mappings: tuple[dict[str, Any], dict[str, str]]) -> None:
    classes, _ = mappings
    for node_id, golden in GOLDEN.items():
        assert node_id in classes, f"released node {node_id} disappeared"
        current = _inputs(classes[node_id])
        assert current[:len(golden)] == golden, f"{node_id}: released inputs renamed or reordered: {current}"
        if current != golden:
            warnings.warn(f"{node_id} gained inputs {current[len(golden):]}: pin them in GOLDEN", stacklevel=1)


def test_family_orders_keep_their_samplers(mappings: tuple[dict[str, Any], dict[str, str]]) -> None:
    classes, _ = mappings
    for node_id, orders in GOLDEN_ORDERS.items():
        assert dict(classes[node_id].MEMBERS) == orders


def test_dropdown_names_are_kept() -> None:
    assert list(SAMPLERS)[:len(GOLDEN_SAMPLER_NAMES)] == GOLDEN_SAMPLER_NAMES


def test_the_interface_table_matches_the_golden_list() -> None:
    namespace = pin_released_widgets.interface_tables()
    released = namespace["RELEASED_INPUTS"]
    assert {k: list(v) for k, v in released.items()} == GOLDEN
    families = namespace["FAMILY_NODES"]
    assert {k: members for k, (_, members, _) in families.items()} == GOLDEN_ORDERS
    assert {k: default for k, (_, _, default) in families.items()} == GOLDEN_DEFAULT_ORDERS


def test_new_nodes_follow_the_naming_rule(mappings: tuple[dict[str, Any], dict[str, str]]) -> None:
    classes, names = mappings
    extra = sorted(set(classes) - set(GOLDEN))
    for node_id in extra:
        assert node_id.startswith("DPMSolverSampler_") and node_id[len("DPMSolverSampler_"):] in SAMPLERS
        assert names[node_id] == SAMPLERS[node_id[len("DPMSolverSampler_"):]].label
    if extra:
        warnings.warn(f"nodes not pinned yet (pin them when released): {extra}", stacklevel=1)


def test_released_widgets_keep_their_types_defaults_and_ranges(mappings: tuple[dict[str, Any], dict[str, str]]
                                                                ) -> None:
    """A saved workflow holds widget values only: a narrower range refuses them, a new default changes new nodes."""
    classes, _ = mappings
    released = json.loads(RELEASED_WIDGETS.read_text())
    assert {node_id: list(inputs) for node_id, inputs in released.items()} == GOLDEN
    for node_id, inputs in released.items():
        spec = classes[node_id].INPUT_TYPES()
        current = {**spec.get("required", {}), **spec.get("optional", {})}
        for name, (kind, extra) in inputs.items():
            now_kind, now_extra = widget_entry(current[name])
            if isinstance(kind, list):
                assert now_kind[:len(kind)] == kind, f"{node_id}.{name}: released choices changed: {now_kind}"
            else:
                assert now_kind == kind, f"{node_id}.{name}: released as {kind}, now {now_kind}"
            assert now_extra == extra, f"{node_id}.{name}: released as {extra}, now {now_extra}"


def test_released_outputs_keep_their_slots(mappings: tuple[dict[str, Any], dict[str, str]]) -> None:
    classes, _ = mappings
    for node_id in GOLDEN:
        cls = classes[node_id]
        outputs = (cls.RETURN_TYPES, cls.RETURN_NAMES, getattr(cls, "OUTPUT_IS_LIST", None))
        assert outputs == GOLDEN_OUTPUTS.get(node_id, (("SAMPLER",), ("sampler",), None)), node_id


def test_the_pinned_file_is_written_as_the_pinning_tool_writes_it() -> None:
    text = RELEASED_WIDGETS.read_text()
    assert render(json.loads(text)) == text


def test_pinning_from_nothing_gives_the_released_file(mappings: tuple[dict[str, Any], dict[str, str]]) -> None:
    classes, _ = mappings
    pinned = pin(pin_released_widgets.released_inputs(), classes, {})
    assert render(pinned) == RELEASED_WIDGETS.read_text()


def test_pinning_adds_what_is_missing_in_place_and_rewrites_nothing(
        mappings: tuple[dict[str, Any], dict[str, str]]) -> None:
    classes, _ = mappings
    released = json.loads(RELEASED_WIDGETS.read_text())
    partial = json.loads(RELEASED_WIDGETS.read_text())
    del partial["DPMSolverLoadGrid"]
    del partial["DPMSolverSampler_dpm_solver_pp_pc"]["corrector"]
    partial["DPMSolverScheduler"]["steps"][1]["default"] = 7  # pinned before a (refused) change: kept
    partial["DPMSolverRetired"] = {"x": ["INT", {}]}  # pinned, no longer listed: kept for the test to refuse
    pinned = pin(pin_released_widgets.released_inputs(), classes, partial)
    assert pinned["DPMSolverScheduler"]["steps"][1]["default"] == 7
    assert pinned.pop("DPMSolverRetired") == {"x": ["INT", {}]}
    pinned["DPMSolverScheduler"]["steps"][1]["default"] = released["DPMSolverScheduler"]["steps"][1]["default"]
    assert render(pinned) == render(released)  # the added node and input in their released places


def test_the_pinning_tool_writes_only_what_it_adds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    text = RELEASED_WIDGETS.read_text()
    partial = json.loads(text)
    del partial["DPMSolverSDSRefine"]["grad_clip"]
    target = tmp_path / "pinned.json"
    target.write_text(render(partial))
    monkeypatch.setattr(pin_released_widgets, "RELEASED_WIDGETS", target)
    assert pin_released_widgets.main(["--check"]) == 1
    assert target.read_text() == render(partial)
    assert pin_released_widgets.main([]) == 0
    assert target.read_text() == text
    assert pin_released_widgets.main(["--check"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == ["pinned DPMSolverSDSRefine.grad_clip"] * 2 + ["nothing to pin"]
