"""Write the example workflows in workflows/ (ComfyUI's UI format, loadable by drag and drop).

    python dpmsolver_tools/make_workflows.py --server http://127.0.0.1:8188      # or --object-info object_info.json

Input and output slots of each node come from /object_info, so links and widget values line up with the
ComfyUI that is running; the widget values are listed below in the web page's order (a seed is followed by
its "control after generate" value). tests/test_comfyui_e2e.py converts every file back to an API prompt
and runs it.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    from .comfy_workflow import extra_values, is_widget
except ImportError:  # run as a script
    from comfy_workflow import extra_values, is_widget

REPO = Path(__file__).resolve().parents[1]
SD15 = "v1-5-pruned-emaonly-fp16.safetensors"
SD35 = "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors"
POSITIVE = "a lighthouse on a rocky cliff at sunset, dramatic clouds, detailed oil painting"
NEGATIVE = "blurry, low quality, watermark"
Node = dict[str, Any]
"""A node of the workflow under construction (UI format)."""


class Graph:
    """A UI-format workflow under construction."""

    def __init__(self, object_info: Mapping[str, Any]) -> None:
        self.info = object_info
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.groups: list[dict[str, Any]] = []

    def node(self, kind: str, pos: tuple[float, float], widgets: list[Any] | None = None, *, title: str | None = None,
             size: tuple[float, float] | None = None, color: str | None = None) -> dict[str, Any]:
        node_id = len(self.nodes) + 1
        if kind in ("MarkdownNote", "Note"):
            node = {"id": node_id, "type": kind, "pos": list(pos), "size": list(size or (400, 200)), "flags": {},
                    "order": node_id - 1, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                    "widgets_values": widgets or [], "color": "#432", "bgcolor": "#653"}
            if title:
                node["title"] = title
            self.nodes.append(node)
            return node
        info = self.info[kind]
        specs = [(name, spec, category) for category in ("required", "optional")
                 for name, spec in (info["input"].get(category) or {}).items()]
        expected = sum(1 + extra_values(name, spec) for name, spec, _ in specs if is_widget(spec))
        widgets = list(widgets or [])
        if len(widgets) != expected:
            raise ValueError(f"{kind}: {len(widgets)} widget values given, the web page stores {expected}")
        inputs = [{"name": name, "type": spec[0], "link": None} for name, spec, _ in specs if not is_widget(spec)]
        outputs = [{"name": name, "type": kind_, "links": [], "slot_index": i}
                   for i, (name, kind_) in enumerate(zip(info["output_name"], info["output"], strict=True))]
        node = {"id": node_id, "type": kind, "pos": list(pos), "size": list(size or (315, 100)), "flags": {},
                "order": node_id - 1, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind}, "widgets_values": widgets}
        if title:
            node["title"] = title
        if color:
            node["color"], node["bgcolor"] = color
        self.nodes.append(node)
        return node

    def connect(self, source: dict[str, Any], output: str | int, target: dict[str, Any], input_name: str) -> None:
        outputs = source["outputs"]
        slot = output if isinstance(output, int) else next(
            i for i, o in enumerate(outputs) if o["name"] == output or o["type"] == output)
        link_id = len(self.links) + 1
        kind = outputs[slot]["type"]
        target_input = next(i for i in target["inputs"] if i["name"] == input_name)
        target_slot = target["inputs"].index(target_input)
        target_input["link"] = link_id
        outputs[slot]["links"].append(link_id)
        self.links.append([link_id, source["id"], slot, target["id"], target_slot, kind])

    def group(self, title: str, bounding: tuple[float, float, float, float], color: str = "#3f789e") -> None:
        self.groups.append({"title": title, "bounding": list(bounding), "color": color, "font_size": 24,
                            "flags": {}})

    def workflow(self) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps([n["type"] for n in self.nodes]))),
            "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": self.groups, "config": {},
            "extra": {"ds": {"scale": 0.9, "offset": [40, 40]}}, "version": 0.4,
        }


def _prompts(g: Graph, clip_source: Node, x: float, y: float) -> tuple[Node, Node]:
    """The positive and negative CLIPTextEncode nodes at (x, y), fed by clip_source's CLIP."""
    positive = g.node("CLIPTextEncode", (x, y), [POSITIVE], title="Positive prompt", size=(400, 160),
                      color=("#232", "#353"))
    negative = g.node("CLIPTextEncode", (x, y + 210), [NEGATIVE], title="Negative prompt", size=(400, 160),
                      color=("#322", "#533"))
    g.connect(clip_source, "CLIP", positive, "clip")
    g.connect(clip_source, "CLIP", negative, "clip")
    return positive, negative


