"""Stand-in of `modules/scripts.py`: the Script base class and an always-on script runner.

As in every fork, the runner reports an exception from a script's hook (`errors.report`) and goes on with the
next script and the generation.
"""

from __future__ import annotations

from typing import Any

from modules import errors

AlwaysVisible = object()


class Script:
    name: str | None = None
    is_txt2img = True
    infotext_fields: list[Any] | None = None
    paste_field_names: list[str] | None = None
    args_from = 0
    args_to = 0

    def title(self) -> str:
        raise NotImplementedError()

    def ui(self, is_img2img: bool) -> Any:
        pass

    def show(self, is_img2img: bool) -> Any:
        return True

    def before_process(self, p: Any, *args: Any) -> None:
        pass

    def process(self, p: Any, *args: Any) -> None:
        pass

    def elem_id(self, item_id: str) -> str:
        tab = "txt2img" if self.is_txt2img else "img2img"
        return f"script_{tab}_{self.title().lower().replace(' ', '_')}_{item_id}"


class ScriptRunner:
    """Always-visible scripts; `setup_ui` runs ui() and fixes each script's argument slice."""

    def __init__(self, scripts: list[Script]) -> None:
        self.alwayson_scripts = scripts
        self.inputs: list[Any] = []
        self.infotext_fields: list[Any] = []
        self.paste_field_names: list[str] = []

    def setup_ui(self) -> None:
        for script in self.alwayson_scripts:
            controls = script.ui(False) or []
            script.args_from = len(self.inputs)
            self.inputs += list(controls)
            script.args_to = len(self.inputs)
            self.infotext_fields += script.infotext_fields or []
            self.paste_field_names += script.paste_field_names or []

    def default_args(self) -> list[Any]:
        return [component.value for component in self.inputs]

    def before_process(self, p: Any) -> None:
        for script in self.alwayson_scripts:
            try:
                script.before_process(p, *p.script_args[script.args_from:script.args_to])
            except Exception:
                errors.report(f"Error running before_process: {script.title()}", exc_info=True)

    def process(self, p: Any) -> None:
        for script in self.alwayson_scripts:
            try:
                script.process(p, *p.script_args[script.args_from:script.args_to])
            except Exception:
                errors.report(f"Error running process: {script.title()}", exc_info=True)
