"""Adaptive step size: DPM-Solver-12 / -23 (noise prediction) and DPM-Solver++-12 / -23 (data prediction).

Each attempt from s to t = s + h (h in half-log-SNR lambda) computes an embedded pair sharing its model calls:
order 2: x_low = first order, x_high = singlestep second order with the model output at r = 1/2 (2 calls);
order 3: x_low = singlestep second order with r1 = 1/3, x_high = singlestep third order with r1 = 1/3,
r2 = 2/3 (3 calls). The call at s is made once per accepted point and reused by rejected attempts. With
delta = max(atol, rtol * max(|x_low|, |x_s|)) elementwise and E = RMS((x_high - x_low) / delta) over the
whole batch, the attempt is accepted when E <= 1 (x <- x_high). Every state enters the norm divided by
sqrt(alpha^2 + sigma^2) at its sigma: that is the variance-preserving state the DPM-Solver paper measures, for
any family (for VE x/sqrt(1 + sigma^2), for flow nearly x), so rtol/atol mean the same for SD and flow models and
a large VE x at high noise does not loosen the tolerance. The next h is theta h E^(-1/k), k = order
(the DPM-Solver paper's rule), or with controller="pid" a PID filter of the last errors; never past the end.

The step decision needs E on the host: one scalar transfer (host sync) per attempt, the unavoidable price of
adaptivity; everything else stays on the device. Because E is taken over the whole batch, the step sizes (and so
each image) depend on the batch it is sampled in.

The loop integrates from the first to the last nonzero sigma of the given grid (interior grid points are
ignored) and ends with the final denoise x <- D when the grid ends at 0. A flow grid starting at sigma = 1
(lambda = -inf) first takes the exact first-order step to its second sigma.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .coefficients import Prediction, exponential_step, first_order_data_step
from .driver import Callback, Model, ModelCaller, working_dtype
from .plan import Point
from .progress import progress_bar
from .schedules import NoiseSchedule
from .sigmas import SAME_LAMBDA

PID_COEFFICIENTS = (0.4, 0.3, 0.1)
"""(kP, kI, kD) of the "pid" controller: h <- h * limit(e_n^((kP+kI+kD)/k) e_(n-1)^(-(kP+2kD)/k) e_(n-2)^(kD/k))
with e = theta/E the inverse scaled errors of the last accepted steps and limit(f) = 1 + atan(f - 1)."""

END_TOLERANCE = 1e-9
"""A step whose end lies within this (in lambda) of the last sigma lands on it exactly."""


class AdaptiveStepLimit(RuntimeError):
    """The adaptive sampler reached max_nfe model calls, or a step shorter than SAME_LAMBDA, before the end of the
    grid."""


class ModelCallsUnknown(ValueError):
    """count_model_calls of an adaptive sampler: the number of calls is only known after the run."""


def _point(schedule: NoiseSchedule, lam: float) -> Point:
    sigma = schedule.sigma_at(lam)
    return Point(sigma, schedule.alpha(sigma), lam)


class _Attempts:
    """Step-size control state: the standard rule or the PID filter."""

    def __init__(self, order: int, theta: float, controller: str) -> None:
        self.order = order
        self.theta = theta
        self.controller = controller
        self.history: list[float] = []  # inverse scaled errors of the last accepted steps, newest first

    def next_h(self, h: float, error: float, accepted: bool) -> float:
        k = self.order
        if error == 0.0:
            return math.inf
        if self.controller == "standard" or not accepted:
            return self.theta * h * error ** (-1.0 / k)
        e = [self.theta / error, *self.history][:3]
        self.history = e
        e += [e[-1]] * (3 - len(e))
        kp, ki, kd = PID_COEFFICIENTS
        factor = e[0] ** ((kp + ki + kd) / k) * e[1] ** (-(kp + 2 * kd) / k) * e[2] ** (kd / k)
        return h * (1.0 + math.atan(factor - 1.0))


def sample_adaptive(
    model: Model, x: torch.Tensor, grid: list[float], schedule: NoiseSchedule, prediction: Prediction,
    opts: dict[str, Any], *, name: str, extra_args: dict[str, Any] | None = None, callback: Callback | None = None,
    disable: bool | None = None, transform: Any = None, sigma_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Run the adaptive sampler over a strictly decreasing grid (at least two sigmas); see the module doc."""
    order, max_nfe = opts["order"], opts["max_nfe"]
    info = opts.get("info")
    control = _Attempts(order, opts["theta"], opts["controller"])
    ends_at_zero = grid[-1] == 0.0
    body = grid[:-1] if ends_at_zero else grid
    stats: dict[str, Any] = {"nfe": 0, "accepted": 0, "rejected": 0, "sigmas": [body[0]], "order": order,
                             "controller": opts["controller"]}
    state = x.to(working_dtype(x.dtype))
    with progress_bar(total=None, disable=disable) as bar:
        caller = ModelCaller(model, x, extra_args=extra_args, callback=callback, bar=bar, total=None,
                             transform=transform, sigma_dtype=sigma_dtype)

        def where() -> str:
            """How far the accepted steps got: their last sigma, and the share of the way in lambda."""
            start = body[0] if math.isfinite(schedule.lambda_(body[0])) or len(body) < 2 else body[1]
            reached, first, last = (schedule.lambda_(v) for v in (stats["sigmas"][-1], start, body[-1]))
            done = (reached - first) / (last - first) if last > first else 1.0
            return (f"with the accepted steps at sigma={stats['sigmas'][-1]:.6g} ({done:.0%} of the way in "
                    f"log-SNR from sigma={body[0]:.6g} to {body[-1]:.6g}; {stats['accepted']} steps accepted, "
                    f"{stats['rejected']} rejected)")

        def counts() -> dict[str, Any]:
            return {"accepted": stats["accepted"], "rejected": stats["rejected"]}

        def evaluate(y: torch.Tensor, p: Point) -> tuple[torch.Tensor, torch.Tensor]:
            """(D, sigma tensor) at point p, after the max_nfe guard; the caller notifies."""
            if caller.nfe >= max_nfe:
                raise AdaptiveStepLimit(f"{name}: reached max_nfe={max_nfe} model calls {where()}. Raise max_nfe or "
                                        "loosen rtol/atol.")
            sigma = caller.sigma_tensor(p.sigma)
            return caller.evaluate(y, sigma, p.sigma, stats["accepted"]), sigma

        def call(y: torch.Tensor, p: Point) -> torch.Tensor:
            denoised, sigma = evaluate(y, p)
            caller.notify(y, sigma, denoised, stats["accepted"], counts())
            return denoised

        try:
            s = Point.at(schedule, body[0])
            if math.isinf(s.lam) and len(body) > 1:  # flow from sigma = 1: the exact first-order step
                t = Point.at(schedule, body[1])
                a, b = first_order_data_step(s.alpha, s.sigma, t.alpha, t.sigma)
                state = torch.add(call(state, s) * b, state, alpha=a)
                s = t
                stats["accepted"] += 1
                stats["sigmas"].append(t.sigma)
            if s.sigma != body[-1]:
                state, s = _integrate(state, s, Point.at(schedule, body[-1]), schedule, prediction, opts,
                                      control, stats, evaluate, call, caller, name)
            if ends_at_zero:
                state = call(state, s)
                stats["sigmas"].append(0.0)
            caller.finish(state)
        finally:
            stats["nfe"] = caller.nfe
            if info is not None:
                info.update(stats)
    return state.to(x.dtype)


