"""Sampler options: names, defaults and validation, with errors that name the option and the sampler."""

from __future__ import annotations

import math
import numbers
import operator
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
    value = _number(value)
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
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # Python and numpy ints and floats
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _non_negative(value: Any) -> float:
    value = _number(value)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"must be a finite number >= 0, got {value}")
    return value


def _positive(value: Any) -> float:
    value = _number(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"must be a finite number > 0, got {value}")
    return value


def _langevin_snr(value: Any) -> float:
    value = _number(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"must be in (0, 1), got {value}: the step 2 (snr sigma)^2 overshoots a noise level of "
                         "variance sigma^2 from snr = 1 on, and the run diverges")
    return value


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        try:
            number = as_integer(value)
        except TypeError:
            raise ValueError(f"must be an integer {bound}, got {value!r}") from None
        if number < low or (high is not None and number > high):
            raise ValueError(f"must be an integer {bound}, got {value!r}")
        return number

    return check


def _in_unit_interval(meaning: str) -> Callable[[Any], float]:
    """A check for a number in (0, 1]; `meaning` says what the number is in the error."""

    def check(value: Any) -> float:
        value = _number(value)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"must be in (0, 1] ({meaning}), got {value}")
        return value

    return check


def _threshold_bound(value: Any) -> float:
    value = _number(value)
    if not value >= 1.0:
        raise ValueError(f"must be >= 1 (the threshold s is at least 1, so a lower bound would clip every x0), "
                         f"got {value}")
    return value


def as_integer(value: Any) -> int:
    """`value` as an int: Python, numpy and 0-d torch integers (hosts' seeds come in all of these); TypeError for
    anything else, bools included."""
    if isinstance(value, bool):
        raise TypeError(f"a bool is not an integer: {value!r}")
    return operator.index(value)


def _seed(value: Any) -> int | tuple[int, ...] | None:
    if value is None:
        return None
    try:
        if isinstance(value, list | tuple) and value:
            return tuple(as_integer(v) for v in value)
        return as_integer(value)  # an empty list raises here too
    except TypeError:
        raise ValueError(f"must be an integer, a non-empty list of integers (one per image) or None, got {value!r}"
                         ) from None


def _noise_sampler(value: Any) -> Any:
    if value is not None and not callable(value):
        raise ValueError(f"must be None or a callable (sigma, sigma_next) -> tensor like x, got {value!r}")
    return value


def _info(value: Any) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"must be None or a dict for the sampler to fill in, got {value!r}")
    return value


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
    Option("threshold_quantile", 0.995, _in_unit_interval("the quantile of |x0| that sets the threshold"),
           "quantile p of |x0| per sample for dynamic thresholding"),
    Option("threshold_max", 1.0, _threshold_bound, "upper bound of the dynamic threshold s (s is at least 1)"),
    Option("eta", 1.0, _non_negative,
           "SDE/ancestral samplers: rate of noise renewal per unit of half-log-SNR; a step of length h keeps the "
           "fraction e^(-eta h) of the current noise and adds fresh noise of std sigma_t sqrt(1 - e^(-2 eta h)); "
           "0 = the ODE sampler, 1 = the reverse-time SDE"),
    Option("s_noise", 1.0, _non_negative, "scale of the fresh noise (1 keeps the marginals exact)"),
    Option("noise_sampler", None, _noise_sampler,
           "callable (sigma, sigma_next) -> standard normal tensor like x for each step's noise; default: the "
           "seeded Brownian path of samplers/noise.py"),
    Option("seed", None, _seed, "seed of the default noise (image b on seed + b), or one seed per image; None: "
           "extra_args['seed'] (ComfyUI), else 0"),
    Option("order", 3, _integer(2, 3),
           "order: adaptive samplers: embedded pair 1/2 (2) or 2/3 (3); predictor-corrector: the multistep "
           "predictor's order", (2, 3)),
    Option("corrector", "unic", _choice("unic", "langevin", "none"),
           "predictor-corrector: 'unic' (UniPC's corrector, reuses the next model call), 'langevin' "
           "(corrector_steps Langevin moves, one model call each) or 'none'", ("unic", "langevin", "none")),
    Option("corrector_steps", 1, _integer(1), "Langevin corrector: moves (model calls) per step"),
    Option("snr", 0.16, _langevin_snr, "Langevin corrector: signal-to-noise ratio that sets the step size"),
    Option("rtol", 0.05, _positive, "adaptive: relative error tolerance per step"),
    Option("atol", 0.0078, _positive, "adaptive: absolute error tolerance per step (data units)"),
    Option("h_init", 0.05, _positive, "adaptive: first step length in half-log-SNR"),
    Option("theta", 0.9, _in_unit_interval("safety factor of the step-size update"),
           "adaptive: safety factor of the step-size update"),
    Option("controller", "standard", _choice("standard", "pid"),
           "adaptive: step-size rule: 'standard' (DPM-Solver paper: h <- theta h E^(-1/k)) or 'pid' "
           "(PID filter of the last three errors)", ("standard", "pid")),
    Option("max_nfe", 1000, _integer(1), "adaptive: most model calls before giving up with an error"),
    Option("info", None, _info, "adaptive: a dict the sampler fills in with nfe, accepted, rejected, ..."),
]}


