"""Nodes that output a SAMPLER (for SamplerCustom / SamplerCustomAdvanced) with every core option as an input.

Family nodes (interface.FAMILY_NODES) pick a registry entry by `order`; every registry entry no family node
covers gets a node of its own, so samplers added to the core appear without changes here. Inputs are the
entry's options that make sense as widgets (widgets.widget_for); the model family and ComfyUI's noise seed
are filled in when sampling (sampling.make_sampler_function).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import comfy.samplers

from ..samplers import SAMPLERS, ModelCallsUnknown, SamplerEntry
from .interface import ENTRY_NODE_PREFIX, FAMILY_NODES, input_order
from .sampling import make_sampler_function
from .widgets import InputError, check_option, widget_for

CATEGORY = "sampling/custom_sampling/samplers/DPM-Solver"

_PROBE_GRIDS = ([14.6146, 3.0, 0.8, 0.2, 0.0292, 0.0], [14.6146, 0.0292, 0.0])
"""Grids a node's options are tried on before sampling (a long and a one-step VE grid), so that
combinations only the core can judge (r1 < r2, ...) are reported at queue time."""


def widget_options(entry: SamplerEntry) -> list[str]:
    """The entry's options that are offered as widgets."""
    return [name for name in entry.defaults if widget_for(name) is not None]


def _probe(entry: SamplerEntry, options: Mapping[str, Any], label: str) -> None:
    """Let the core judge the options together; errors name the inputs the core names."""
    for grid in _PROBE_GRIDS:
        try:
            entry.count_model_calls(grid, **options)
        except (ModelCallsUnknown, NotImplementedError):  # adaptive: options were checked before it raised
            return
        except (TypeError, ValueError) as err:
            message = str(err)
            for name in options:
                message = message.replace(f"option {name} ", f"input '{name}' ")
            raise InputError(f"{label}: {message}") from None


