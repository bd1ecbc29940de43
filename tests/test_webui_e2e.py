"""End to end against a real Stable Diffusion WebUI (A1111, lllyasviel Forge, reForge, Forge Classic) over its HTTP API.

Runs when WEBUI_PATH points at a WebUI checkout whose requirements and repositories/ are in place, with WEBUI_PYTHON
its interpreter (default: this one) and COMFYUI_PATH a ComfyUI checkout to build the random-weight test checkpoint
from (once; WEBUI_E2E_WORKDIR keeps it, the WebUI's config and the server log between runs). See README.md,
"Testing the WebUI extension". It starts `launch.py --api` on the CPU with this repository as an extension
(dpmsolver_tools/webui_server.py) and checks, through the page's description and the API a script calls:

- every sampler and the logSNR uniform schedule are listed, and every sampler makes an image under its label;
- the DPM-Solver accordion, with every control at "the sampler's own default", is on the txt2img and img2img tabs,
  and an image's infotext reads back to our sampler, its options and defaults for the controls it does not name;
- our samplers that are the same method as one of the host's make its image (to the 8-bit rounding), in txt2img and
  img2img: the sigmas, the CFG denoiser, the per-image Brownian noise and the schedule reach us as they reach its own;
- options (script arguments, override_settings) change the image and are written to the infotext; a bad option is
  an HTTP error naming it, not an image made with the defaults;
- a batch makes the images each seed makes alone; an interrupt stops a long run;
- a flow model is sampled as a flow: on reForge, its model-sampling script's SD3 mode; on A1111 1.10, an SD3
  checkpoint (make_test_checkpoint.py --variant sd3), where every sampler also makes an image.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dpmsolver_tools.webui_server import WebUIServer, decoded_images
from dpmsolver_webui.controls import CONTROLS, DEFAULT_CHOICE
from samplers import SAMPLERS

WEBUI_PATH = os.environ.get("WEBUI_PATH")
pytestmark = pytest.mark.skipif(
    not WEBUI_PATH,
    reason="WEBUI_PATH is not set: this end-to-end test needs a WebUI checkout (A1111, Forge, reForge or Forge "
           "Classic; README.md, Testing the WebUI extension)")

SIZE = 64
BASE = {"prompt": "a cat", "negative_prompt": "", "width": SIZE, "height": SIZE, "cfg_scale": 5.0, "seed": 1234,
        "steps": 8, "scheduler": "Karras"}
ROUNDING = 1
"""Largest 8-bit pixel difference allowed between images that should be the same (the PNG's rounding)."""


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    keep = os.environ.get("WEBUI_E2E_WORKDIR")
    with tempfile.TemporaryDirectory(prefix="dpmsolver-webui-e2e-") as scratch:
        yield Path(keep) if keep else Path(scratch)


@contextlib.contextmanager
def started(workdir: Path, variant: str = "webui") -> Iterator[WebUIServer]:
    """A server on the test checkpoint of `variant` (dpmsolver_tools/webui_server.py's TEST_CHECKPOINTS)."""
    assert WEBUI_PATH is not None
    comfyui = os.environ.get("COMFYUI_PATH")
    python = os.environ.get("WEBUI_PYTHON", sys.executable)
    with WebUIServer.start(Path(WEBUI_PATH), workdir, Path(comfyui) if comfyui else None, python,
                           variant=variant) as running:
        yield running


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[WebUIServer]:
    with started(workdir) as running:
        yield running


def hosted(server: WebUIServer, payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` as the host takes it: a WebUI before A1111 1.9 has no per-request schedule, its `k_sched_type`
    setting (Automatic, karras, exponential, ...) chooses it for every sampler, ours included."""
    if server.schedule_types is not None or "scheduler" not in payload:
        return payload
    payload = dict(payload)
    schedule = payload.pop("scheduler")
    setting = schedule if schedule == "Automatic" else schedule.lower()
    payload["override_settings"] = {**payload.get("override_settings", {}), "k_sched_type": setting}
    return payload


def generate(server: WebUIServer, sampler: str, options: dict[str, Any] | None = None, **fields: Any
             ) -> tuple[list[Any], str]:
    """The images and the first infotext of a txt2img job; `options` go to our script as API arguments."""
    payload: dict[str, Any] = {**BASE, "sampler_name": sampler, **fields}
    if options is not None:
        payload["alwayson_scripts"] = {"DPM-Solver": {"args": [options]}}
    status, answer = server.txt2img(hosted(server, payload))
    assert status == 200, f"HTTP {status}: {answer}\n{server.log_tail()}"
    return decoded_images(answer), json.loads(answer["info"])["infotexts"][0]


def largest_difference(a: Any, b: Any) -> int:
    return int(abs(a.astype(int) - b.astype(int)).max())


def test_every_sampler_and_the_schedule_are_listed(server: WebUIServer) -> None:
    listed = {s["name"]: s["aliases"] for s in server.get_json("/sdapi/v1/samplers")}
    for entry in SAMPLERS.values():
        assert entry.label in listed, entry.label
        assert entry.name in listed[entry.label]
    if server.schedule_types is not None:  # before A1111 1.9 there is no schedule type to add
        assert server.schedule_types.get("logsnr_uniform") == "logSNR uniform"


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_the_accordion_is_on_the_page_with_every_control_unset(server: WebUIServer, tab: str) -> None:
    components = {c["props"].get("elem_id"): c for c in server.get_json("/config")["components"]}
    accordion = components[f"script_{tab}_dpmsolver_accordion"]
    assert accordion["type"] == "accordion" and accordion["props"]["label"] == "DPM-Solver"
    for control in CONTROLS:
        component = components[f"script_{tab}_dpmsolver_{control.option}"]
        assert component["type"] == ("dropdown" if control.kind == "choice" else "slider")
        assert component["props"]["value"] == control.unset_value
        if control.kind == "choice":
            choices = component["props"]["choices"]  # gradio 4: [label, value] pairs; gradio 3: values
            assert [c[1] if isinstance(c, list) else c for c in choices] == control.available_choices()


def test_an_infotext_reads_back_to_the_sampler_and_its_options(server: WebUIServer) -> None:
    payload = {**BASE, "steps": 4, "sampler_name": "DPM-Solver++ 3M",
               "alwayson_scripts": {"DPM-Solver": {"args": [{"solver_type": "taylor", "third_order": "consistent"}]}}}
    status, answer = server.txt2img(hosted(server, payload))
    assert status == 200, answer
    image = "data:image/png;base64," + answer["images"][0]
    status, read = server.request("POST", "/sdapi/v1/png-info", {"image": image})
    assert status == 200, read
    parameters = read["parameters"]
    assert parameters["Sampler"] == "DPM-Solver++ 3M" and parameters["Schedule type"].lower() == "karras"
    assert parameters["DPM-Solver solver type"] == "taylor" and parameters["DPM-Solver third order"] == "consistent"
    assert parameters["DPM-Solver corrector"] == DEFAULT_CHOICE and parameters["DPM-Solver eta"] == 1.0


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_makes_an_image(server: WebUIServer, name: str) -> None:
    label = SAMPLERS[name].label
    images, infotext = generate(server, label, steps=4, scheduler="Automatic")
    assert f"Sampler: {label}," in infotext
    assert len(images) == 1 and images[0].shape == (SIZE, SIZE, 3) and images[0].std() > 5


@pytest.mark.parametrize(("ours", "theirs", "another"), [
    ("DPM-Solver++ 2M", "DPM++ 2M", "Euler"),
    ("DPM-Solver-1", "Euler", "DPM++ 2M"),  # DDIM is Euler in sigma space
    ("DPM-Solver++ 2M SDE", "DPM++ 2M SDE", "DPM++ 2M"),  # eta 1, the WebUI's Brownian noise from the image's seed
])
def test_the_same_method_makes_the_hosts_image(server: WebUIServer, ours: str, theirs: str, another: str) -> None:
    mine, _ = generate(server, ours)
    host, _ = generate(server, theirs)
    different, _ = generate(server, another)
    assert largest_difference(mine[0], host[0]) <= ROUNDING
    assert largest_difference(mine[0], different[0]) > 8 * ROUNDING  # the comparison can fail


def init_image() -> str:
    """A 64x64 RGB test pattern as base64 PNG (the img2img input)."""
    import numpy as np
    from PIL import Image

    ramp = (np.indices((SIZE, SIZE)).sum(0) * 2 % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([ramp, ramp[::-1], ramp.T], -1)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def img2img(server: WebUIServer, sampler: str, strength: float = 0.5) -> Any:
    """The image of an img2img job from init_image() at denoising strength `strength`: at 0.5 the grid starts halfway
    down the schedule, at the noised init image. The first img2img after a start differs from every later one,
    whatever the sampler (Forge; A1111 on SD3): a test makes one first."""
    payload = {**BASE, "steps": 10, "init_images": [init_image()], "denoising_strength": strength}
    status, answer = server.request("POST", "/sdapi/v1/img2img", hosted(server, {**payload, "sampler_name": sampler}),
                                    600.0)
    assert status == 200, answer
    return decoded_images(answer)[0]


def test_img2img_makes_the_hosts_image(server: WebUIServer) -> None:
    img2img(server, "Euler")  # the first img2img after a start
    for ours, theirs in (("DPM-Solver++ 2M", "DPM++ 2M"), ("DPM-Solver++ 2M SDE", "DPM++ 2M SDE")):
        assert largest_difference(img2img(server, ours), img2img(server, theirs)) <= ROUNDING
    assert largest_difference(img2img(server, "DPM-Solver++ 2M"), img2img(server, "Euler")) > 8 * ROUNDING


def test_a_dpm_solver_hires_pass_with_its_option(server: WebUIServer) -> None:
    images, infotext = generate(server, "Euler", {"third_order": "consistent"}, steps=4, enable_hr=True, hr_scale=1.5,
                                hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=4,
                                hr_sampler_name="DPM-Solver++ 3M SDE", hr_additional_modules=["Use same choices"])
    assert "Hires sampler: DPM-Solver++ 3M SDE," in infotext and "DPM-Solver third order: consistent" in infotext
    assert images[0].shape == (96, 96, 3)


def test_logsnr_uniform_is_the_exponential_grid_on_an_sd15_model(server: WebUIServer) -> None:
    """DPM-Solver-fast's default schedule: logSNR uniform, or Exponential (the same grid for SD1.5) where a WebUI
    before A1111 1.9 has no schedule types to add it to."""
    automatic, infotext = generate(server, "DPM-Solver-fast", scheduler="Automatic")
    exponential, _ = generate(server, "DPM-Solver-fast", scheduler="Exponential")
    karras, _ = generate(server, "DPM-Solver-fast", scheduler="Karras")
    if server.schedule_types is not None:
        assert "Schedule type: logSNR uniform," in infotext
    assert largest_difference(automatic[0], exponential[0]) <= ROUNDING
    assert largest_difference(automatic[0], karras[0]) > 8 * ROUNDING


def test_options_change_the_image_and_the_infotext(server: WebUIServer) -> None:
    default, default_info = generate(server, "DPM-Solver++ 3M")
    taylor, info = generate(server, "DPM-Solver++ 3M", {"solver_type": "taylor"})
    setting, setting_info = generate(server, "DPM-Solver++ 3M",
                                     override_settings={"dpmsolver_ext_solver_type": "taylor"})
    assert "DPM-Solver solver type: taylor" in info and "DPM-Solver solver type" not in default_info
    assert "DPM-Solver solver type: taylor" in setting_info
    assert largest_difference(taylor[0], default[0]) > ROUNDING
    assert largest_difference(taylor[0], setting[0]) == 0


@pytest.mark.parametrize(("options", "message"), [
    ({"eta": -1}, "DPM-Solver option eta must be a finite number >= 0"),
    ({"rtol": "abc"}, "DPM-Solver option rtol: 'abc' is not a number"),
    ({"solver_type": "taylor", "bogus": 1}, "unknown DPM-Solver option(s) bogus"),
])
def test_a_bad_option_is_an_error_naming_it(server: WebUIServer, options: dict[str, Any], message: str) -> None:
    payload = {**BASE, "steps": 4, "sampler_name": "DPM-Solver++ 2M SDE",
               "alwayson_scripts": {"DPM-Solver": {"args": [options]}}}
    status, answer = server.txt2img(hosted(server, payload))
    assert status >= 400 and message in json.dumps(answer), answer


@pytest.mark.parametrize(("sampler", "options"), [
    ("DPM-Solver++ 2M SDE", None),  # noise: the WebUI's Brownian noise sampler, per image
    ("DPM-Solver++ PC", {"corrector": "langevin"}),  # noise: our own, from each image's seed
])
def test_a_batch_makes_the_images_each_seed_makes_alone(server: WebUIServer, sampler: str,
                                                          options: dict[str, Any] | None) -> None:
    batch, _ = generate(server, sampler, options, seed=100, batch_size=2)
    images = batch[-2:]  # a grid, where the WebUI returns one, comes first
    first, _ = generate(server, sampler, options, seed=100)
    second, _ = generate(server, sampler, options, seed=101)
    assert largest_difference(images[0], first[0]) <= ROUNDING
    assert largest_difference(images[1], second[0]) <= ROUNDING
    assert largest_difference(images[1], first[0]) > 8 * ROUNDING


@pytest.mark.parametrize(("sampler", "options"), [
    ("DPM-Solver++ 3M", None),  # 400 steps: 400 model calls
    ("DPM-Solver++ adaptive", {"rtol": 0.001, "atol": 0.0001}),  # its own steps: hundreds of calls at this tolerance
])
def test_an_interrupt_stops_a_long_run(server: WebUIServer, sampler: str, options: dict[str, Any] | None) -> None:
    """Uninterrupted, either run takes 30-45 s on 2 CPU cores: both must end within 5 s of the interrupt (and, for
    the 400 steps, well before their own time, from the cost of a model call measured here)."""
    generate(server, "DPM-Solver++ 3M", steps=2)  # the prompt's conditioning is cached from here on
    durations = []
    for steps in (8, 24):
        started = time.monotonic()
        generate(server, "DPM-Solver++ 3M", steps=steps)
        durations.append(time.monotonic() - started)
    per_call = (durations[1] - durations[0]) / 16
    answer: dict[str, Any] = {}

    def long_run() -> None:
        answer["result"] = generate(server, sampler, options, steps=400)

    worker = threading.Thread(target=long_run)
    began = time.monotonic()
    worker.start()
    time.sleep(3.0)
    server.interrupt()
    asked = time.monotonic()
    worker.join(timeout=300)
    assert not worker.is_alive() and "result" in answer
    assert time.monotonic() - asked < max(5.0, 20 * per_call)
    if options is None:
        assert time.monotonic() - began < 0.5 * 400 * per_call


FLOW_SAMPLING = "Advanced Model Sampling for reForge"
"""reForge's built-in script that puts ComfyUI-style model sampling in front of the model; "SD3" makes a rectified
flow (shift 4.5 by default) of the SD1.5 test model, as ComfyUI's ModelSamplingSD3 does in the ComfyUI e2e test."""


def test_a_flow_model_is_sampled_as_a_flow(server: WebUIServer, workdir: Path) -> None:
    """reForge only (the script above). In flow sampling DPM-Solver-1 (DDIM) and Euler are the same update, so they
    make the same image when the flow's sigmas and denoiser reach us; DPM-Solver++ 2M in the flow form then differs
    from the host's DPM++ 2M, which is the VE form and which it equals on the plain model."""
    if not any(s["name"] == FLOW_SAMPLING.lower() for s in server.get_json("/sdapi/v1/script-info")):
        pytest.skip(f"no {FLOW_SAMPLING!r} script (not reForge)")
    plain_ours, _ = generate(server, "DPM-Solver++ 2M", scheduler="Simple")
    plain_host, _ = generate(server, "DPM++ 2M", scheduler="Simple")
    assert largest_difference(plain_ours[0], plain_host[0]) <= ROUNDING
    flow = {"alwayson_scripts": {FLOW_SAMPLING: {"args": [True, "SD3"]}}}
    with started(workdir) as fresh:  # the script leaves the model patched after its job: not on the shared server
        ddim, info = generate(fresh, "DPM-Solver-1", scheduler="Simple", **flow)
        euler, _ = generate(fresh, "Euler", scheduler="Simple", **flow)
        ours, _ = generate(fresh, "DPM-Solver++ 2M", scheduler="Simple", **flow)
        host, _ = generate(fresh, "DPM++ 2M", scheduler="Simple", **flow)
        logsnr, logsnr_info = generate(fresh, "DPM-Solver-fast", scheduler="logSNR uniform", **flow)
    assert "advanced_sampling_mode: SD3" in info
    assert largest_difference(ddim[0], euler[0]) <= ROUNDING
    assert largest_difference(ours[0], host[0]) > ROUNDING
    assert "Schedule type: logSNR uniform," in logsnr_info and logsnr[0].std() > 5


A1111_SD3_LOADER = "modules/models/sd3/sd3_model.py"
"""A1111's loader for SD3 checkpoints (a rectified flow, MMDiT), relative to WEBUI_PATH; A1111 1.10 has it."""
FORGE_LOADERS = ("backend/loader.py", "modules_forge/forge_loader.py")
"""Where the Forge family loads every checkpoint instead (Forge; reForge and Forge Classic), A1111's SD3 files
included: Forge's needs T5-XXL's weights for SD3 (about 9.5 GB), and reForge 3b56b268's stops in its own code on the
SD3 test checkpoint ('Module' object has no attribute 'model'), so the SD3 tests run on A1111 alone."""


@pytest.fixture(scope="module")
def sd3_server(workdir: Path) -> Iterator[WebUIServer]:
    """A second server, on an SD3 test checkpoint (make_test_checkpoint.py --variant sd3), where A1111 loads it."""
    assert WEBUI_PATH is not None
    webui = Path(WEBUI_PATH)
    if not (webui / A1111_SD3_LOADER).is_file() or any((webui / name).is_file() for name in FORGE_LOADERS):
        pytest.skip(f"not A1111 with its SD3 loader ({A1111_SD3_LOADER}, and none of {FORGE_LOADERS})")
    with started(workdir, "sd3") as running:
        yield running


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_makes_an_image_of_an_sd3_model(sd3_server: WebUIServer, name: str) -> None:
    label = SAMPLERS[name].label
    images, infotext = generate(sd3_server, label, steps=4, scheduler="Automatic")
    assert f"Sampler: {label}," in infotext and "Model: dpmsolver_test_sd3," in infotext
    assert len(images) == 1 and images[0].shape == (SIZE, SIZE, 3) and images[0].std() > 5


def test_an_sd3_model_is_sampled_as_a_flow(sd3_server: WebUIServer) -> None:
    """On the host's own SD3 model, with no script: DPM-Solver-1 (DDIM) is Euler in either form, so the two make one
    image when the flow's sigmas and denoiser reach us, in txt2img and img2img (strength 0.9, where the grid starts
    below 1: the family comes from the model, not the grid); DPM-Solver++ 2M in the flow form then differs from the
    host's DPM++ 2M (the VE form), which it equals on SD1.5 (test_the_same_method_makes_the_hosts_image and
    test_img2img_makes_the_hosts_image)."""
    ddim, _ = generate(sd3_server, "DPM-Solver-1", scheduler="Simple")
    euler, _ = generate(sd3_server, "Euler", scheduler="Simple")
    ours, _ = generate(sd3_server, "DPM-Solver++ 2M", scheduler="Simple")
    host, _ = generate(sd3_server, "DPM++ 2M", scheduler="Simple")
    assert largest_difference(ddim[0], euler[0]) <= ROUNDING
    assert largest_difference(ours[0], host[0]) > 8 * ROUNDING
    img2img(sd3_server, "Euler")  # the first img2img after a start
    assert largest_difference(img2img(sd3_server, "DPM-Solver-1", 0.9), img2img(sd3_server, "Euler", 0.9)) <= ROUNDING
    ours, host = (img2img(sd3_server, sampler, 0.9) for sampler in ("DPM-Solver++ 2M", "DPM++ 2M"))
    assert largest_difference(ours, host) > 8 * ROUNDING  # at 0.5 the two forms differ by about 1/255 here
    logsnr, info = generate(sd3_server, "DPM-Solver-fast", scheduler="logSNR uniform")
    assert "Schedule type: logSNR uniform," in info and logsnr[0].std() > 5
