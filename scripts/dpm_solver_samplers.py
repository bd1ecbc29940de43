"""SD-WebUI entry point of the DPM-Solver samplers: registers them at import and adds the options accordion.

The WebUI executes this file at start-up and again on "Reload UI". The adapter package is imported from its
file path under a name of its own (`dpmsolver_webui`), never through `sys.path`: every extension folder is on
`sys.path`, so generic names could resolve to another extension's modules.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PACKAGE = "dpmsolver_webui"
_PACKAGE_DIR = Path(__file__).resolve().parents[1] / _PACKAGE


def _load_adapter() -> ModuleType:
    """The adapter package, imported once per process (another copy elsewhere gets a suffixed name)."""
    for name in (_PACKAGE, f"{_PACKAGE}_{abs(hash(str(_PACKAGE_DIR))):x}"):
        module = sys.modules.get(name)
        if module is None:
            break
        if Path(getattr(module, "__file__", "") or ".").resolve().parent == _PACKAGE_DIR:
            return module
    else:
        raise ImportError(f"{_PACKAGE}: the module names are taken by other copies")
    spec = importlib.util.spec_from_file_location(
        name, _PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(_PACKAGE_DIR)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {_PACKAGE} from {_PACKAGE_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_adapter = _load_adapter()
_adapter.setup()
DpmSolverScript = _adapter.script_class()
