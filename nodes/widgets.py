"""Core options as ComfyUI widgets: input specs, widget value <-> option value, validation naming the input.

A widget always has a value, while many core options default to None ("the sampler's own choice"): such
options get a widget value meaning "default" (`unset`: "auto" for a dropdown, 0 for a number). Values are
checked against the widget's range first and then by the core's own validator (`samplers.options.OPTIONS`),
so messages name the input and say what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..samplers.options import OPTIONS, Option

_NOTHING = object()

NOT_WIDGETS = frozenset({"schedule", "seed", "noise_sampler", "info", "guidance_parts"})
"""Options the adapter fills itself (model family, ComfyUI's noise seed, CFG parts from the post-CFG hook) or
that are not widget values."""


class InputError(ValueError):
    """An input value that is out of range or rejected by the core; the message names the input."""


@dataclass(frozen=True)
class WidgetSpec:
    """How an option appears as a widget. `labels` maps option values to widget values for dropdowns."""

    kind: str
    tooltip: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    unset: Any = _NOTHING
    labels: Mapping[Any, Any] = field(default_factory=dict)

    def widget_value(self, option_value: Any) -> Any:
        """The widget value showing `option_value` (None: the `unset` value)."""
        if option_value is None and self.unset is not _NOTHING:
            return self.unset
        return self.labels.get(option_value, option_value)

    def option_value(self, widget_value: Any) -> Any:
        """The option value for a widget value (the `unset` value: None)."""
        if self.unset is not _NOTHING and widget_value == self.unset:
            return None
        for option, label in self.labels.items():
            if label == widget_value:
                return option
        if self.kind == "INT":
            return int(widget_value)
        if self.kind == "FLOAT":
            return float(widget_value)
        return widget_value

    def check(self, name: str, value: Any) -> None:
        """Raise InputError naming `name` if the widget value is not allowed by this widget."""
        if self.kind == "COMBO":
            if value not in (self.choices or ()):
                allowed = ", ".join(repr(c) for c in self.choices or ())
                raise InputError(f"input '{name}' must be one of {allowed}, got {value!r}")
            return
        if self.kind == "BOOLEAN":
            if not isinstance(value, bool):
                raise InputError(f"input '{name}' must be true or false, got {value!r}")
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"input '{name}' must be a number, got {value!r}")
        if self.kind == "INT" and int(value) != value:
            raise InputError(f"input '{name}' must be a whole number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"input '{name}' must be at least {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise InputError(f"input '{name}' must be at most {self.maximum}, got {value!r}")

    def comfy_input(self, default: Any) -> tuple[Any, ...]:
        """The INPUT_TYPES entry for this widget with `default` as widget value."""
        extra: dict[str, Any] = {"default": default, "tooltip": self.tooltip}
        if self.kind == "COMBO":
            return (list(self.choices or ()), extra)
        if self.kind in ("INT", "FLOAT"):
            lo = self.minimum if self.minimum is not None else -(2**31)
            hi = self.maximum if self.maximum is not None else 2**31 - 1
            extra.update({"min": min(lo, default), "max": max(hi, default)})
            if self.step is not None:
                extra["step"] = self.step
            if self.kind == "FLOAT":
                extra["round"] = False
        return (self.kind, extra)


def _combo(tooltip: str, choices: tuple[Any, ...], labels: Mapping[Any, Any] | None = None,
           unset: Any = _NOTHING) -> WidgetSpec:
    return WidgetSpec("COMBO", tooltip, choices=choices, labels=dict(labels or {}), unset=unset)


def _float(tooltip: str, lo: float, hi: float, step: float, unset: Any = _NOTHING) -> WidgetSpec:
    return WidgetSpec("FLOAT", tooltip, minimum=lo, maximum=hi, step=step, unset=unset)


def _int(tooltip: str, lo: int, hi: int, unset: Any = _NOTHING) -> WidgetSpec:
    return WidgetSpec("INT", tooltip, minimum=lo, maximum=hi, step=1, unset=unset)


KNOWN: dict[str, WidgetSpec] = {
    "solver_type": _combo(
        "How second- and third-order steps weight the derivative term: 'dpmsolver' (the official DPM-Solver "
        "form) or 'taylor' (the exact Taylor weight; usually more accurate for singlestep samplers).",
        ("dpmsolver", "taylor")),
    "lower_order_final": _combo(
        "Lower the order on the last steps (last step first order, the one before at most second). 'auto': "
        "on for multistep samplers on grids of fewer than 5 steps.",
        ("auto", "on", "off"), {None: "auto", True: "on", False: "off"}, unset="auto"),
    "r1": _float(
        "Position of the first intermediate model call inside a singlestep step, as a fraction of the step "
        "in half-log-SNR. 0 = the default (1/2 for second order, 1/3 for third order).",
        0.0, 0.99, 0.01, unset=0.0),
    "r2": _float(
        "Position of the second intermediate model call of a third-order singlestep step (must exceed r1). "
        "0 = the default (2/3).",
        0.0, 0.99, 0.01, unset=0.0),
    "third_order": _combo(
        "Third-order multistep update: 'reference' (the official DPM-Solver/diffusers update; best below "
        "~25 steps) or 'consistent' (exact third-order weights; best on long schedules).",
        ("reference", "consistent")),
    "thresholding": WidgetSpec(
        "BOOLEAN",
        "Dynamic thresholding of each data prediction (for pixel-space models; leave off for latent models)."),
    "threshold_quantile": _float(
        "Dynamic thresholding: the quantile p of |x0| per sample that sets the threshold.", 0.001, 1.0, 0.001),
    "threshold_max": _float(
        "Dynamic thresholding: the largest threshold s (s is at least 1).", 1.0, 1000.0, 0.1),
    # Options of the stochastic, adaptive and predictor-corrector samplers.
    "eta": _float("Noise renewal rate: each step of length h in half-log-SNR keeps e^(-eta h) of the current noise "
                  "and adds fresh noise for the rest. 0 = the ODE sampler, 1 = the reverse-time SDE.",
                  0.0, 100.0, 0.01),
    "s_noise": _float("Scale of the fresh noise (1 keeps the noise level exact).", 0.0, 100.0, 0.01),
    "order": _int("Order: adaptive samplers use the embedded pair of orders 1/2 (2) or 2/3 (3); the "
                  "predictor-corrector sampler the order of its multistep predictor.", 1, 3),
    "rtol": _float("Relative error tolerance of the adaptive step size control, on the variance-preserving state "
                   "(smaller: more accurate, more model calls).", 1e-6, 1.0, 0.001),
    "atol": _float("Absolute error tolerance of the adaptive step size control, on the variance-preserving state "
                   "x/sqrt(alpha^2 + sigma^2).", 1e-6, 1.0, 0.0001),
    "h_init": _float("First step length tried, in half-log-SNR.", 1e-6, 10.0, 0.001),
    "theta": _float("Safety factor of the step size update (0 < theta <= 1).", 0.01, 1.0, 0.01),
    "max_nfe": _int("Most model calls an adaptive run may make; reaching it stops the run with an error naming "
                    "how far it got.", 1, 100000),
    "corrector_steps": _int("Corrector moves (one model call each) after each predictor step (Langevin corrector).",
                            1, 100),
    "snr": _float("Signal-to-noise ratio that sets the Langevin corrector's step size (below 1: from 1 on the step "
                  "overshoots and the image diverges).", 0.001, 0.99, 0.01),
    # Options of score distillation (dpm_solver_sds).
    "sds_mode": _combo("Score distillation: 'sds' the full gradient lambda(sigma) (x0 - D); 'csd' the classifier-free "
                       "guidance term only, from the conditional and unconditional predictions of this CFG; 'sdi' "
                       "like sds with the noise from a DPM-Solver inversion of x0 instead of fresh noise.",
                       ("sds", "csd", "sdi")),
    "sds_noise": _combo("Score distillation (modes sds, csd): the noise that re-noises x0 to the next sigma: "
                        "'implied' (x_t - alpha D)/sigma, DDIM-like; 'fresh' new normals per step, LCM-like, from "
                        "ComfyUI's noise for this seed.", ("implied", "fresh")),
    "sds_lr": _float("Score distillation: step size of each update x0 <- x0 - lr * lambda(sigma) * (x0 - D). With "
                     "the uniform weighting, 1 makes each step x0 <- D (DDIM, or LCM with fresh noise); smaller "
                     "values move x0 part of the way.", 0.001, 10.0, 0.01),
    "sds_inner_steps": _int("Score distillation: optimisation steps at each sigma of the schedule, one model call "
                            "each (the sampler costs steps * inner steps model calls, plus inversions in mode sdi).",
                            1, 50),
    "sds_grad_clip": _float("Score distillation: largest L2 norm of each latent's gradient, in latent units "
                            "(0 = no clipping).", 0.0, 1000.0, 0.1),
    "sds_inversion_steps": _int("Score distillation, mode sdi: model calls of each DPM-Solver inversion of x0 that "
                                "replaces the fresh noise (more: a more exact inversion, more model calls).", 1, 50),
}


def _derived(option: Option) -> WidgetSpec | None:
    """A widget for an option the table above does not know, from the core's metadata alone."""
    tooltip = option.doc[:1].upper() + option.doc[1:] if option.doc else option.name
    if option.choices is not None:
        if set(option.choices) <= {False, True} and all(isinstance(c, bool) for c in option.choices):
            return WidgetSpec("BOOLEAN", tooltip)
        labels = {c: ("auto" if c is None else c) for c in option.choices if not isinstance(c, str)}
        choices = tuple(labels.get(c, c) for c in option.choices)
        return WidgetSpec("COMBO", tooltip, choices=choices, labels=labels)
    if isinstance(option.default, bool):
        return WidgetSpec("BOOLEAN", tooltip)
    if isinstance(option.default, int):
        return WidgetSpec("INT", tooltip, step=1)
    if isinstance(option.default, float):
        return WidgetSpec("FLOAT", tooltip, step=0.001)
    return None


def widget_for(name: str) -> WidgetSpec | None:
    """The widget of option `name`, or None when it is not offered as a widget."""
    if name in NOT_WIDGETS or name not in OPTIONS:
        return None
    spec = KNOWN.get(name)
    option = OPTIONS[name]
    if spec is None:
        return _derived(option)
    if spec.kind == "COMBO" and option.choices is not None and not spec.labels:
        # Dropdown entries follow the core when it offers more choices than this table knew of.
        spec = WidgetSpec("COMBO", spec.tooltip, choices=tuple(option.choices), unset=spec.unset)
    if spec.kind == "INT" and option.choices and all(isinstance(c, int) for c in option.choices):
        spec = WidgetSpec("INT", spec.tooltip, minimum=min(option.choices), maximum=max(option.choices), step=1,
                          unset=spec.unset)
    return spec


def check_option(sampler: str, name: str, widget_value: Any) -> Any:
    """Validate one widget value for option `name` and return the option value; InputError names the input."""
    spec = widget_for(name)
    if spec is None:
        raise InputError(f"input '{name}' is not an option of {sampler}")
    spec.check(name, widget_value)
    value = spec.option_value(widget_value)
    try:
        return OPTIONS[name].check(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"input '{name}' {err}") from None
