"""ComfyUI entry point of the DPM-Solver sampler pack.

The host-agnostic samplers live in `samplers/`; the ComfyUI adapter (dropdown registration and nodes) is
added in `nodes/`. Until then this package registers nothing.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