def _integrate(state: torch.Tensor, s: Point, end: Point, schedule: NoiseSchedule, prediction: Prediction,
               opts: dict[str, Any], control: _Attempts, stats: dict[str, Any], evaluate: Any, call: Any,
               caller: ModelCaller, name: str) -> tuple[torch.Tensor, Point]:
    """Adaptive steps from s to end (both with finite lambda); returns (state at end, end). `name` heads errors."""
    order, rtol, atol = opts["order"], opts["rtol"], opts["atol"]
    h = min(opts["h_init"], end.lam - s.lam)
    f_s: torch.Tensor | None = None

    def to_f(y: torch.Tensor, denoised: torch.Tensor, p: Point) -> torch.Tensor:
        if prediction == "data":
            return denoised
        return torch.add(y, denoised, alpha=-p.alpha).mul_(1.0 / p.sigma)

    def step(p_from: Point, p_to: Point, nodes: list[tuple[torch.Tensor, float]], solver_type: str
             ) -> torch.Tensor:
        a, b = exponential_step(p_from.alpha, p_from.sigma, p_to.alpha, p_to.sigma, p_from.lam, p_to.lam,
                                [lam for _, lam in nodes], prediction, solver_type)  # type: ignore[arg-type]
        y = state * a
        for coef, (f, _) in zip(b, nodes, strict=True):
            y.add_(f, alpha=coef)
        return y

    while s.lam < end.lam:
        if f_s is None:
            f_s = to_f(state, call(state, s), s)
        lam_t = s.lam + h
        t = end if lam_t >= end.lam - END_TOLERANCE else _point(schedule, lam_t)
        h = t.lam - s.lam
        if h < SAME_LAMBDA and t is not end:
            raise AdaptiveStepLimit(
                f"{name}: the step size fell to h={h:.3g} in log-SNR at sigma={s.sigma:.6g}, below {SAME_LAMBDA:g} "
                f"(rounding noise), after {stats['accepted']} steps accepted and {stats['rejected']} rejected: the "
                "model's output may not be smooth in sigma, or h_init/theta are too small")
        nodes = [(f_s, s.lam)]
        fractions = [0.5] if order == 2 else [1.0 / 3.0, 2.0 / 3.0]
        for n, r in enumerate(fractions):
            mid = _point(schedule, s.lam + r * h)
            y = step(s, mid, nodes, "taylor")
            if n < len(fractions) - 1:
                nodes.append((to_f(y, call(y, mid), mid), mid.lam))
            else:
                last_y = y
                denoised, sigma = evaluate(y, mid)
                nodes.append((to_f(y, denoised, mid), mid.lam))
        if order == 2:
            x_low = step(s, t, nodes[:1], "taylor")
            x_high = step(s, t, nodes, "dpmsolver")
        else:
            x_low = step(s, t, nodes[:2], "dpmsolver")
            x_high = step(s, t, [nodes[0], nodes[2]], "taylor")
        c_s, c_t = math.hypot(s.alpha, s.sigma), math.hypot(t.alpha, t.sigma)
        delta = torch.maximum(x_low.abs() * (1.0 / c_t), state.abs() * (1.0 / c_s)).mul_(rtol).clamp_(min=atol)
        scaled = (x_high - x_low).mul_(1.0 / c_t).div_(delta)
        error = float(scaled.square().mean().sqrt())  # the one host sync per attempt
        if not math.isfinite(error):
            caller.guard.finish()  # names the model call when the model produced NaN/inf
            raise FloatingPointError(f"non-finite error estimate on the step from sigma={s.sigma:.6g}")
        accepted = error <= 1.0
        h_next = control.next_h(h, error, accepted)
        if accepted:
            state, s, f_s = x_high, t, None
            stats["accepted"] += 1
            stats["sigmas"].append(t.sigma)
        else:
            stats["rejected"] += 1
        caller.notify(last_y, sigma, denoised, stats["accepted"],
                      {"accepted": stats["accepted"], "rejected": stats["rejected"], "error": error,
                       "accept": accepted, "h": h})
        h = min(h_next, end.lam - s.lam)
    return state, end
