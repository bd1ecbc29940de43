"""Run every workflow in workflows/ on a headless ComfyUI and save its output as workflows/<name>.png.

    python dpmsolver_tools/render_workflow_previews.py --comfyui /tmp/ComfyUI \\
        [--workdir /tmp/dpmsolver-e2e] [--size 256]

The PNG is the image ComfyUI's SaveImage wrote, with the UI workflow embedded in its metadata exactly as the
web page embeds it, so dragging the PNG into ComfyUI loads the workflow. The run uses the random-weight test
checkpoint (dpmsolver_tools/make_test_checkpoint.py, linked under the checkpoint names the workflows use) and a reduced
latent size (--size pixels; the embedded workflow keeps its own size): the pictures are noise, the point is
that each workflow ran as saved.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpmsolver_tools.comfy_server import ComfyServer, execution_error
from dpmsolver_tools.comfy_workflow import ui_to_api

REPO = Path(__file__).resolve().parents[1]
LATENT_NODES = ("EmptyLatentImage", "EmptySD3LatentImage")


def shrink(prompt: dict, size: int) -> dict:
    for node in prompt.values():
        if node["class_type"] in LATENT_NODES:
            node["inputs"]["width"] = node["inputs"]["height"] = size
    return prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dpmsolver-e2e"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--only", nargs="*", help="workflow names (file stems) to render")
    args = parser.parse_args()
    with ComfyServer.start(args.comfyui.resolve(), args.workdir.resolve()) as server:
        info = server.get_json("/object_info")
        for path in sorted((REPO / "workflows").glob("*.json")):
            if args.only and path.stem not in args.only:
                continue
            workflow = json.loads(path.read_text())
            entry = server.run(shrink(ui_to_api(workflow, info), args.size), workflow, timeout=900)
            error = execution_error(entry)
            if error:
                raise SystemExit(f"{path.name}: {error.get('exception_message')}")
            images = server.output_images(entry)
            if len(images) != 1:
                raise SystemExit(f"{path.name}: expected one saved image, got {images}")
            shutil.copyfile(images[0], path.with_suffix(".png"))
            print(path.with_suffix(".png"))


if __name__ == "__main__":
    main()
