"""Run a Stable Diffusion WebUI (A1111, lllyasviel Forge, reForge, Forge Classic) on CPU, its page and its API, with
this repository as an extension and a random-weight SD1.5 test checkpoint; used by tests/test_webui_e2e.py:

    with WebUIServer.start(webui=Path("/tmp/forge"), workdir=Path("/tmp/dpmsolver-webui-e2e"),
                           comfyui=Path("/tmp/ComfyUI")) as server:
        status, answer = server.txt2img({"prompt": "a cat", "sampler_name": "DPM-Solver++ 2M", "steps": 8})

`workdir` is the WebUI's --data-dir: it receives extensions/ (a symlink to this repository), models/ (the test
checkpoints, each built once by dpmsolver_tools/make_test_checkpoint.py, which imports ComfyUI's classes for the
tensor shapes: --variant webui, SD1.5, for every host; --variant sd3 for A1111's SD3 loader), the WebUI's config
files (CONFIG below) and the server log. Nothing is written into the WebUI checkout or this repository. The WebUI
runs as `launch.py --api` on the CPU (`cpu_arguments`; the page is built, as for a user, and gradio's /config
describes it), skipping its environment preparation (no git clone, no pip): its requirements and repositories/ must
be in place (README.md, "Testing the WebUI extension").
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dpmsolver_tools.comfy_server import build_test_checkpoint
from dpmsolver_tools.make_test_checkpoint import ldm_config
from dpmsolver_tools.server_process import ServerProcess, free_port, link_repository

TEST_CHECKPOINTS = {"webui": "dpmsolver_test_sd15_webui.safetensors", "sd3": "dpmsolver_test_sd3.safetensors"}
"""make_test_checkpoint.py variant -> its file: SD1.5 for every host; SD3 (a rectified flow) for A1111's SD3 loader."""
CONFIG = {"live_previews_enable": False, "k_sched_type": "Automatic"}
"""Settings the harness writes to the data directory's config.json. Live previews off: offline, reForge would fail
downloading their decoder at the first image. k_sched_type (WebUIs before A1111 1.9) stored, so that a request's
override of it is undone after the request (those WebUIs restore only settings that config.json holds)."""


FORGE_ARGUMENT_FILES = ("backend/args.py", "ldm_patched/modules/args_parser.py")
"""Where the Forge family (Forge; reForge and Forge Classic) defines its own launch options, --always-cpu among them."""


def cpu_arguments(webui: Path) -> list[str]:
    """The launch options that run `webui` on the CPU in float32: --always-cpu on the Forge family; on A1111, which
    has no such option, --use-cpu all --no-half (as A1111's own CI starts it)."""
    for name in FORGE_ARGUMENT_FILES:
        path = webui / name
        if path.is_file() and '"--always-cpu"' in path.read_text(encoding="utf-8"):
            return ["--always-cpu"]
    return ["--use-cpu", "all", "--no-half"]


