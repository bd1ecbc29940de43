"""Run a headless ComfyUI on CPU with this repository as a custom node and a random-weight test checkpoint.

Used by tests/test_comfyui_e2e.py, dpmsolver_tools/render_workflow_previews.py and
dpmsolver_tools/screenshot_workflow.py:

    with ComfyServer.start(comfyui=Path("/tmp/ComfyUI"), workdir=Path("/tmp/dpmsolver-e2e")) as server:
        info = server.get_json("/object_info")
        prompt_id = server.queue(api_prompt)
        entry = server.wait(prompt_id)

`workdir` receives models/ (the test checkpoint, under every checkpoint name the example workflows use),
custom_nodes/ (a symlink to this repository), output/, input/, temp/, user/ and the server log. Nothing is
written into the ComfyUI checkout or this repository. Standard library only (the ComfyUI process brings its
own dependencies).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dpmsolver_tools.server_process import REPO, ServerProcess, free_port, link_repository

TEST_CHECKPOINT = "dpmsolver_test_sd15.safetensors"
CHECKPOINT_ALIASES = ("v1-5-pruned-emaonly-fp16.safetensors", "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors")
"""Checkpoint names the example workflows use; the e2e setup links each to the test checkpoint."""

TORCHVISION_STUB = {
    "torchvision/__init__.py": '"""Import-only stand-in for torchvision (test harness)."""\n'
                               "from . import models, transforms  # noqa: F401\n__version__ = '0.0.0+stub'\n",
    "torchvision/models.py": '"""stub"""\n',
    "torchvision/transforms/__init__.py": '"""stub"""\nfrom . import functional  # noqa: F401\n',
    "torchvision/transforms/functional.py": (
        '"""stub: names some packages import (spandrel); calling them is an error."""\n'
        "import enum\n\n\n"
        "class InterpolationMode(enum.Enum):\n"
        "    NEAREST = 'nearest'\n    BILINEAR = 'bilinear'\n    BICUBIC = 'bicubic'\n\n\n"
        "def _missing(*args, **kwargs):\n"
        "    raise NotImplementedError('torchvision stub (test harness)')\n\n\n"
        "rotate = normalize = resize = _missing\n"),
}


def torchvision_importable(python: str = sys.executable) -> bool:
    result = subprocess.run([python, "-c", "import torchvision"], capture_output=True, timeout=120)
    return result.returncode == 0


def _stubs_first(env: dict[str, str], stubs: Path) -> dict[str, str]:
    """`env` with `stubs` (the import-only torchvision) at the front of PYTHONPATH."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(stubs), env.get("PYTHONPATH")]))}


def checkpoint_environment(stubs: Path, python: str = sys.executable) -> dict[str, str]:
    """The environment in which `python` imports ComfyUI: this one, with an import-only torchvision written to `stubs`
    and put on PYTHONPATH where torchvision does not import."""
    env = dict(os.environ)
    if not torchvision_importable(python):
        for rel, text in TORCHVISION_STUB.items():
            target = stubs / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        env = _stubs_first(env, stubs)
    return env


def build_test_checkpoint(comfyui: Path, checkpoint: Path, stubs: Path, python: str = sys.executable,
                          variant: str = "comfyui") -> Path:
    """Write dpmsolver_tools/make_test_checkpoint.py's checkpoint of `variant` to `checkpoint` unless it exists (the
    torchvision stand-in is written to `stubs` either way, where needed)."""
    env = checkpoint_environment(stubs, python)
    if not checkpoint.exists():
        partial = checkpoint.with_suffix(".partial")
        subprocess.run([python, str(REPO / "dpmsolver_tools" / "make_test_checkpoint.py"), "--comfyui", str(comfyui),
                        "--out", str(partial), "--variant", variant], check=True, env=env, timeout=900)
        partial.rename(checkpoint)
    return checkpoint


