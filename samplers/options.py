"""Sampler options: names, defaults and validation, with errors that name the option and the sampler."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .schedules import resolve_schedule


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value

    return check


def _fraction(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"must be strictly between 0 and 1 (a fraction of the step in lambda), got {value}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be True or False, got {value!r}")
    return value


def _auto_flag(value: Any) -> bool | None:
    if value is None or value == "auto":
        return None
    return _flag(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Option:
    """A named option: its default, a validator returning the normalised value, a one-line doc, and the
    allowed values when they form a finite set (for host UIs)."""

    name: str
    default: Any
    check: Callable[[Any], Any]
    doc: str
    choices: tuple[Any, ...] | None = None


OPTIONS: dict[str, Option] = {o.name: o for o in [
    Option("schedule", "ve", resolve_schedule,
           "model family: 've' (x = x0 + sigma*eps), 'flow' (x = (1-sigma)*x0 + sigma*eps) or a NoiseSchedule"),
    Option("solver_type", "dpmsolver", _choice("dpmsolver", "taylor"),
           "derivative term of 2nd/3rd-order updates: 'dpmsolver' (phi_1/2 weight) or 'taylor' (exact phi_2)",
           ("dpmsolver", "taylor")),
    Option("r1", None, _fraction, "first intermediate point of a singlestep step, fraction of h in lambda"),
    Option("r2", None, _fraction, "second intermediate point of a 3rd-order singlestep step (r1 < r2 < 1)"),
    Option("lower_order_final", None, _auto_flag,
           "lower the order on the last steps; None/'auto': on for multistep grids of fewer than 5 steps"),
    Option("third_order", "reference", _choice("reference", "consistent"),
           "3M update: 'reference' (official/diffusers, converges at order 2; more accurate below ~25 steps) or "
           "'consistent' (exact third-order weights: order 3 after the first-order warm-up step; more accurate "
           "above ~25 steps)",
           ("reference", "consistent")),
    Option("thresholding", False, _flag, "dynamic thresholding of the data prediction (pixel-space models)",
           (False, True)),
    Option("threshold_quantile", 0.995, _number, "quantile p of |x0| per sample for dynamic thresholding"),
    Option("threshold_max", 1.0, _number, "upper bound of the dynamic threshold s (s is at least 1)"),
]}


def parse_options(sampler: str, accepted: Iterable[str], given: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `given` against the options `accepted` by `sampler`; fill in defaults."""
    accepted = tuple(accepted)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise TypeError(
            f"{sampler} got unknown option(s) {', '.join(unknown)}; it accepts: {', '.join(accepted)}"
        )
    parsed: dict[str, Any] = {}
    for name in accepted:
        option = OPTIONS[name]
        value = given.get(name, option.default)
        try:
            parsed[name] = option.check(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{sampler}: option {name} {err}") from None
    return parsed