def resolve_options(label: str, entry: SamplerEntry, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Validated core options from widget values (inputs the entry does not take are ignored)."""
    options: dict[str, Any] = {}
    for name in widget_options(entry):
        if name in inputs:
            try:
                options[name] = check_option(entry.name, name, inputs[name])
            except InputError as err:
                raise InputError(f"{label}: {err}") from None
    _probe(entry, options, label)
    return options


class _SamplerNode:
    """Base of the generated sampler node classes (ComfyUI's classic node interface)."""

    RETURN_TYPES = ("SAMPLER",)
    RETURN_NAMES = ("sampler",)
    OUTPUT_TOOLTIPS = ("The sampler, for SamplerCustom or SamplerCustomAdvanced.",)
    FUNCTION = "get_sampler"
    CATEGORY = CATEGORY
    NODE_ID = ""
    DISPLAY_NAME = ""
    MEMBERS: Mapping[int, str] = {}
    DEFAULT_ORDER: int
    INPUT_NAMES: tuple[str, ...] = ()
    REGISTRY: Mapping[str, SamplerEntry] = SAMPLERS

    @classmethod
    def entry_for(cls, order: int | None) -> SamplerEntry:
        if order is None:
            (name,) = cls.MEMBERS.values()
        else:
            if order not in cls.MEMBERS:
                allowed = ", ".join(str(o) for o in sorted(cls.MEMBERS))
                raise InputError(f"{cls.DISPLAY_NAME}: input 'order' must be one of {allowed}, got {order!r}")
            name = cls.MEMBERS[order]
        return cls.REGISTRY[name]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        registry = cls.REGISTRY
        entries = [registry[n] for n in cls.MEMBERS.values() if n in registry]
        required: dict[str, Any] = {}
        for name in cls.INPUT_NAMES:
            if name == "order" and len(cls.MEMBERS) > 1:
                orders = sorted(cls.MEMBERS)
                described = "; ".join(f"{o}: {registry[cls.MEMBERS[o]].label}" for o in orders)
                required[name] = ("INT", {"default": cls.DEFAULT_ORDER, "min": orders[0], "max": orders[-1],
                                          "tooltip": f"Order of the solver ({described})."})
                continue
            spec = widget_for(name)
            if spec is None:
                continue
            users = [e for e in entries if name in e.defaults]
            tooltip = spec.tooltip
            if len(users) < len(entries):
                tooltip += " Used by: " + ", ".join(e.label for e in users) + "."
            widget = spec.comfy_input(spec.widget_value(users[0].defaults[name]))  # the first member's default
            widget[1]["tooltip"] = tooltip
            required[name] = widget
        return {"required": required}

    def get_sampler(self, **inputs: Any) -> tuple[Any]:
        order = inputs.get("order") if len(self.MEMBERS) > 1 else None
        entry = self.entry_for(order)
        options = resolve_options(self.DISPLAY_NAME, entry, inputs)
        return (comfy.samplers.KSAMPLER(make_sampler_function(entry), extra_options=options),)


def _validator(cls: type[_SamplerNode], names: list[str]) -> Any:
    """A VALIDATE_INPUTS for the inputs the core must judge together (ComfyUI passes exactly the inputs its
    signature names, and checks the others itself)."""

    def validate(klass: type[_SamplerNode], **values: Any) -> bool | str:
        if any(v is None for v in values.values()):
            return True  # linked inputs are only known at run time
        try:
            entry = klass.entry_for(values.get("order") if len(klass.MEMBERS) > 1 else None)
            resolve_options(klass.DISPLAY_NAME, entry, values)
        except InputError as err:
            return str(err)
        return True

    params = [inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    validate.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return classmethod(validate)


CROSS_CHECKED = ("r1", "r2")
"""Options whose valid values depend on each other (the core checks r1 < r2): validated at queue time."""


def _make_node(registry: Mapping[str, SamplerEntry], node_id: str, display: str, members: Mapping[int, str],
               default_order: int, description: str) -> type[_SamplerNode]:
    entries = [registry[n] for n in members.values()]
    names: list[str] = ["order"] if len(members) > 1 else []
    for entry in entries:
        names += widget_options(entry)
    ordered = tuple(input_order(node_id, names))
    attrs: dict[str, Any] = {
        "NODE_ID": node_id, "DISPLAY_NAME": display, "MEMBERS": dict(members), "DEFAULT_ORDER": default_order,
        "INPUT_NAMES": ordered, "DESCRIPTION": description, "REGISTRY": registry, "__module__": __name__,
    }
    cls = type(node_id, (_SamplerNode,), attrs)
    checked = [n for n in ordered if n in CROSS_CHECKED]
    if checked:
        cls.VALIDATE_INPUTS = _validator(cls, (["order"] if "order" in ordered else []) + checked)
    return cls


def sampler_nodes(registry: Mapping[str, SamplerEntry] = SAMPLERS) -> dict[str, tuple[type, str]]:
    """node id -> (node class, display name) for every family node and every uncovered registry entry."""
    nodes: dict[str, tuple[type, str]] = {}
    covered: set[str] = set()
    for node_id, (display, members, default_order) in FAMILY_NODES.items():
        present = {o: n for o, n in members.items() if n in registry}
        if not present:
            continue
        covered.update(present.values())
        lines = [f"order {o}: {registry[n].label} ({registry[n].description})" for o, n in sorted(present.items())]
        description = f"{display} sampler for SamplerCustom/SamplerCustomAdvanced. " + "; ".join(lines) + "."
        default = default_order if default_order in present else max(present)
        nodes[node_id] = (_make_node(registry, node_id, display, present, default, description), display)
    for name, entry in registry.items():
        if name in covered:
            continue
        node_id = ENTRY_NODE_PREFIX + name
        description = f"{entry.label}: {entry.description}. Sampler for SamplerCustom/SamplerCustomAdvanced."
        nodes[node_id] = (_make_node(registry, node_id, entry.label, {0: name}, 0, description), entry.label)
    return nodes
