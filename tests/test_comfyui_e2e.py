"""End to end against a real ComfyUI: dropdowns, nodes, every workflow, every sampler, errors, interrupt.

Runs when COMFYUI_PATH points at a ComfyUI checkout whose requirements (without torch) are installed; see
README.md, section ComfyUI. It starts `python main.py --cpu` on a free port with this repository linked as a custom
node and a random-weight SD1.5-shaped checkpoint built from ComfyUI's own classes
(dpmsolver_tools/make_test_checkpoint.py),
then talks to it over HTTP (/object_info, /prompt, /history, /interrupt, /ws). About 2-5 minutes on 2 CPU cores.

COMFYUI_E2E_WORKDIR (optional) keeps the work directory (checkpoint, outputs, server log) between runs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dpmsolver_tools.comfy_server import TEST_CHECKPOINT, ComfyServer, execution_error
from dpmsolver_tools.comfy_workflow import ui_to_api
from samplers import SAMPLERS

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(
    not COMFYUI_PATH,
    reason="COMFYUI_PATH is not set: the end-to-end test needs a ComfyUI checkout (README.md, section ComfyUI)")

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
STEPS = 4
SIZE = 64
STATS: dict[str, Any] = {"prompts": 0, "sampler_runs": 0, "started": time.monotonic()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    assert COMFYUI_PATH
    workdir = Path(os.environ.get("COMFYUI_E2E_WORKDIR") or tmp_path_factory.mktemp("comfyui-e2e"))
    with ComfyServer.start(Path(COMFYUI_PATH).resolve(), workdir.resolve()) as running:
        yield running
    elapsed = time.monotonic() - STATS["started"]
    summary = {**STATS, "seconds": round(elapsed, 1)}
    summary.pop("started")
    (workdir / "e2e-summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nComfyUI e2e: {summary}")


@pytest.fixture(scope="module")
def object_info(server: ComfyServer) -> dict[str, Any]:
    return server.get_json("/object_info")


def run(server: ComfyServer, prompt: dict[str, Any], workflow: dict[str, Any] | None = None, timeout: float = 300
        ) -> dict[str, Any]:
    STATS["prompts"] += 1
    entry = server.run(prompt, workflow, timeout=timeout)
    error = execution_error(entry)
    assert entry["status"]["status_str"] == "success", (error or entry["status"], server.log_tail(3000))
    return entry


# --- prompt builders ----------------------------------------------------------------------------------------

def base(flow: bool) -> dict[str, Any]:
    """Checkpoint, optional ModelSamplingSD3 (node "m"), prompts "pos"/"neg", latent "lat"."""
    prompt: dict[str, Any] = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TEST_CHECKPOINT}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
    }
    if flow:
        prompt["m"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["ckpt", 0], "shift": 3.0}}
    return prompt


def model_ref(flow: bool) -> list[Any]:
    return ["m", 0] if flow else ["ckpt", 0]


def save(prompt: dict[str, Any], latent: list[Any], prefix: str, suffix: str = "") -> dict[str, Any]:
    prompt[f"dec{suffix}"] = {"class_type": "VAEDecode", "inputs": {"samples": latent, "vae": ["ckpt", 2]}}
    prompt[f"save{suffix}"] = {"class_type": "SaveImage", "inputs": {"images": [f"dec{suffix}", 0],
                                                                     "filename_prefix": prefix}}
    return prompt


def txt2img(name: str, flow: bool, steps: int = STEPS, denoise: float = 1.0, seed: int = 1,
            prompt: dict[str, Any] | None = None) -> dict[str, Any]:
    """A KSampler branch (nodes ks_/dec_/save_<name>) added to `prompt` (default: a new prompt)."""
    prompt = base(flow) if prompt is None else prompt
    prompt[f"ks_{name}"] = {"class_type": "KSampler", "inputs": {
        "model": model_ref(flow), "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": name,
        "scheduler": "simple" if flow else "karras", "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": ["lat", 0], "denoise": denoise}}
    return save(prompt, [f"ks_{name}", 0], f"e2e/{name}_{'flow' if flow else 've'}", suffix=f"_{name}")


def custom(sampler: dict[str, Any], flow: bool, sigmas: dict[str, Any] | None = None, seed: int = 2,
           prefix: str = "e2e/custom") -> dict[str, Any]:
    prompt = base(flow)
    prompt["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
    prompt["guider"] = {"class_type": "CFGGuider", "inputs": {"model": model_ref(flow), "positive": ["pos", 0],
                                                              "negative": ["neg", 0], "cfg": 5.0}}
    prompt["sampler"] = sampler
    prompt["sigmas"] = sigmas or {"class_type": "BasicScheduler", "inputs": {
        "model": model_ref(flow), "scheduler": "simple" if flow else "karras", "steps": STEPS, "denoise": 1.0}}
    prompt["sca"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["sampler", 0], "sigmas": ["sigmas", 0],
        "latent_image": ["lat", 0]}}
    return save(prompt, ["sca", 0], prefix)


def node_defaults(object_info: dict[str, Any], node_id: str) -> dict[str, Any]:
    spec = object_info[node_id]["input"]["required"]
    return {name: options[1]["default"] for name, options in spec.items() if "default" in options[1]}


def shrink(prompt: dict[str, Any]) -> dict[str, Any]:
    """Tiny latents and few steps for the example workflows."""
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] in ("EmptyLatentImage", "EmptySD3LatentImage"):
            inputs["width"] = inputs["height"] = SIZE
        if node["class_type"] in ("KSampler", "KSamplerAdvanced", "DPMSolverScheduler", "BasicScheduler"):
            inputs["steps"] = min(inputs["steps"], STEPS)
        if node["class_type"] == "DPMSolverFastScheduler":
            inputs["steps"] = min(inputs["steps"], 7)
    return prompt


# --- tests --------------------------------------------------------------------------------------------------

def test_every_sampler_is_in_every_dropdown(object_info: dict[str, Any]) -> None:
    for node, path in (("KSampler", "required"), ("KSamplerAdvanced", "required"), ("KSamplerSelect", "required")):
        names = object_info[node]["input"][path]["sampler_name"][0]
        assert [n for n in names if n in SAMPLERS] == list(SAMPLERS), node
        assert len(names) == len(set(names)), node
        assert names[0] == "euler" and "dpmpp_2m" in names and "uni_pc" in names, node  # ComfyUI's own intact


def test_every_node_is_registered(server: ComfyServer, object_info: dict[str, Any]) -> None:
    startup = server.log_text().split("Starting server")[0]
    assert not [line for line in startup.splitlines() if "dpm-solver-samplers" in line and "IMPORT FAILED" in line]
    assert "/dpm-solver-samplers" in startup  # listed among the custom nodes imported
    ours = {k: v for k, v in object_info.items() if k.startswith("DPMSolver")}
    for name, entry in SAMPLERS.items():  # family nodes name their members in the description
        assert any(entry.label in v["description"] or k.endswith(name) for k, v in ours.items()), name
    for required in ("DPMSolverSinglestepSampler", "DPMSolverMultistepSampler", "DPMSolverPPSinglestepSampler",
                     "DPMSolverPPMultistepSampler", "DPMSolverFastSampler", "DPMSolverScheduler",
                     "DPMSolverFastScheduler"):
        assert required in ours
    for node_id, info in ours.items():
        assert info["category"].startswith("sampling/custom_sampling/"), node_id
        assert info["python_module"].startswith("custom_nodes."), node_id
        for name, spec in info["input"]["required"].items():
            assert spec[1].get("tooltip"), f"{node_id}.{name}"


def test_example_workflows_are_what_the_generator_writes(object_info: dict[str, Any]) -> None:
    """workflows/*.json are exactly what dpmsolver_tools/make_workflows.py writes from this ComfyUI's /object_info
    (so the files follow the generator, and its links and widget values fit the running server)."""
    from dpmsolver_tools.make_workflows import WORKFLOWS as BUILDERS

    assert sorted(BUILDERS) == [p.stem for p in WORKFLOWS]
    for path in WORKFLOWS:
        assert json.dumps(BUILDERS[path.stem](object_info), indent=2) + "\n" == path.read_text(), path.name


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_runs(server: ComfyServer, object_info: dict[str, Any], path: Path) -> None:
    from PIL import Image

    workflow = json.loads(path.read_text())
    prompt = shrink(ui_to_api(workflow, object_info))
    STATS["sampler_runs"] += sum(1 for n in prompt.values() if n["class_type"] in ("KSampler",
                                                                                 "SamplerCustomAdvanced"))
    entry = run(server, prompt, workflow)
    images = server.output_images(entry)
    assert len(images) == 1
    with Image.open(images[0]) as image:
        embedded = json.loads(image.info["workflow"])
    assert [n["type"] for n in embedded["nodes"]] == [n["type"] for n in workflow["nodes"]]


@pytest.mark.parametrize("flow", [False, True], ids=["ve", "flow"])
def test_txt2img_with_each_dropdown_name(server: ComfyServer, flow: bool) -> None:
    """One KSampler per sampler name (one prompt with a branch each: an error names the failing node)."""
    prompt = base(flow)
    for name in SAMPLERS:
        txt2img(name, flow, prompt=prompt)
    entry = run(server, prompt, timeout=900)
    STATS["sampler_runs"] += len(SAMPLERS)
    saved = {node_id for node_id, output in entry["outputs"].items() if output.get("images")}
    assert saved == {f"save_{name}" for name in SAMPLERS}


def _sampler_node_cases(object_info: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for node_id, info in sorted(object_info.items()):
        if not node_id.startswith("DPMSolver") or info["output"] != ["SAMPLER"]:
            continue
        defaults = node_defaults(object_info, node_id)
        spec = info["input"]["required"]
        orders = range(spec["order"][1]["min"], spec["order"][1]["max"] + 1) if "order" in spec else [None]
        for order in orders:
            inputs = dict(defaults)
            if order is not None:
                inputs["order"] = order
            if "solver_type" in inputs and (order or 3) > 1:
                inputs["solver_type"] = "taylor"
            cases.append((node_id, inputs))
    return cases


@pytest.mark.parametrize("flow", [False, True], ids=["ve", "flow"])
def test_every_sampler_node_with_our_schedules(server: ComfyServer, object_info: dict[str, Any], flow: bool) -> None:
    """Every sampler node at every order, through SamplerCustomAdvanced, on our schedules (one prompt)."""
    schedulers = [("DPMSolverScheduler", spacing) for spacing in ("logSNR uniform", "time uniform", "time quadratic")]
    schedulers += [("DPMSolverFastScheduler", spacing) for spacing in ("logSNR uniform", "time uniform")]
    prompt = base(flow)
    prompt["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}}
    prompt["guider"] = {"class_type": "CFGGuider", "inputs": {"model": model_ref(flow), "positive": ["pos", 0],
                                                              "negative": ["neg", 0], "cfg": 5.0}}
    cases = _sampler_node_cases(object_info)
    for i, (node_id, inputs) in enumerate(cases):
        scheduler, spacing = schedulers[i % len(schedulers)]
        if "fast" in node_id.lower():
            scheduler = "DPMSolverFastScheduler"
        if "rtol" in inputs:  # adaptive: looser tolerances keep the random-weight run short
            inputs.update(rtol=0.2, atol=0.1)
        tag = f"_{node_id}_{inputs.get('order', '')}"
        prompt[f"sampler{tag}"] = {"class_type": node_id, "inputs": inputs}
        prompt[f"sigmas{tag}"] = {"class_type": scheduler, "inputs": {
            "model": model_ref(flow), "steps": 5, "spacing": spacing, "denoise": 1.0 if i % 3 else 0.6}}
        prompt[f"sca{tag}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": [f"sampler{tag}", 0],
            "sigmas": [f"sigmas{tag}", 0], "latent_image": ["lat", 0]}}
        save(prompt, [f"sca{tag}", 0], f"e2e/node{tag}", suffix=tag)
    entry = run(server, prompt, timeout=900)
    STATS["sampler_runs"] += len(cases)
    assert sum(1 for output in entry["outputs"].values() if output.get("images")) == len(cases)


def test_ksampler_select_and_split_ksampler_advanced(server: ComfyServer) -> None:
    select = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpm_solver_pp_3s"}}
    run(server, custom(select, flow=True, prefix="e2e/select"))
    prompt = base(False)
    common = {"model": ["ckpt", 0], "noise_seed": 3, "steps": 6, "cfg": 5.0, "sampler_name": "dpm_solver_pp_3m",
              "scheduler": "karras", "positive": ["pos", 0], "negative": ["neg", 0]}
    prompt["a"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "enable", "latent_image": ["lat", 0], "start_at_step": 0, "end_at_step": 3,
        "return_with_leftover_noise": "enable"}}
    prompt["b"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "add_noise": "disable", "latent_image": ["a", 0], "start_at_step": 3, "end_at_step": 10000,
        "return_with_leftover_noise": "disable"}}
    run(server, save(prompt, ["b", 0], "e2e/split"))
    run(server, txt2img("dpm_solver_3", flow=False, denoise=0.5))
    STATS["sampler_runs"] += 4


def test_invalid_options_are_reported_by_name(server: ComfyServer, object_info: dict[str, Any]) -> None:
    node = "DPMSolverPPSinglestepSampler"
    inputs = {**node_defaults(object_info, node), "order": 3, "r1": 0.7, "r2": 0.6}
    status, payload = server.post_prompt(custom({"class_type": node, "inputs": inputs}, flow=False))
    assert status == 400
    errors = payload["node_errors"]["sampler"]["errors"]
    assert any("r1" in e["details"] and "r2" in e["details"] for e in errors), errors

    inputs = {**node_defaults(object_info, node), "order": 3, "r1": 1.5}
    status, payload = server.post_prompt(custom({"class_type": node, "inputs": inputs}, flow=False))
    assert status == 400 and "input 'r1' must be at most 0.99" in json.dumps(payload), payload

    inputs = {**node_defaults(object_info, "DPMSolverPPMultistepSampler"), "third_order": "sideways"}
    status, payload = server.post_prompt(custom({"class_type": "DPMSolverPPMultistepSampler", "inputs": inputs},
                                                flow=False))
    assert status == 400
    error = payload["node_errors"]["sampler"]["errors"][0]
    assert error["type"] == "value_not_in_list" and error["extra_info"]["input_name"] == "third_order"

    status, payload = server.post_prompt(txt2img("dpm_solver_9000", flow=False))
    assert status == 400
    assert payload["node_errors"]["ks_dpm_solver_9000"]["errors"][0]["extra_info"]["input_name"] == "sampler_name"

    # A VE grid on a flow model: the sampler refuses it when it runs, naming the problem.
    karras = {"class_type": "KarrasScheduler", "inputs": {"steps": 4, "sigma_max": 14.6, "sigma_min": 0.03,
                                                          "rho": 7.0}}
    sampler = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpm_solver_pp_2m"}}
    entry = server.run(custom(sampler, flow=True, sigmas=karras, prefix="e2e/bad"))
    STATS["prompts"] += 1
    error = execution_error(entry)
    assert error is not None and "'flow' schedule" in error["exception_message"], entry["status"]


def _adaptive_name() -> str | None:
    for name, entry in SAMPLERS.items():
        if "rtol" in entry.defaults:
            return name
    return None


def test_interrupt_stops_a_long_run(server: ComfyServer, object_info: dict[str, Any]) -> None:
    adaptive = _adaptive_name()
    if adaptive is not None:
        node = f"DPMSolverSampler_{adaptive}"
        inputs = {**node_defaults(object_info, node), "rtol": 1e-6, "atol": 1e-6, "max_nfe": 100000}
        sampler = {"class_type": node, "inputs": inputs}
    else:
        sampler = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpm_solver_3"}}
    sigmas = {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "karras",
                                                         "steps": 2000, "denoise": 1.0}}
    prompt = custom(sampler, flow=False, sigmas=sigmas, prefix="e2e/interrupted")
    prompt["lat"]["inputs"].update(width=128, height=128)
    log_start = len(server.log_text())
    prompt_id = server.queue(prompt)
    STATS["prompts"] += 1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the sampler's own progress bar shows up in the server log
        fresh = server.log_text()[log_start:]
        if server.get_json("/queue")["queue_running"] and ("it [" in fresh or "%|" in fresh):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    interrupted_at = time.monotonic()
    server.interrupt()
    entry = server.wait(prompt_id, timeout=120)
    stopped_after = time.monotonic() - interrupted_at
    messages = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in messages, entry["status"]
    assert stopped_after < 20, stopped_after
    STATS["interrupt"] = {"sampler": sampler["class_type"], "stopped_after_s": round(stopped_after, 2)}


def test_progress_events_count_model_calls(server: ComfyServer) -> None:
    """Over the web socket the page listens to: a 3-calls-per-step sampler reports steps as max and ends at it."""
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    events: list[dict[str, Any]] = []
    ready = threading.Event()
    done = threading.Event()

    async def listen() -> None:
        url = server.base_url.replace("http", "ws") + f"/ws?clientId={server.client_id}"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            ready.set()
            while not done.is_set():
                try:
                    message = await ws.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(message.data)
                    if data.get("type") == "progress":
                        events.append(data["data"])
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return

    thread = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    thread.start()
    assert ready.wait(30)
    steps = 5
    run(server, txt2img("dpm_solver_pp_3s", flow=False, steps=steps, seed=77))
    time.sleep(0.5)
    done.set()
    thread.join(10)
    sampling = [e for e in events if e.get("max") == steps]
    nfe = SAMPLERS["dpm_solver_pp_3s"].count_model_calls(
        [14.6146, 5.0, 1.0, 0.2, 0.03, 0.0])  # same number of calls as any 5-step grid ending in 0
    assert len(sampling) == nfe, events
    values = [e["value"] for e in sampling]
    assert values == sorted(values) and values[-1] == steps and values[-2] < steps


# --- score distillation (SDS) nodes ---------------------------------------------------------------------------

SDS_MODES = ("sds", "csd", "sdi")


def sds_branches(prompt: dict[str, Any], flow: bool, source: list[Any]) -> int:
    """An SDS Gradient and an SDS Refine node per mode on `source`, each output decoded and saved; returns the
    number of images saved."""
    family = "flow" if flow else "ve"
    common = {"model": model_ref(flow), "positive": ["pos", 0], "negative": ["neg", 0], "latent": source,
              "cfg": 5.0, "seed": 3, "weighting": "dreamfusion"}
    for i, mode in enumerate(SDS_MODES):
        prompt[f"grad_{mode}"] = {"class_type": "DPMSolverSDSGradient", "inputs": {
            **common, "mode": mode, "percent": 0.4, "sigma": 0.5 if (flow and mode == "csd") else 0.0}}
        save(prompt, [f"grad_{mode}", 1], f"e2e/sds_target_{mode}_{family}", suffix=f"_grad_{mode}")
        prompt[f"refine_{mode}"] = {"class_type": "DPMSolverSDSRefine", "inputs": {
            **common, "mode": mode, "steps": 3, "optimizer": ("adam", "sgd")[i % 2], "lr": 0.05,
            "start_percent": 0.2, "end_percent": 0.8, "start_sigma": 0.0, "end_sigma": 0.0, "inner_steps": 1,
            "grad_clip": 1.0 if mode == "sds" else 0.0}}
        save(prompt, [f"refine_{mode}", 0], f"e2e/sds_refined_{mode}_{family}", suffix=f"_refine_{mode}")
    return 2 * len(SDS_MODES)


@pytest.mark.parametrize("flow", [False, True], ids=["ve", "flow"])
def test_sds_gradient_and_refine_nodes(server: ComfyServer, flow: bool) -> None:
    """Every SDS mode through both SDS nodes on a txt2img draft (one prompt per model family)."""
    prompt = txt2img("dpm_solver_pp_2m", flow)
    saved = sds_branches(prompt, flow, ["ks_dpm_solver_pp_2m", 0])
    entry = run(server, prompt, timeout=900)
    STATS["sampler_runs"] += 1 + saved
    assert sum(1 for output in entry["outputs"].values() if output.get("images")) == saved + 1


@pytest.mark.parametrize("flow", [False, True], ids=["ve", "flow"])
def test_sds_sampler_node_in_csd_mode(server: ComfyServer, object_info: dict[str, Any], flow: bool) -> None:
    """dpm_solver_sds through SamplerCustomAdvanced in mode csd: the conditional and unconditional predictions
    come from ComfyUI's post-CFG hook."""
    node = "DPMSolverSampler_dpm_solver_sds"
    inputs = {**node_defaults(object_info, node), "sds_mode": "csd", "sds_noise": "fresh"}
    run(server, custom({"class_type": node, "inputs": inputs}, flow=flow, prefix="e2e/sds_csd"))
    STATS["sampler_runs"] += 1


def test_sds_inputs_are_reported_by_name(server: ComfyServer) -> None:
    prompt = base(flow=True)
    prompt["refine"] = {"class_type": "DPMSolverSDSRefine", "inputs": {
        "model": model_ref(True), "positive": ["pos", 0], "negative": ["neg", 0], "latent": ["lat", 0],
        "steps": 2, "optimizer": "sgd", "lr": 0.1, "start_percent": 0.2, "end_percent": 0.8, "start_sigma": 2.0,
        "end_sigma": 0.0, "cfg": 5.0, "seed": 0, "mode": "sds", "weighting": "uniform", "inner_steps": 1,
        "grad_clip": 0.0}}
    entry = server.run(save(prompt, ["refine", 0], "e2e/sds_bad"))
    STATS["prompts"] += 1
    error = execution_error(entry)
    assert error is not None and "input 'start_sigma' must be at most 1 on a flow model" in error["exception_message"]

    prompt["refine"]["inputs"].update(start_sigma=0.0, mode="dreamfusion")
    status, payload = server.post_prompt(prompt)
    assert status == 400
    assert payload["node_errors"]["refine"]["errors"][0]["extra_info"]["input_name"] == "mode"
