"""Stand-in for the WebUI's `launch` module (`is_installed`, `run_pip`), recording pip calls."""

from __future__ import annotations

INSTALLED: set[str] = {"torch", "numpy"}
PIP_CALLS: list[tuple[str, str]] = []


def is_installed(package: str) -> bool:
    return package in INSTALLED


def run_pip(command: str, desc: str | None = None) -> str:
    PIP_CALLS.append((command, desc or ""))
    return ""