def prepare_workdir(comfyui: Path, workdir: Path, python: str = sys.executable) -> dict[str, Path]:
    """Create the directories, the checkpoint (once), the custom node link, the config and the stubs."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {name: workdir / name for name in ("models", "custom_nodes", "output", "input", "temp", "user", "stubs")}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    checkpoints = paths["models"] / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    checkpoint = build_test_checkpoint(comfyui, checkpoints / TEST_CHECKPOINT, paths["stubs"], python)
    for alias in CHECKPOINT_ALIASES:
        link = checkpoints / alias
        if not link.exists():
            link.symlink_to(checkpoint.name)
    link_repository(paths["custom_nodes"])
    config = workdir / "extra_model_paths.yaml"
    config.write_text(
        "dpmsolver_test:\n"
        f"    base_path: {paths['models']}\n"
        "    checkpoints: checkpoints\n"
        f"    custom_nodes: {paths['custom_nodes']}\n"
    )
    paths["config"] = config
    paths["checkpoint"] = checkpoint
    return paths


class ComfyServer(ServerProcess):
    """A ComfyUI process and a tiny HTTP client for its API."""

    name = "ComfyUI"
    ready_path = "/system_stats"

    def __init__(self, process: subprocess.Popen, base_url: str, log_path: Path, paths: dict[str, Path]) -> None:
        super().__init__(process, base_url, log_path)
        self.paths = paths
        self.client_id = uuid.uuid4().hex

    @classmethod
    @contextlib.contextmanager
    def start(cls, comfyui: Path, workdir: Path, port: int | None = None, python: str = sys.executable,
              threads: int = 1, startup_timeout: float = 300.0, extra_args: tuple[str, ...] = ()
              ) -> Iterator[ComfyServer]:
        paths = prepare_workdir(comfyui, workdir, python)
        port = port or free_port()
        env = dict(os.environ)
        if any((paths["stubs"] / "torchvision").glob("*.py")):
            env = _stubs_first(env, paths["stubs"])
        command = [
            python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--extra-model-paths-config", str(paths["config"]),
            "--output-directory", str(paths["output"]), "--input-directory", str(paths["input"]),
            "--temp-directory", str(paths["temp"]), "--user-directory", str(paths["user"]),
            "--database-url", "sqlite:///:memory:", "--disable-auto-launch", *extra_args,
        ]
        with cls.running(command, comfyui, port, workdir / f"comfyui-{port}.log", threads, startup_timeout, env,
                         paths=paths) as server:
            yield server

    def post_prompt(self, prompt: dict[str, Any], workflow: dict[str, Any] | None = None) -> tuple[int, Any]:
        """POST /prompt; `workflow` (UI format) is embedded in saved PNGs like the web page does."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        return self.request("POST", "/prompt", body)

    def queue(self, prompt: dict[str, Any], workflow: dict[str, Any] | None = None) -> str:
        status, payload = self.post_prompt(prompt, workflow)
        if status != 200:
            raise RuntimeError(f"POST /prompt: HTTP {status}: {json.dumps(payload, indent=1)[:4000]}")
        return str(payload["prompt_id"])

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.2) -> dict[str, Any]:
        """The /history entry of a finished prompt (status "success" or "error")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("status_str") in ("success", "error")):
                return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(poll)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    def run(self, prompt: dict[str, Any], workflow: dict[str, Any] | None = None, timeout: float = 300.0
            ) -> dict[str, Any]:
        return self.wait(self.queue(prompt, workflow), timeout)

    def interrupt(self) -> None:
        status, payload = self.request("POST", "/interrupt", {})
        if status != 200:
            raise RuntimeError(f"POST /interrupt: HTTP {status}: {payload}")

    def output_images(self, entry: dict[str, Any]) -> list[Path]:
        """Files of the images a finished prompt saved (type "output")."""
        found = []
        for node_output in entry.get("outputs", {}).values():
            for image in node_output.get("images", []):
                if image.get("type") == "output":
                    found.append(self.paths["output"] / image.get("subfolder", "") / image["filename"])
        return found


def status_messages(entry: dict[str, Any]) -> list[Any]:
    return entry.get("status", {}).get("messages", [])


def execution_error(entry: dict[str, Any]) -> dict[str, Any] | None:
    for kind, data in status_messages(entry):
        if kind == "execution_error":
            return data
    return None
