"""Stand-in of `modules/errors.py`: `report` logs an error and lets the caller go on; here it also records it."""

from __future__ import annotations

import sys
import traceback

REPORTED: list[str] = []
"""Every reported message, with the exception's text when exc_info is set (tests read it)."""


def report(message: str, *, exc_info: bool = False) -> None:
    text = message
    if exc_info:
        text += "\n" + traceback.format_exc()
    REPORTED.append(text)
    print("***", text, file=sys.stderr)
