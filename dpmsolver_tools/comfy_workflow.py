"""Convert a ComfyUI workflow in the web page's format ("UI format") to the API prompt /prompt accepts.

    python dpmsolver_tools/comfy_workflow.py workflow.json --object-info object_info.json > prompt.json
    python dpmsolver_tools/comfy_workflow.py workflow.json --server http://127.0.0.1:8188 > prompt.json

UI format: {"nodes": [{"id", "type", "mode", "inputs": [{"name", "type", "link", "widget"?}],
"widgets_values": [...]}, ...], "links": [[link id, origin node, origin slot, target node, target slot, type]]}.
Widget values are stored by position, so the conversion walks each node's inputs in the server's order
(/object_info: "required" then "optional", with "input_order" when present) and takes one value per widget
input, skipping the extra value the web page stores after a seed ("control after generate") and after an
image upload. Links become [node id, output slot]. Notes are dropped, reroutes followed, muted nodes (mode 2)
dropped and bypassed nodes (mode 4) bridged by type, as the web page does. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Mapping
from typing import Any

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
VIRTUAL_NODES = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute"})
"""Frontend-only node types: never sent to the server."""

MUTED, BYPASSED = 2, 4


class WorkflowError(ValueError):
    """The workflow cannot be converted (unknown node type, missing link, too few widget values, ...)."""


def _input_names(info: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """(name, spec) of a node's inputs in the order the web page creates its widgets."""
    inputs = info.get("input", {})
    order = info.get("input_order")
    out: list[tuple[str, list[Any]]] = []
    for category in ("required", "optional"):
        specs = inputs.get(category, {}) or {}
        names = order.get(category, list(specs)) if isinstance(order, Mapping) else list(specs)
        out += [(name, specs[name]) for name in names if name in specs]
    return out


def is_widget(spec: list[Any]) -> bool:
    """Does the web page make a widget for this input spec (rather than only a connection slot)?"""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def extra_values(name: str, spec: list[Any]) -> int:
    """Widget values the web page stores after this input's own value."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    count = 0
    if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
        count += 1
    if options.get("image_upload") or options.get("video_upload") or options.get("audio_upload"):
        count += 1
    return count


def _links(workflow: Mapping[str, Any]) -> dict[int, tuple[int, int, int, int, Any]]:
    found: dict[int, tuple[int, int, int, int, Any]] = {}
    for link in workflow.get("links", []) or []:
        if isinstance(link, Mapping):  # newer schema: objects
            found[int(link["id"])] = (int(link["origin_id"]), int(link["origin_slot"]), int(link["target_id"]),
                                      int(link["target_slot"]), link.get("type"))
        else:
            link_id, origin, origin_slot, target, target_slot, kind = link[:6]
            found[int(link_id)] = (int(origin), int(origin_slot), int(target), int(target_slot), kind)
    return found


def ui_to_api(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The API prompt {node id: {"class_type", "inputs", "_meta"}} of a UI-format workflow."""
    if "nodes" not in workflow:
        raise WorkflowError("not a UI-format workflow (no 'nodes'); API prompts need no conversion")
    if workflow.get("definitions", {}).get("subgraphs"):
        raise WorkflowError("workflows with subgraphs are not supported by this converter")
    nodes = {int(node["id"]): node for node in workflow["nodes"]}
    links = _links(workflow)

    def source(link_id: int, seen: frozenset[int] = frozenset()) -> list[Any] | None:
        """[origin node id, slot] for a link, following reroutes and bypassed nodes; None if it ends nowhere."""
        if link_id not in links:
            raise WorkflowError(f"link {link_id} is missing from the workflow's links")
        origin, slot, _, _, kind = links[link_id]
        if origin in seen:
            raise WorkflowError(f"link cycle through node {origin}")
        node = nodes.get(origin)
        if node is None:
            raise WorkflowError(f"link {link_id} starts at missing node {origin}")
        mode = node.get("mode", 0)
        if node["type"] == "Reroute" or mode == BYPASSED:
            for slot_input in node.get("inputs", []) or []:
                upstream = slot_input.get("link")
                if upstream is None:
                    continue
                if node["type"] == "Reroute" or slot_input.get("type") in (kind, "*"):
                    return source(int(upstream), seen | {origin})
            return None
        if node["type"] == "PrimitiveNode" or mode == MUTED:
            return None
        return [str(origin), slot]

    prompt: dict[str, dict[str, Any]] = {}
    for node_id, node in nodes.items():
        kind = node["type"]
        if kind in VIRTUAL_NODES or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        if kind not in object_info:
            raise WorkflowError(f"node {node_id} has type {kind!r}, which this ComfyUI does not know")
        info = object_info[kind]
        values = node.get("widgets_values", []) or []
        by_name = values if isinstance(values, Mapping) else None
        slots = {slot["name"]: slot for slot in node.get("inputs", []) or []}
        inputs: dict[str, Any] = {}
        position = 0
        for name, spec in _input_names(info):
            slot = slots.get(name)
            linked = slot is not None and slot.get("link") is not None
            if is_widget(spec):
                if by_name is not None:
                    value: Any = by_name.get(name)
                    present = name in by_name
                else:
                    present = position < len(values)
                    value = values[position] if present else None
                    position += 1 + extra_values(name, spec)
                if linked:
                    origin = source(int(slot["link"]))
                    if origin is not None:
                        inputs[name] = origin
                        continue
                if not present:
                    optional = name in (info.get("input", {}).get("optional") or {})
                    if optional:
                        continue
                    raise WorkflowError(f"node {node_id} ({kind}) has no widget value for input {name!r}")
                inputs[name] = value
            elif linked:
                origin = source(int(slot["link"]))
                if origin is not None:
                    inputs[name] = origin
        prompt[str(node_id)] = {"class_type": kind, "inputs": inputs,
                                "_meta": {"title": node.get("title") or info.get("display_name", kind)}}
    return prompt


def main() -> None:
    parser = argparse.ArgumentParser(description="Convert a UI-format ComfyUI workflow to an API prompt.")
    parser.add_argument("workflow", help="workflow JSON (UI format)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--object-info", help="a saved /object_info JSON")
    source.add_argument("--server", help="a running ComfyUI, e.g. http://127.0.0.1:8188")
    args = parser.parse_args()
    with open(args.workflow) as f:
        workflow = json.load(f)
    if args.object_info:
        with open(args.object_info) as f:
            object_info = json.load(f)
    else:
        with urllib.request.urlopen(args.server.rstrip("/") + "/object_info", timeout=60) as response:
            object_info = json.load(response)
    json.dump(ui_to_api(workflow, object_info), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
