"""Screenshot an example workflow in ComfyUI's web page with headless Chromium (for docs/comfyui_workflow.png).

    apt-get update && apt-get install -y chromium            # Debian's chromium
    python dpmsolver_tools/screenshot_workflow.py --comfyui /tmp/ComfyUI \\
        [--workflow workflows/custom_sampler_dpm_solver_pp_3s.json] [--out docs/comfyui_workflow.png] [--run]

Starts a headless ComfyUI (dpmsolver_tools/comfy_server.py: random-weight test checkpoint, this repository as a custom
node), opens its page in Chromium, loads the workflow through the page's own `app.loadGraphData`, optionally
queues it from the page (--run: the Save Image node then shows the result, noise from random weights), and
saves a screenshot via the DevTools protocol. Needs aiohttp (installed with ComfyUI's requirements).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpmsolver_tools.comfy_server import ComfyServer
from dpmsolver_tools.server_process import free_port

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--disable-dev-shm-usage", "--mute-audio")


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's web socket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=120)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {json.dumps(result['exceptionDetails'])[:2000]}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                value = await self.evaluate(expression)
                if value:
                    return value
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the page never satisfied: {expression}")


async def _page_socket(session: Any, port: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                for target in await response.json():
                    if target.get("type") == "page":
                        return target["webSocketDebuggerUrl"]
        await asyncio.sleep(0.3)
    raise TimeoutError("Chromium did not open its DevTools port")


async def capture(url: str, workflow: dict[str, Any], name: str, out: Path, chromium: str, width: int,
                  height: int, queue: bool) -> None:
    import aiohttp

    port = free_port()
    profile = tempfile.mkdtemp(prefix="dpmsolver-chromium-")
    command = [chromium, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", "about:blank"]
    browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            socket_url = await _page_socket(session, port)
            async with session.ws_connect(socket_url, max_msg_size=0) as ws:
                page = DevTools(ws)
                await page.call("Page.enable")
                await page.call("Runtime.enable")
                await page.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                                deviceScaleFactor=1, mobile=False)
                await page.call("Page.navigate", url=url)
                await page.wait_for("!!(window.app && window.app.graph && window.app.canvas)")
                await asyncio.sleep(2.0)
                await page.evaluate(f"window.app.loadGraphData({json.dumps(workflow)}, true, true, "
                                    f"{json.dumps(name)}).then(() => true)")
                await asyncio.sleep(1.0)
                await page.evaluate("document.querySelectorAll('.p-dialog-mask').forEach(m => m.remove()) || true")
                if queue:
                    await page.evaluate("window.app.queuePrompt(0, 1).then(() => true)")
                    await page.wait_for(
                        "fetch('/queue').then(r => r.json()).then(q => q.queue_running.length === 0 && "
                        "q.queue_pending.length === 0)", timeout=900)
                    await page.wait_for("fetch('/history?max_items=1').then(r => r.json()).then(h => "
                                        "Object.keys(h).length > 0)", timeout=60)
                    await asyncio.sleep(3.0)
                await page.evaluate("Promise.resolve(window.app.extensionManager.command.execute("
                                    "'Comfy.Canvas.FitView')).then(() => true)")
                await asyncio.sleep(0.5)
                await page.evaluate("(() => { const c = window.app.canvas; c.setDirty(true, true); c.draw(true, true);"
                                    " return true; })()")
                await asyncio.sleep(1.0)
                shot = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=20)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dpmsolver-e2e"))
    parser.add_argument("--workflow", type=Path, default=REPO / "workflows" / "custom_sampler_dpm_solver_pp_3s.json")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "comfyui_workflow.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser")
                        or "chromium")
    parser.add_argument("--size", default="1700x900", help="viewport WIDTHxHEIGHT")
    parser.add_argument("--run", action="store_true", help="queue the workflow from the page before the shot")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    workflow = json.loads(args.workflow.read_text())
    with ComfyServer.start(args.comfyui.resolve(), args.workdir.resolve()) as server:
        # A returning user: no first-run template browser over the canvas.
        for setting, value in (("Comfy.TutorialCompleted", True), ("Comfy.Minimap.Visible", False)):
            server.request("POST", f"/settings/{setting}", value)
        asyncio.run(capture(server.base_url, workflow, args.workflow.stem, args.out.resolve(), args.chromium, width,
                            height, args.run))
    print(args.out)


if __name__ == "__main__":
    main()
