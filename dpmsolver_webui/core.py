"""Load the host-agnostic sampler core under a module name no other extension can take.

Every WebUI extension folder lands on `sys.path` (Forge keeps them there), so `import samplers` could pick up
another extension's package. The core is therefore imported from its file path as `dpmsolver_ext_core`; its
relative imports resolve inside that name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CORE_MODULE = "dpmsolver_ext_core"
"""The name the core (`samplers/`) is registered under in `sys.modules`."""

CORE_DIR = Path(__file__).resolve().parents[1] / "samplers"


def load_core() -> ModuleType:
    """The core package, imported once from `samplers/__init__.py` as `dpmsolver_ext_core`."""
    module = sys.modules.get(CORE_MODULE)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(
        CORE_MODULE, CORE_DIR / "__init__.py", submodule_search_locations=[str(CORE_DIR)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the DPM-Solver core from {CORE_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[CORE_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(CORE_MODULE, None)
        raise
    return module


def load_submodule(name: str) -> ModuleType:
    """A submodule of the core, e.g. `load_submodule("grids")` for `samplers/grids.py`."""
    load_core()
    return importlib.import_module(f"{CORE_MODULE}.{name}")
