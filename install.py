"""Stable Diffusion WebUI install hook: installs the runtime requirements that are missing, never torch.

The WebUI runs `install.py` of every extension before start-up, with its `launch` module importable. The
requirements are read from `requirements.txt` next to this file (today: none beyond the WebUI's own torch).
torch, torchvision and xformers are never installed here: the WebUI owns them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
HOST_OWNED = frozenset({"torch", "torchvision", "torchaudio", "xformers"})


def requirement_lines(text: str) -> list[str]:
    """Requirement specifiers of a requirements file (comments, blanks and options dropped)."""
    lines = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def distribution_name(requirement: str) -> str:
    """The distribution name of a specifier: 'numpy>=1.26' -> 'numpy'."""
    return re.split(r"[\s<>=!~;\[@]", requirement, maxsplit=1)[0]


def install_missing(requirements: list[str], is_installed: Callable[[str], bool],
                    run_pip: Callable[[str, str], object]) -> list[str]:
    """pip-install each requirement whose distribution is missing (never host-owned ones); returns them."""
    installed = []
    for requirement in requirements:
        name = distribution_name(requirement)
        if not name or name.lower() in HOST_OWNED or is_installed(name):
            continue
        run_pip(f'install "{requirement}"', f"{name} for the DPM-Solver samplers")
        installed.append(requirement)
    return installed


def main() -> None:
    """Entry point when the WebUI runs this file."""
    try:
        import launch  # provided by the WebUI (its root is on PYTHONPATH when it runs installers)
    except ImportError:  # not run by the WebUI (e.g. ComfyUI-Manager): it installs requirements.txt itself
        return
    text = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.exists() else ""
    install_missing(requirement_lines(text), launch.is_installed, launch.run_pip)


if __name__ == "__main__":
    main()
