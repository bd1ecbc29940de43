"""UI-format workflow -> API prompt conversion (dpmsolver_tools/comfy_workflow.py), and the example workflows' shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_comfy_support import ROOT, fake_comfy_package

from dpmsolver_tools.comfy_workflow import WorkflowError, ui_to_api
from samplers import SAMPLERS

PACKAGE = "dpm_solver_samplers_workflow_test"
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))

_INT = ["INT", {"default": 0}]
_SEED = ["INT", {"default": 0, "control_after_generate": True}]
_FLOAT = ["FLOAT", {"default": 1.0}]
_STRING = ["STRING", {}]


def _node(required: dict[str, Any], outputs: list[str], optional: dict[str, Any] | None = None,
          names: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"required": required}
    if optional:
        spec["optional"] = optional
    return {"input": spec, "output": outputs, "output_name": names or outputs, "display_name": "x"}


CORE_INFO: dict[str, Any] = {
    # Input names, types and order of the ComfyUI nodes the example workflows use (as /object_info reports).
    "CheckpointLoaderSimple": _node({"ckpt_name": [["a.safetensors"], {}]}, ["MODEL", "CLIP", "VAE"]),
    "CLIPTextEncode": _node({"text": _STRING, "clip": ["CLIP"]}, ["CONDITIONING"]),
    "EmptyLatentImage": _node({"width": _INT, "height": _INT, "batch_size": _INT}, ["LATENT"]),
    "EmptySD3LatentImage": _node({"width": _INT, "height": _INT, "batch_size": _INT}, ["LATENT"]),
    "KSampler": _node({"model": ["MODEL"], "seed": _SEED, "steps": _INT, "cfg": _FLOAT,
                       "sampler_name": [["euler", *SAMPLERS], {}], "scheduler": [["karras", "simple"], {}],
                       "positive": ["CONDITIONING"], "negative": ["CONDITIONING"], "latent_image": ["LATENT"],
                       "denoise": _FLOAT}, ["LATENT"]),
    "VAEDecode": _node({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"]),
    "SaveImage": _node({"images": ["IMAGE"], "filename_prefix": _STRING}, []),
    "ModelSamplingSD3": _node({"model": ["MODEL"], "shift": _FLOAT}, ["MODEL"]),
    "RandomNoise": _node({"noise_seed": _SEED}, ["NOISE"]),
    "CFGGuider": _node({"model": ["MODEL"], "positive": ["CONDITIONING"], "negative": ["CONDITIONING"],
                        "cfg": _FLOAT}, ["GUIDER"]),
    "SamplerCustomAdvanced": _node({"noise": ["NOISE"], "guider": ["GUIDER"], "sampler": ["SAMPLER"],
                                    "sigmas": ["SIGMAS"], "latent_image": ["LATENT"]}, ["LATENT", "LATENT"],
                                   names=["output", "denoised_output"]),
    "ImageStitch": _node({"image1": ["IMAGE"], "direction": [["right", "down"], {}], "match_image_size":
                          ["BOOLEAN", {}], "spacing_width": _INT, "spacing_color": [["white"], {}]}, ["IMAGE"],
                         optional={"image2": ["IMAGE"]}),
}


@pytest.fixture
def object_info(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """CORE_INFO plus this package's nodes as /object_info would describe them."""
    with fake_comfy_package(monkeypatch, PACKAGE) as (_, package):
        info = dict(CORE_INFO)
        for node_id, cls in package.NODE_CLASS_MAPPINGS.items():
            spec = cls.INPUT_TYPES()
            info[node_id] = {"input": {k: {n: list(v) for n, v in d.items()} for k, d in spec.items()},
                             "output": list(cls.RETURN_TYPES), "output_name": list(cls.RETURN_NAMES),
                             "display_name": package.NODE_DISPLAY_NAME_MAPPINGS[node_id]}
        yield info


def test_there_are_example_workflows() -> None:
    names = {p.stem for p in WORKFLOWS}
    assert {"txt2img_ksampler_dpm_solver", "custom_sampler_dpm_solver_pp_3s", "flow_model_sd3_dpm_solver",
            "compare_samplers"} <= names
    for path in WORKFLOWS:
        assert path.with_suffix(".png").exists(), f"{path.name} has no preview PNG"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_preview_pngs_carry_their_workflow(path: Any) -> None:
    """Dragging the PNG into ComfyUI must load the same workflow as the JSON file."""
    image_module = pytest.importorskip("PIL.Image")
    with image_module.open(path.with_suffix(".png")) as image:
        embedded = json.loads(image.info["workflow"])
        assert "prompt" in image.info
    assert embedded == json.loads(path.read_text())


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflows_convert(object_info: dict[str, Any], path: Any) -> None:
    workflow = json.loads(path.read_text())
    prompt = ui_to_api(workflow, object_info)
    types = [node["class_type"] for node in prompt.values()]
    assert "SaveImage" in types
    for node_id, node in prompt.items():
        info = object_info[node["class_type"]]["input"]
        assert set(info["required"]) <= set(node["inputs"]), (path.name, node_id)
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                assert value[0] in prompt, f"{path.name}: node {node_id}.{name} links to a missing node"
    names = [n["inputs"]["sampler_name"] for n in prompt.values() if n["class_type"] == "KSampler"]
    assert all(name in SAMPLERS for name in names)
    ours = [n for n in prompt.values() if n["class_type"].startswith("DPMSolver")]
    assert ours or names