def _sd15_inputs(g: Graph) -> tuple[Node, Node, Node, Node]:
    """The SD1.5 checkpoint, the two prompts and a 512x512 empty latent: (checkpoint, positive, negative, latent)."""
    ckpt = g.node("CheckpointLoaderSimple", (0, 200), [SD15], size=(330, 100))
    positive, negative = _prompts(g, ckpt, 380, 60)
    latent = g.node("EmptyLatentImage", (380, 500), [512, 512, 1], size=(320, 110))
    return ckpt, positive, negative, latent


def _condition(g: Graph, model: Node, positive: Node, negative: Node, target: Node, latent: Node | None = None
               ) -> None:
    """Links a sampling node's model, prompts and (if given) latent image."""
    g.connect(model, "MODEL", target, "model")
    g.connect(positive, 0, target, "positive")
    g.connect(negative, 0, target, "negative")
    if latent is not None:
        g.connect(latent, 0, target, "latent_image")


def _about(g: Graph, text: str, height: float = 170) -> None:
    """The workflow's "About" note (markdown) on the left, under the checkpoint."""
    g.node("MarkdownNote", (0, 380), [text], title="About", size=(330, height))


def txt2img_ksampler(info: Mapping[str, Any]) -> dict[str, Any]:
    """KSampler with a DPM-Solver name from the dropdown."""
    g = Graph(info)
    ckpt, positive, negative, latent = _sd15_inputs(g)
    sampler = g.node("KSampler", (830, 60), [42, "fixed", 20, 7.0, "dpm_solver_pp_2m", "karras", 1.0],
                     size=(320, 270))
    decode = g.node("VAEDecode", (1190, 60), size=(210, 50))
    save = g.node("SaveImage", (1190, 150), ["dpm_solver/txt2img"], size=(380, 420))
    _about(g, "## DPM-Solver in KSampler\n\nEvery DPM-Solver sampler is in the **sampler_name** list "
              "(`dpm_solver_pp_2m`, `dpm_solver_pp_3m`, `dpm_solver_3`, `dpm_solver_fast`, ...) and works with "
              "every scheduler.")
    _condition(g, ckpt, positive, negative, sampler, latent)
    g.connect(sampler, 0, decode, "samples")
    g.connect(ckpt, "VAE", decode, "vae")
    g.connect(decode, 0, save, "images")
    return g.workflow()


def _custom_advanced(info: Mapping[str, Any], seed: int, sampler_node: tuple[str, list[Any], float],
                     scheduler_node: tuple[str, list[Any]], prefix: str, about: str) -> dict[str, Any]:
    """SamplerCustomAdvanced with CFGGuider on SD1.5, a sampler node and a sigmas node of ours; sampler_node is
    (type, widget values, height), scheduler_node (type, widget values)."""
    g = Graph(info)
    ckpt, positive, negative, latent = _sd15_inputs(g)
    noise = g.node("RandomNoise", (830, 0), [seed, "fixed"], size=(320, 90))
    guider = g.node("CFGGuider", (830, 130), [7.0], size=(320, 100))
    kind, widgets, height = sampler_node
    sampler = g.node(kind, (830, 270), widgets, size=(320, height))
    sigmas = g.node(scheduler_node[0], (830, 310 + height), scheduler_node[1], size=(320, 130))
    custom = g.node("SamplerCustomAdvanced", (1200, 60), size=(300, 330))
    decode = g.node("VAEDecode", (1540, 60), size=(210, 50))
    save = g.node("SaveImage", (1540, 150), [prefix], size=(380, 420))
    _about(g, about)
    _condition(g, ckpt, positive, negative, guider)
    g.connect(ckpt, "MODEL", sigmas, "model")
    g.connect(noise, 0, custom, "noise")
    g.connect(guider, 0, custom, "guider")
    g.connect(sampler, 0, custom, "sampler")
    g.connect(sigmas, 0, custom, "sigmas")
    g.connect(latent, 0, custom, "latent_image")
    g.connect(custom, "output", decode, "samples")
    g.connect(ckpt, "VAE", decode, "vae")
    g.connect(decode, 0, save, "images")
    return g.workflow()


