"""ComfyUI entry point of the DPM-Solver sampler pack.

ComfyUI imports this folder as a package. The host-agnostic samplers live in `samplers/` (torch only); the
ComfyUI adapter in `nodes/` registers them in the sampler dropdowns and provides SAMPLER and SIGMAS nodes.
Outside ComfyUI (no `comfy` package to import) nothing is registered.
"""

from importlib.util import find_spec

if find_spec("comfy") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # imported outside ComfyUI
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