def test_the_web_pages_extra_seed_value_is_skipped(object_info: dict[str, Any]) -> None:
    workflow = {"nodes": [
        {"id": 1, "type": "KSampler", "mode": 0, "inputs": [
            {"name": "model", "type": "MODEL", "link": None}],
         "widgets_values": [7, "randomize", 12, 5.5, "dpm_solver_pp_3m", "simple", 0.75]},
    ], "links": []}
    inputs = ui_to_api(workflow, object_info)["1"]["inputs"]
    assert inputs == {"seed": 7, "steps": 12, "cfg": 5.5, "sampler_name": "dpm_solver_pp_3m", "scheduler": "simple",
                      "denoise": 0.75}


def _chain() -> dict[str, Any]:
    """Loader -> reroute -> (bypassed) ModelSamplingSD3 -> KSampler; a note; a widget converted to an input."""
    return {"nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}],
         "widgets_values": ["a.safetensors"]},
        {"id": 2, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 1}],
         "outputs": [{"name": "", "type": "MODEL", "links": [2]}]},
        {"id": 3, "type": "ModelSamplingSD3", "mode": 4, "inputs": [{"name": "model", "type": "MODEL", "link": 2}],
         "widgets_values": [3.0]},
        {"id": 4, "type": "KSampler", "inputs": [
            {"name": "model", "type": "MODEL", "link": 3},
            {"name": "steps", "type": "INT", "link": 4, "widget": {"name": "steps"}}],
         "widgets_values": [1, "fixed", 20, 7.0, "dpm_solver_fast", "karras", 1.0]},
        {"id": 5, "type": "Note", "widgets_values": ["hello"]},
        {"id": 6, "type": "RandomNoise", "widgets_values": [3, "fixed"],
         "outputs": [{"name": "NOISE", "type": "NOISE", "links": []}]},
        {"id": 7, "type": "PrimitiveNode", "outputs": [{"name": "INT", "type": "INT", "links": [4]}],
         "widgets_values": [20, "fixed"]},
    ], "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 4, 0, "MODEL"],
                 [4, 7, 0, 4, 1, "INT"]]}


def test_reroutes_bypass_notes_and_primitives(object_info: dict[str, Any]) -> None:
    prompt = ui_to_api(_chain(), object_info)
    assert set(prompt) == {"1", "4", "6"}
    assert prompt["4"]["inputs"]["model"] == ["1", 0]
    assert prompt["4"]["inputs"]["steps"] == 20  # from the primitive: the value the web page stored
    assert prompt["6"]["inputs"] == {"noise_seed": 3}


def test_optional_link_after_widgets(object_info: dict[str, Any]) -> None:
    workflow = {"nodes": [
        {"id": 1, "type": "VAEDecode", "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1, 2]}]},
        {"id": 2, "type": "ImageStitch", "inputs": [{"name": "image1", "type": "IMAGE", "link": 1},
                                                   {"name": "image2", "type": "IMAGE", "link": 2}],
         "widgets_values": ["down", False, 4, "white"]},
    ], "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 0, 2, 1, "IMAGE"]]}
    inputs = ui_to_api(workflow, object_info)["2"]["inputs"]
    assert inputs == {"image1": ["1", 0], "direction": "down", "match_image_size": False, "spacing_width": 4,
                      "spacing_color": "white", "image2": ["1", 0]}


def test_muted_nodes_are_dropped(object_info: dict[str, Any]) -> None:
    workflow = _chain()
    workflow["nodes"][5]["mode"] = 2
    assert "6" not in ui_to_api(workflow, object_info)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda w: w["nodes"][0].update(type="NoSuchNode"), "NoSuchNode"),
    (lambda w: w["nodes"][3].update(widgets_values=[1, "fixed", 20]), "no widget value for input 'cfg'"),
    (lambda w: w["links"].pop(0), "link 1 is missing"),
    (lambda w: w.pop("nodes"), "not a UI-format workflow"),
])
def test_errors_name_the_problem(object_info: dict[str, Any], mutate: Any, message: str) -> None:
    workflow = _chain()
    mutate(workflow)
    with pytest.raises(WorkflowError, match=message):
        ui_to_api(workflow, object_info)


def test_input_order_from_object_info_is_respected(object_info: dict[str, Any]) -> None:
    info = json.loads(json.dumps(object_info))
    info["EmptyLatentImage"]["input_order"] = {"required": ["batch_size", "width", "height"]}
    workflow = {"nodes": [{"id": 1, "type": "EmptyLatentImage", "widgets_values": [1, 64, 32]}], "links": []}
    assert ui_to_api(workflow, info)["1"]["inputs"] == {"batch_size": 1, "width": 64, "height": 32}