HUB_FILES = {
    "openai/clip-vit-large-patch14": {
        **{name: f"comfy/sd1_tokenizer/{name}"
           for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")},
        "config.json": "comfy/sd1_clip_config.json"},
    "google/t5-v1_1-xxl": {name: f"comfy/text_encoders/t5_tokenizer/{name}"
                           for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")},
}
"""Hugging Face repository -> the files A1111 asks the hub for, as ComfyUI ships them: SD1.5's text encoder (CLIP-L's
tokenizer, and its config; the weights come from the checkpoint) and, for SD3, T5's tokenizer, which A1111 loads
even with T5 itself left out."""


def offline_hub(workdir: Path, comfyui: Path | None) -> dict[str, str]:
    """The environment of an offline Hugging Face cache in workdir/huggingface holding HUB_FILES (copied from ComfyUI
    once). Forge and its forks ship these files; A1111 downloads them when it builds a model."""
    for repo, files in HUB_FILES.items():
        snapshot = workdir / "huggingface" / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        if comfyui is not None and not all((snapshot / name).is_file() for name in files):
            snapshot.mkdir(parents=True, exist_ok=True)
            for name, source in files.items():
                (snapshot / name).write_bytes((comfyui / source).read_bytes())
            (snapshot.parents[1] / "refs").mkdir(exist_ok=True)
            (snapshot.parents[1] / "refs" / "main").write_text(snapshot.name)
    return {"HF_HOME": str(workdir / "huggingface"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def prepare_datadir(workdir: Path, comfyui: Path | None, variant: str = "webui") -> Path:
    """Create the data directory with the extension link, config.json and the test checkpoint of `variant` (built
    once, by this interpreter with ComfyUI's requirements, as for tests/test_comfyui_e2e.py); returns its path."""
    checkpoints = workdir / "models" / "Stable-diffusion"
    for path in (workdir / "extensions", checkpoints):
        path.mkdir(parents=True, exist_ok=True)
    link_repository(workdir / "extensions")
    config = workdir / "config.json"
    settings = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**settings, **CONFIG}))
    checkpoint = checkpoints / TEST_CHECKPOINTS[variant]
    if variant == "webui":
        checkpoint.with_suffix(".yaml").write_text(ldm_config())
    if comfyui is not None:
        return build_test_checkpoint(comfyui, checkpoint, workdir / "stubs", variant=variant)
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint} does not exist; building it needs a ComfyUI checkout (COMFYUI_PATH)")
    return checkpoint


class WebUIServer(ServerProcess):
    """A WebUI server (page and `--api`) and a client for the endpoints the tests use."""

    name = "the WebUI"
    ready_path = "/sdapi/v1/samplers"
    ready_log_text = "Startup time:"
    """The API answers before it has the scripts' default arguments, and a txt2img then fails (IndexError)."""

    @classmethod
    @contextlib.contextmanager
    def start(cls, webui: Path, workdir: Path, comfyui: Path | None = None, python: str = sys.executable,
              port: int | None = None, threads: int = 1, startup_timeout: float = 600.0, variant: str = "webui",
              ) -> Iterator[WebUIServer]:
        """`variant`: the test checkpoint the server starts with (TEST_CHECKPOINTS)."""
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoint = prepare_datadir(workdir, comfyui, variant)
        env = {**os.environ, **offline_hub(workdir, comfyui)}
        port = port or free_port()
        command = [
            python, "launch.py", "--skip-prepare-environment", "--skip-install", "--skip-version-check",
            "--skip-torch-cuda-test", "--api", "--port", str(port), *cpu_arguments(webui),
            "--data-dir", str(workdir), "--ckpt", str(checkpoint), "--no-download-sd-model",
        ]
        with cls.running(command, webui, port, workdir / f"webui-{port}.log", threads, startup_timeout,
                         env=env) as server:
            yield server

    def txt2img(self, payload: dict[str, Any], timeout: float = 600.0) -> tuple[int, Any]:
        """POST /sdapi/v1/txt2img: (HTTP status, the answer: images as base64 PNG and the info JSON as text)."""
        return self.request("POST", "/sdapi/v1/txt2img", payload, timeout=timeout)

    @functools.cached_property
    def schedule_types(self) -> dict[str, str] | None:
        """The host's schedule types (name -> label), or None for a WebUI before A1111 1.9, which has none: there
        the schedule is the sampler's default or the `k_sched_type` setting."""
        status, answer = self.request("GET", "/sdapi/v1/schedulers")
        return {entry["name"]: entry["label"] for entry in answer} if status == 200 else None

    def interrupt(self) -> None:
        status, payload = self.request("POST", "/sdapi/v1/interrupt", {})
        if status != 200:
            raise RuntimeError(f"POST /sdapi/v1/interrupt: HTTP {status}: {payload}")


def decoded_images(answer: dict[str, Any]) -> list[Any]:
    """The answer's images as uint8 numpy arrays (needs numpy and Pillow)."""
    import numpy as np
    from PIL import Image

    images = []
    for text in answer["images"]:
        with Image.open(io.BytesIO(base64.b64decode(text))) as image:
            images.append(np.asarray(image.convert("RGB")))
    return images
