"""Pin the widgets of newly released node inputs in comfy_widgets_released.json.

    python tests/pin_released_widgets.py            # add what nodes/interface.py RELEASED_INPUTS lists
    python tests/pin_released_widgets.py --check    # only say what would be added; exit 1 if anything

Each input that RELEASED_INPUTS lists and the file does not hold yet is added as the nodes declare it now
(type or dropdown choices, options without the tooltip), read through the same stand-in `comfy` package that
test_comfy_interface reads them through. An input already pinned is never rewritten: a difference from the
pinned entry is a change to the public interface, and test_comfy_interface reports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_comfy_support import ROOT, fake_comfy_package

RELEASED_WIDGETS = Path(__file__).with_name("comfy_widgets_released.json")
Pinned = dict[str, dict[str, list[Any]]]
"""node id -> input name -> [type or dropdown choices, options without the tooltip]."""


def widget_entry(spec: Sequence[Any]) -> list[Any]:
    """An INPUT_TYPES entry as pinned: [type or dropdown choices, its options without the tooltip]."""
    options = dict(spec[1]) if len(spec) > 1 else {}
    options.pop("tooltip", None)
    return [list(spec[0]) if isinstance(spec[0], (list, tuple)) else spec[0], options]


def pin(released: Mapping[str, Sequence[str]], classes: Mapping[str, Any], pinned: Pinned) -> Pinned:
    """`pinned` with every released input it lacks added from the node classes, in released order; entries
    already pinned are kept as they are."""
    result: Pinned = {}
    for node_id, inputs in released.items():
        spec = classes[node_id].INPUT_TYPES()
        current = {**spec.get("required", {}), **spec.get("optional", {})}
        old = pinned.get(node_id, {})
        result[node_id] = {name: old[name] if name in old else widget_entry(current[name]) for name in inputs}
    for node_id, inputs in pinned.items():  # a node or input no longer released stays pinned; the test refuses it
        result.setdefault(node_id, {}).update({k: v for k, v in inputs.items() if k not in result[node_id]})
    return result


def render(pinned: Pinned) -> str:
    """The file's text: one node per block, one input per line."""
    blocks = []
    for node_id, inputs in pinned.items():
        lines = ",\n".join(f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in inputs.items())
        blocks.append(f" {json.dumps(node_id)}: {{\n{lines}\n }}")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def interface_tables() -> dict[str, Any]:
    """The names nodes/interface.py defines, read without loading the package (it has no relative imports)."""
    namespace: dict[str, Any] = {}
    exec(compile((ROOT / "nodes" / "interface.py").read_text(), "interface.py", "exec"), namespace)
    return namespace


def released_inputs() -> dict[str, tuple[str, ...]]:
    """nodes/interface.py RELEASED_INPUTS."""
    return interface_tables()["RELEASED_INPUTS"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if an input would be added")
    args = parser.parse_args(argv)
    old: Pinned = json.loads(RELEASED_WIDGETS.read_text())
    with pytest.MonkeyPatch.context() as monkeypatch, fake_comfy_package(monkeypatch, "dpm_solver_pin") as (_, pkg):
        new = pin(released_inputs(), pkg.NODE_CLASS_MAPPINGS, old)
    added = [f"{node_id}.{name}" for node_id, inputs in new.items() for name in inputs
             if name not in old.get(node_id, {})]
    print("\n".join(f"pinned {item}" for item in added) or "nothing to pin")
    if not args.check and added:
        RELEASED_WIDGETS.write_text(render(new))
    return 1 if args.check and added else 0


if __name__ == "__main__":
    sys.exit(main())
