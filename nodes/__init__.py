"""ComfyUI adapter: the DPM-Solver samplers in the sampler dropdowns, SAMPLER nodes, SIGMAS nodes and SDS nodes.

This is the only place that imports ComfyUI modules; `samplers/` stays host-free. Importing this package
registers the dropdown names (idempotently) and builds the node mappings from the core's registry.
"""

from __future__ import annotations

import comfy.k_diffusion.sampling as _k_sampling
import comfy.samplers as _comfy_samplers

from ..samplers import SAMPLERS
from .calibrate_nodes import CALIBRATE_NODES
from .interface import SCHEDULER_NODES
from .registration import register_samplers
from .sampler_nodes import sampler_nodes
from .schedule_nodes import SCHEDULER_CLASSES
from .sds_nodes import SDS_NODES


def build_mappings() -> tuple[dict[str, type], dict[str, str]]:
    """NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS for every node of this package."""
    classes: dict[str, type] = {}
    names: dict[str, str] = {}
    for node_id, (cls, display) in sampler_nodes(SAMPLERS).items():
        classes[node_id] = cls
        names[node_id] = display
    for node_id, cls in SCHEDULER_CLASSES.items():
        classes[node_id] = cls
        names[node_id] = SCHEDULER_NODES[node_id]
    for node_id, (cls, display) in CALIBRATE_NODES.items():
        classes[node_id] = cls
        names[node_id] = display
    for node_id, cls in SDS_NODES.items():
        classes[node_id] = cls
        names[node_id] = cls.DISPLAY_NAME
    return classes, names


def register() -> list[str]:
    """Add every core sampler to ComfyUI's sampler dropdowns; returns the names served."""
    return register_samplers(_comfy_samplers, _k_sampling, SAMPLERS)


REGISTERED_SAMPLERS = register()
NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = build_mappings()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "REGISTERED_SAMPLERS", "build_mappings", "register"]
