"""The host-process harness (dpmsolver_tools/server_process.py) against a tiny stand-in server: it waits for the log's
ready text before its first request (A1111 breaks when asked too early), and it reports a server that exits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from dpmsolver_tools.server_process import ServerProcess, free_port

STAND_IN = """
import http.server, sys, threading, time
ready = threading.Event()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if not ready.is_set():
            print("asked before ready", flush=True)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("listening", flush=True)
time.sleep(float(sys.argv[2]))
ready.set()
print("Startup time: done", flush=True)
time.sleep(60)
"""


class StandIn(ServerProcess):
    name = "the stand-in"
    ready_log_text = "Startup time:"


def test_no_request_before_the_log_says_ready(tmp_path: Path) -> None:
    port = free_port()
    began = time.monotonic()
    command = [sys.executable, "-c", STAND_IN, str(port), "1.5"]
    with StandIn.running(command, tmp_path, port, tmp_path / "log.txt", 1, 30.0) as server:
        assert time.monotonic() - began >= 1.5
        assert server.get_json("/") == {}
        log = server.log_text()
    assert "listening" in log and "Startup time: done" in log
    assert "asked before ready" not in log


def test_a_server_that_exits_is_an_error_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('no model found'); raise SystemExit(3)"]
    with (pytest.raises(RuntimeError, match=r"(?s)the stand-in exited with 3:.*no model found"),
          StandIn.running(command, tmp_path, free_port(), tmp_path / "log.txt", 1, 30.0)):
        pass