def custom_sampler(info: Mapping[str, Any]) -> dict[str, Any]:
    """SamplerCustomAdvanced with the DPM-Solver++ (singlestep) node and the DPM-Solver Scheduler."""
    return _custom_advanced(
        info, 42, ("DPMSolverPPSinglestepSampler", [3, "taylor", "auto", 0.0, 0.0, False, 0.995, 1.0], 250),
        ("DPMSolverScheduler", [8, "logSNR uniform", 1.0]), "dpm_solver/custom_sampler",
        "## DPM-Solver++ 3S\n\nThird-order singlestep DPM-Solver++ (3 model calls per step: 8 steps = 22 calls) "
        "with the *taylor* derivative weight, on a grid uniform in half-log-SNR.")


def dpm_solver_fast(info: Mapping[str, Any]) -> dict[str, Any]:
    """DPM-Solver-fast with its order-aware grid for a budget of model calls."""
    return _custom_advanced(
        info, 7, ("DPMSolverFastSampler", ["dpmsolver", False, 0.995, 1.0], 150),
        ("DPMSolverFastScheduler", [10, "logSNR uniform", 1.0]), "dpm_solver/fast",
        "## DPM-Solver-fast\n\n10 model calls: steps of order 3, 3, 2, 1 (ends uniform in half-log-SNR, "
        "intermediate calls at 1/3 and 2/3, or 1/2, of each step) and the final denoise, as in the DPM-Solver paper.")


def flow_model(info: Mapping[str, Any]) -> dict[str, Any]:
    """A rectified-flow model (SD3.5) through ModelSamplingSD3: the samplers switch to the flow schedule."""
    g = Graph(info)
    ckpt = g.node("CheckpointLoaderSimple", (0, 200), [SD35], size=(330, 100))
    shift = g.node("ModelSamplingSD3", (0, 60), [3.0], size=(330, 60))
    positive, negative = _prompts(g, ckpt, 380, 60)
    latent = g.node("EmptySD3LatentImage", (380, 500), [1024, 1024, 1], size=(320, 110))
    sampler = g.node("KSampler", (830, 60), [42, "fixed", 20, 4.5, "dpm_solver_3m", "simple", 1.0],
                     size=(320, 270))
    decode = g.node("VAEDecode", (1190, 60), size=(210, 50))
    save = g.node("SaveImage", (1190, 150), ["dpm_solver/flow"], size=(380, 420))
    _about(g, "## Flow models\n\nSD3/SD3.5 and Flux sample x = (1 - sigma) x0 + sigma noise. The DPM-Solver "
              "samplers read this from the model (here ModelSamplingSD3, shift 3): nothing to set. "
              "`dpm_solver_3m` on the *simple* schedule is our most accurate sampler on flow models from 10 steps "
              "on (README: Which sampler to pick).", height=230)
    g.connect(ckpt, "MODEL", shift, "model")
    _condition(g, shift, positive, negative, sampler, latent)
    g.connect(sampler, 0, decode, "samples")
    g.connect(ckpt, "VAE", decode, "vae")
    g.connect(decode, 0, save, "images")
    return g.workflow()


COMPARED = ("dpm_solver_pp_2m", "dpm_solver_pp_3m", "dpm_solver_3m", "dpm_solver_fast")


