"""The "DPM-Solver" accordion (gradio 3 in A1111/reForge, gradio 4 in Forge/Neo: only common arguments used).

Each control is registered as an infotext field under its string key, so "send to txt2img/img2img" copies it
between tabs (`paste_field_names`); `fill_pasted_params` (an `on_infotext_pasted` callback) supplies the unset
value for keys an infotext lacks, so pasting one resets the accordion instead of keeping stale values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .controls import CONTROLS, DEFAULT_CHOICE, Control
from .infotext import ui_value

ACCORDION_LABEL = "DPM-Solver"


def _slider_range(control: Control) -> tuple[float, float]:
    unset = control.unset_value
    return min(control.minimum, unset), max(control.maximum, unset)


def build_controls(gr: Any, elem_id: Callable[[str], str], used: Iterable[str]) -> list[Any]:
    """Create the accordion with one component per control (in CONTROLS order); controls no registered
    sampler accepts are created hidden, so the script's argument positions never change."""
    shown = set(used)
    components: list[Any] = []
    with gr.Accordion(ACCORDION_LABEL, open=False, elem_id=elem_id("accordion")):
        for control in CONTROLS:
            visible = control.option in shown
            if control.kind == "choice":
                component = gr.Dropdown(label=control.label, choices=control.available_choices(), value=DEFAULT_CHOICE,
                                        info=control.info, visible=visible, elem_id=elem_id(control.option))
            else:
                low, high = _slider_range(control)
                component = gr.Slider(label=control.label, minimum=low, maximum=high, step=control.step,
                                      value=control.unset_value, info=control.info, visible=visible,
                                      elem_id=elem_id(control.option))
            components.append(component)
    return components


def infotext_fields(components: list[Any]) -> list[tuple[Any, str]]:
    """(component, infotext key) pairs for the WebUI's paste machinery."""
    return [(component, control.infotext) for component, control in zip(components, CONTROLS, strict=True)]


def paste_field_names() -> list[str]:
    """Infotext keys copied when sending parameters from one tab to another."""
    return [control.infotext for control in CONTROLS]


def fill_pasted_params(infotext: str, params: dict[str, Any]) -> None:
    """`on_infotext_pasted` callback: every key present, with a valid value (unset when missing or invalid)."""
    for control in CONTROLS:
        value = ui_value(params, control)
        params[control.infotext] = value if control.kind == "choice" else float(value)
