"""The options in the infotext: `DPM-Solver <option>: <value>` pairs, written only when not the default.

Keys match the WebUI's infotext regex (`\\w[\\w \\-/]+`: letters, digits, `_`, spaces, `-`, `/`) and values
never contain commas, so no quoting is involved. Reading back returns the accordion's UI values; a key that
is absent gives the control's unset value, so pasting an infotext without our keys resets the accordion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .controls import CONTROLS, Control, options_for_entry


def infotext_params(explicit: Mapping[str, Any], accepted: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Infotext pairs for the explicit options that at least one of the used samplers (`accepted`: their
    `defaults` tables) takes with a non-default value; in CONTROLS order."""
    used: dict[str, Any] = {}
    for defaults in accepted:
        used.update(options_for_entry(explicit, defaults))
    return {c.infotext: c.format(used[c.option]) for c in CONTROLS if c.option in used}


def ui_value(params: Mapping[str, Any], control: Control) -> Any:
    """The accordion value for `control` from parsed infotext `params` (unset value when absent or invalid)."""
    text = params.get(control.infotext)
    if text is None:
        return control.unset_value
    try:
        if control.kind == "number":
            return float(text)
        text = str(text).strip()
        if text in control.choices:
            return text
    except (TypeError, ValueError):
        pass
    return control.unset_value


def parse_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """All accordion values (option name -> UI value) read from parsed infotext `params`."""
    return {c.option: ui_value(params, c) for c in CONTROLS}
