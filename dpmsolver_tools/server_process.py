"""A host program (ComfyUI, a WebUI) run as a child process with a log file, and a tiny JSON-over-HTTP client for it.

The base of `comfy_server.ComfyServer` and `webui_server.WebUIServer`. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FOLDER_NAME = "dpm-solver-samplers"
"""The name this repository has in a host's custom_nodes/ or extensions/ folder."""


def link_repository(folder: Path) -> None:
    """Make `folder`/FOLDER_NAME (in a host's custom_nodes/ or extensions/) a symlink to this repository."""
    link = folder / FOLDER_NAME
    if link.is_symlink() and link.resolve() != REPO:
        link.unlink()
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server process (its output in `log_path`) answering HTTP at `base_url`."""

    name = "the server"
    ready_path = "/"
    """A GET path that answers 200 once the server is up."""
    ready_log_text: str | None = None
    """Text the server's log shows once it is up, where answering `ready_path` comes too early; no request is made
    before the log shows it."""

    def __init__(self, process: subprocess.Popen, base_url: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log_path = log_path

    @classmethod
    @contextlib.contextmanager
    def running(cls, command: list[str], cwd: Path, port: int, log_path: Path, threads: int, startup_timeout: float,
                env: dict[str, str] | None = None, **fields: Any) -> Iterator[Any]:
        """Start `command` in `cwd` (output to `log_path`, `threads` CPU threads), yield the server once it is
        ready (`fields` go to the constructor), stop it afterwards."""
        env = dict(os.environ if env is None else env)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = cls(process, f"http://127.0.0.1:{port}", log_path, **fields)
        try:
            server.wait_ready(startup_timeout)
            yield server
        finally:
            server.stop()

    def wait_ready(self, timeout: float) -> None:
        """Return once the log shows `ready_log_text` and then `ready_path` answers; raise with the log's tail if the
        process exits or time runs out. The log comes first because a request can break a server that is still
        starting: A1111 adds its API's middleware to an app that is already serving, and starlette refuses that once
        a request has come in ("Cannot add middleware after an application has started")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.ready_log_text is None or self.ready_log_text in self.log_text():
                try:
                    self.get_json(self.ready_path, timeout=5)
                    return
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, RuntimeError):
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} did not start within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:]

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        """(HTTP status, the JSON answer, or its text when it is not JSON)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, text

    def get_json(self, path: str, timeout: float = 60.0) -> Any:
        status, payload = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {payload}")
        return payload