def compare_samplers(info: Mapping[str, Any]) -> dict[str, Any]:
    """Several samplers, same seed and step count (one model call per step each), stitched side by side."""
    g = Graph(info)
    ckpt, positive, negative, latent = _sd15_inputs(g)
    decoded = []
    for i, name in enumerate(COMPARED):
        x = 830 + i * 350
        sampler = g.node("KSampler", (x, 60), [42, "fixed", 12, 7.0, name, "karras", 1.0], title=name,
                         size=(320, 270))
        decode = g.node("VAEDecode", (x, 380), size=(210, 50))
        _condition(g, ckpt, positive, negative, sampler, latent)
        g.connect(sampler, 0, decode, "samples")
        g.connect(ckpt, "VAE", decode, "vae")
        decoded.append(decode)
    row = decoded[0]
    for i, decode in enumerate(decoded[1:]):
        stitch = g.node("ImageStitch", (830 + i * 350, 480), ["right", True, 8, "white"], size=(320, 160))
        g.connect(row, 0, stitch, "image1")
        g.connect(decode, 0, stitch, "image2")
        row = stitch
    save = g.node("SaveImage", (830, 700), ["dpm_solver/compare"], size=(1370, 420))
    g.connect(row, 0, save, "images")
    _about(g, "## Same seed, same steps\n\nLeft to right: " + ", ".join(f"`{n}`" for n in COMPARED)
           + ". Each makes one model call per step, so 12 steps cost the same for all.")
    g.group("Samplers compared (12 steps, 12 model calls each)", (810, -40, 1400, 700))
    return g.workflow()


def sds_refine_image(info: Mapping[str, Any]) -> dict[str, Any]:
    """A draft from KSampler refined by score distillation (DPM-Solver SDS Refine), before | after side by side."""
    g = Graph(info)
    ckpt, positive, negative, latent = _sd15_inputs(g)
    draft = g.node("KSampler", (830, 60), [42, "fixed", 12, 7.0, "dpm_solver_pp_2m", "karras", 1.0],
                   title="Draft", size=(320, 270))
    refine = g.node("DPMSolverSDSRefine", (1190, 60),
                    [20, "adam", 0.05, 0.3, 0.9, 0.0, 0.0, 7.5, 42, "fixed", "sds", "dreamfusion", 1, 0.0],
                    size=(340, 420))
    decode_draft = g.node("VAEDecode", (830, 380), size=(210, 50))
    decode_refined = g.node("VAEDecode", (1190, 520), size=(210, 50))
    stitch = g.node("ImageStitch", (1570, 60), ["right", True, 8, "white"], size=(320, 160))
    save = g.node("SaveImage", (1570, 260), ["dpm_solver/sds_refine"], size=(380, 420))
    _about(g, "## Refine with SDS\n\nThe draft (left) is refined by 20 Adam steps of score distillation (right): "
              "the latent is noised at a level annealed from 30% to 90% of the schedule, denoised with CFG, and moved "
              "along lambda(sigma) (x0 - D). Try mode `csd` or `sdi`, or plug in a VAE-encoded photo.", height=190)
    for target in (draft, refine):
        _condition(g, ckpt, positive, negative, target)
    g.connect(latent, 0, draft, "latent_image")
    g.connect(draft, 0, refine, "latent")
    g.connect(draft, 0, decode_draft, "samples")
    g.connect(refine, "latent", decode_refined, "samples")
    g.connect(ckpt, "VAE", decode_draft, "vae")
    g.connect(ckpt, "VAE", decode_refined, "vae")
    g.connect(decode_draft, 0, stitch, "image1")
    g.connect(decode_refined, 0, stitch, "image2")
    g.connect(stitch, 0, save, "images")
    g.group("Draft | SDS-refined", (810, -40, 1160, 640))
    return g.workflow()


WORKFLOWS = {
    "txt2img_ksampler_dpm_solver": txt2img_ksampler,
    "custom_sampler_dpm_solver_pp_3s": custom_sampler,
    "dpm_solver_fast_custom_schedule": dpm_solver_fast,
    "flow_model_sd3_dpm_solver": flow_model,
    "compare_samplers": compare_samplers,
    "sds_refine_image": sds_refine_image,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Write workflows/*.json (UI format).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--object-info", help="a saved /object_info JSON")
    source.add_argument("--server", help="a running ComfyUI, e.g. http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, default=REPO / "workflows")
    args = parser.parse_args()
    if args.object_info:
        info = json.loads(Path(args.object_info).read_text())
    else:
        url = args.server.rstrip("/") + "/object_info"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                info = json.load(response)
        except OSError as err:  # URLError, connection refused, timeout
            parser.error(f"--server: cannot read {url} ({err}); start ComfyUI with this pack there first")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in WORKFLOWS.items():
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(build(info), indent=2) + "\n")
        print(path)


if __name__ == "__main__":
    main()
