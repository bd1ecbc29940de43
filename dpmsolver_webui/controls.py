"""The options accordion as data: one `Control` per sampler option, its UI form, infotext key and setting key.

A control's *unset* value (the "default" choice, or a slider left at its initial position) means "use the
sampler's own default": the option is then not passed at all. Explicit values are validated with the core's
own option checks and passed only to samplers whose `defaults` accept them.

CONTROLS is append-only: its order is the order of the script's arguments (API `alwayson_scripts` args).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .core import load_submodule

DEFAULT_CHOICE = "default"
"""The dropdown choice meaning "the sampler's own default"."""

SETTING_PREFIX = "dpmsolver_ext_"
"""Prefix of the WebUI settings (and `override_settings` keys) that mirror the controls."""


def _identity(value: str) -> Any:
    return value


def _on_off(value: str) -> bool:
    return {"on": True, "off": False}[value]


@dataclass(frozen=True)
class Control:
    """One sampler option as shown in the accordion, written to the infotext and kept in the settings."""

    option: str
    label: str
    infotext: str
    kind: Literal["choice", "number"]
    info: str
    choices: tuple[str, ...] = ()
    convert: Callable[[str], Any] = field(default=_identity, repr=False)
    unset: float = 0.0
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.01

    @property
    def setting_key(self) -> str:
        """Key in `shared.opts` (and in the API's `override_settings`)."""
        return SETTING_PREFIX + self.option

    @property
    def unset_value(self) -> Any:
        """The UI value that means "not set": the "default" choice, or the core's numeric default."""
        if self.kind == "choice":
            return DEFAULT_CHOICE
        core_default = _core_default(self.option)
        if isinstance(core_default, int | float) and not isinstance(core_default, bool):
            return float(core_default)
        return float(self.unset)

    def available_choices(self) -> list[str]:
        """Dropdown choices: "default" plus the candidates the core accepts (all of them for unknown options)."""
        option = _core_option(self.option)
        candidates = tuple(getattr(option, "choices", None) or self.choices)
        keep = [c for c in candidates if option is None or _accepts(option.check, self.convert(str(c)))]
        return [DEFAULT_CHOICE, *[str(c) for c in keep]]

    def is_unset(self, value: Any) -> bool:
        """True when `value` (a UI value) leaves the option to the sampler."""
        if value is None:
            return True
        if self.kind == "choice":
            return str(value) == DEFAULT_CHOICE
        return math.isclose(self.number(value), self.unset_value, rel_tol=0.0, abs_tol=1e-12)

    def number(self, value: Any) -> float:
        """A number control's value as a float; a ValueError naming the option when it is not a number."""
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"DPM-Solver option {self.option}: {value!r} is not a number") from None

    def to_option(self, value: Any) -> Any:
        """The option value for a UI value (choice string or number), validated by the core when it knows it.

        Also accepts an option value itself (e.g. True for lower_order_final), as API callers may send.
        """
        if self.kind == "number":
            result: Any = self.number(value)
        elif isinstance(value, str) and value in self.choices:
            result = self.convert(value)
        else:
            result = value
            if self.to_ui(value) is None:
                raise ValueError(f"DPM-Solver option {self.option}: {value!r} is not one of {list(self.choices)}")
        option = _core_option(self.option)
        if option is not None:
            try:
                return option.check(result)
            except (TypeError, ValueError) as err:
                raise ValueError(f"DPM-Solver option {self.option} {err}") from None
        return result

    def to_ui(self, option_value: Any) -> Any:
        """The UI value (choice string or float) showing `option_value`; None when no choice shows it."""
        if self.kind == "number":
            return float(option_value)
        for choice in self.choices:
            if self.convert(choice) == option_value:
                return choice
        return None

    def format(self, option_value: Any) -> str:
        """Infotext text of an option value (exact round trip for numbers)."""
        if self.kind == "number":
            return repr(float(option_value))
        shown = self.to_ui(option_value)
        return str(option_value) if shown is None else str(shown)


def _core_option(name: str) -> Any:
    return load_submodule("options").OPTIONS.get(name)


def _core_default(name: str) -> Any:
    option = _core_option(name)
    return None if option is None else option.default


def _accepts(check: Callable[[Any], Any], value: Any) -> bool:
    try:
        check(value)
    except (TypeError, ValueError):
        return False
    return True


