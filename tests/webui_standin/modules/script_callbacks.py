"""Stand-in of `modules/script_callbacks.py` (only what the extension uses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

callbacks_infotext_pasted: list[Callable[[str, dict[str, Any]], None]] = []


def clear_callbacks() -> None:
    callbacks_infotext_pasted.clear()


def on_infotext_pasted(callback: Callable[[str, dict[str, Any]], None]) -> None:
    callbacks_infotext_pasted.append(callback)


def infotext_pasted_callback(infotext: str, params: dict[str, Any]) -> None:
    for callback in callbacks_infotext_pasted:
        callback(infotext, params)
