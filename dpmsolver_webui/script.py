"""The WebUI script class (always visible): the options accordion and the per-job hook.

Imported only inside the WebUI (it subclasses `modules.scripts.Script`).
"""

from __future__ import annotations

from typing import Any

from modules import scripts, shared

from .controls import controls_used_by
from .job import apply_to_job
from .registration import ENTRIES
from .ui import build_controls, infotext_fields, paste_field_names


class DpmSolverScript(scripts.Script):
    """DPM-Solver options; API: `alwayson_scripts: {"DPM-Solver": {"args": [{"solver_type": "taylor"}]}}`."""

    def title(self) -> str:
        return "DPM-Solver"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        import gradio as gr

        used = controls_used_by(entry.defaults for entry in ENTRIES.values())
        components = build_controls(gr, self.elem_id, used)
        self.infotext_fields = infotext_fields(components)
        self.paste_field_names = paste_field_names()
        return components

    def process(self, p: Any, *args: Any) -> None:
        apply_to_job(p, args, shared.opts.data)
