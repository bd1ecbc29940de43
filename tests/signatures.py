"""A function's keyword defaults, for tests that pin a public function's defaults as released."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def keyword_defaults(function: Callable[..., Any]) -> dict[str, Any]:
    """{parameter name: default} of every parameter of `function` that has a default."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}