CONTROLS: tuple[Control, ...] = (
    Control("order", "Order", "DPM-Solver order", "choice",
            "solver order, for samplers that let you choose it (the adaptive ones, DPM-Solver++ PC)",
            choices=("1", "2", "3"), convert=int),
    Control("solver_type", "Solver type", "DPM-Solver solver type", "choice",
            "weight of the derivative term of 2nd/3rd-order updates: dpmsolver or taylor",
            choices=("dpmsolver", "taylor")),
    Control("lower_order_final", "Lower order final steps", "DPM-Solver lower order final", "choice",
            "lower the order on the last steps (default: on for multistep samplers below 5 steps)",
            choices=("on", "off"), convert=_on_off),
    Control("third_order", "3M update", "DPM-Solver third order", "choice",
            "reference: the official/diffusers update (default, better below ~25 steps); "
            "consistent: exact third-order weights (better above ~25 steps)",
            choices=("reference", "consistent")),
    Control("r1", "r1 (0 = default)", "DPM-Solver r1", "number",
            "first intermediate point of a singlestep step, as a fraction of the step in log-SNR",
            unset=0.0, minimum=0.0, maximum=0.95, step=0.05),
    Control("r2", "r2 (0 = default)", "DPM-Solver r2", "number",
            "second intermediate point of a third-order singlestep step (r1 < r2 < 1)",
            unset=0.0, minimum=0.0, maximum=0.95, step=0.05),
    Control("eta", "Eta", "DPM-Solver eta", "number",
            "stochastic samplers: amount of fresh noise per step (0 = deterministic)",
            unset=1.0, minimum=0.0, maximum=2.0, step=0.01),
    Control("s_noise", "Noise scale (s_noise)", "DPM-Solver s_noise", "number",
            "stochastic samplers: scale of the added noise",
            unset=1.0, minimum=0.0, maximum=2.0, step=0.01),
    Control("rtol", "Relative tolerance", "DPM-Solver rtol", "number",
            "adaptive samplers: relative error tolerance per step",
            unset=0.05, minimum=0.001, maximum=0.5, step=0.001),
    Control("atol", "Absolute tolerance", "DPM-Solver atol", "number",
            "adaptive samplers: absolute error tolerance per step",
            unset=0.0078, minimum=0.0001, maximum=0.1, step=0.0001),
    Control("corrector", "Corrector", "DPM-Solver corrector", "choice",
            "predictor-corrector samplers: the corrector run after each step",
            choices=("none", "langevin", "unic")),
    Control("sds_noise", "SDS noise", "DPM-Solver SDS noise", "choice",
            "score distillation (DPM-Solver SDS): re-noise with the noise the model implies (implied, DDIM-like) "
            "or with fresh noise from each image's seed (fresh, LCM-like)",
            choices=("implied", "fresh")),
)
"""Every accordion control, in script-argument order (append only)."""

CONTROLS_BY_OPTION: dict[str, Control] = {c.option: c for c in CONTROLS}


def explicit_options(ui_values: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Option values the user set: UI/script values first, then settings (`shared.opts`, where the API's
    `override_settings` land); unset values are left out. Keys of `ui_values` are option names."""
    settings = settings or {}
    chosen: dict[str, Any] = {}
    for control in CONTROLS:
        value = ui_values.get(control.option)
        if control.is_unset(value):
            value = settings.get(control.setting_key)
        if not control.is_unset(value):
            chosen[control.option] = control.to_option(value)
    return chosen


def ui_values_from_args(args: tuple[Any, ...]) -> dict[str, Any]:
    """The script's positional arguments (one per control) or a single dict {option name: value} (API)."""
    if args and isinstance(args[0], Mapping):
        named = dict(args[0])
        unknown = sorted(set(named) - set(CONTROLS_BY_OPTION))
        if unknown:
            known = ", ".join(CONTROLS_BY_OPTION)
            raise ValueError(f"unknown DPM-Solver option(s) {', '.join(unknown)}; known: {known}")
        return named
    return {control.option: value for control, value in zip(CONTROLS, args, strict=False)}


def options_for_entry(explicit: Mapping[str, Any], accepted: Mapping[str, Any]) -> dict[str, Any]:
    """The explicit options a sampler accepts (`accepted` = its `defaults`) and whose value is not its default."""
    return {k: v for k, v in explicit.items() if k in accepted and v != accepted[k]}


def controls_used_by(defaults: Iterable[Mapping[str, Any]]) -> set[str]:
    """Options of CONTROLS that at least one sampler accepts (the others are hidden in the accordion)."""
    accepted: set[str] = set()
    for table in defaults:
        accepted |= set(table)
    return {c.option for c in CONTROLS if c.option in accepted}
