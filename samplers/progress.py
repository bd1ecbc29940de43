"""Progress bar: tqdm when the host has it, a silent stand-in otherwise (samplers/ needs torch only)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


class _NoBar(AbstractContextManager):
    def update(self, n: int = 1) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(total: int, disable: bool | None) -> Any:
    """A context-managed bar counting `total` model calls; disabled when `disable` is truthy."""
    if disable:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total)
