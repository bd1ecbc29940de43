"""Stable Diffusion WebUI adapter for the DPM-Solver samplers (A1111 1.9/1.10, Forge, reForge, Forge Classic/Neo).

`scripts/dpm_solver_samplers.py` loads this package from its file path and calls `setup()` on every script
load (start-up and "Reload UI"); everything it does is idempotent. Host modules (`modules.*`, `gradio`) are
imported lazily, so the pure parts (labels, controls, infotext, schedule, flow detection) import without a
WebUI.
"""

from __future__ import annotations

from typing import Any

from .core import CORE_MODULE, load_core

__all__ = ["CORE_MODULE", "load_core", "script_class", "setup"]


def setup() -> Any:
    """Register samplers, schedule, settings and the infotext-paste callback; returns the RegistrationReport."""
    from .registration import register_all
    from .ui import fill_pasted_params

    report = register_all()
    try:
        from modules import script_callbacks

        script_callbacks.on_infotext_pasted(fill_pasted_params)
    except (ImportError, AttributeError):
        pass
    return report


def script_class() -> type:
    """The `modules.scripts.Script` subclass to expose from the scripts/ file."""
    from .script import DpmSolverScript

    return DpmSolverScript