def parse_options(sampler: str, accepted: Iterable[str], given: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `given` against the options `accepted` by `sampler`; fill in defaults.

    `accepted` may be a mapping {option: default} (a sampler's `defaults`), whose values then override the
    options' global defaults."""
    defaults = dict(accepted) if isinstance(accepted, Mapping) else {}
    accepted = tuple(accepted)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise TypeError(
            f"{sampler} got unknown option(s) {', '.join(unknown)}; it accepts: {', '.join(accepted)}"
        )
    parsed: dict[str, Any] = {}
    for name in accepted:
        option = OPTIONS[name]
        value = given.get(name, defaults.get(name, option.default))
        try:
            parsed[name] = option.check(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{sampler}: option {name} {err}") from None
    return parsed


def _guidance_parts(value: Any) -> Any:
    if value is not None and not callable(value):
        raise ValueError(f"must be None or a zero-argument callable returning (cond_denoised, uncond_denoised, cfg) "
                         f"of the latest model call, got {value!r}")
    return value


OPTIONS.update({o.name: o for o in [
    Option("sds_mode", "sds", _choice("sds", "csd", "sdi"),
           "score distillation: 'sds' (full gradient lambda(sigma)(x0 - D)), 'csd' (classifier-free guidance term "
           "only; needs guidance_parts) or 'sdi' (noise from a DPM-Solver inversion of x0 instead of fresh noise)",
           ("sds", "csd", "sdi")),
    Option("sds_weighting", "uniform", _choice("dreamfusion", "sjc", "uniform"),
           "score distillation weight lambda(sigma): 'dreamfusion' alpha sigma/(alpha^2 + sigma^2), 'sjc' "
           "alpha/sigma, 'uniform' 1 (with lr 1: DDIM, or LCM with fresh noise)", ("dreamfusion", "sjc", "uniform")),
    Option("sds_lr", 1.0, _positive, "score distillation: step size of x0 <- x0 - lr * lambda(sigma)(x0 - D)"),
    Option("sds_inner_steps", 1, _integer(1), "score distillation: optimisation steps (model calls) per sigma"),
    Option("sds_grad_clip", 0.0, _non_negative,
           "score distillation: largest L2 norm of each sample's gradient (0 = no clipping)"),
    Option("sds_noise", "implied", _choice("implied", "fresh"),
           "score distillation (modes sds, csd): noise that re-noises x0 to the next sigma: 'implied' "
           "(x_t - alpha D)/sigma (DDIM) or 'fresh' normals (LCM): from noise_sampler when given (a host's "
           "per-image noise), else seeded", ("implied", "fresh")),
    Option("sds_inversion_steps", 4, _integer(1),
           "score distillation, mode sdi: model calls of each DPM-Solver++(2M) inversion of x0"),
    Option("guidance_parts", None, _guidance_parts,
           "score distillation, mode csd: callable returning (cond_denoised, uncond_denoised, cfg) of the latest "
           "model call (hosts fill it from their CFG hook)"),
]})
