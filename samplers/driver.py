"""The one loop that runs a Plan: linear combinations of tensors, model calls, callbacks, checks.

The state is kept in at least float32 and returned in the input dtype. Sigmas reach the device once; the
only host synchronisation is the final non-finite check on accelerators (CPU checks each call at no cost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .plan import Plan, Term
from .progress import progress_bar

Model = Callable[..., torch.Tensor]
Callback = Callable[[dict[str, Any]], Any]


class NonFiniteModelOutput(FloatingPointError):
    """The model returned NaN or inf."""


class _FiniteGuard:
    """Checks model outputs for NaN/inf: at once on CPU, deferred to one sync at the end elsewhere."""

    def __init__(self, device: torch.device, describe: Callable[[int], str]) -> None:
        self.immediate = device.type == "cpu"
        self.describe = describe
        self.flags: list[torch.Tensor] = []

    def check(self, denoised: torch.Tensor, call: int) -> None:
        # NaN and inf propagate through a sum: one reduction pass, far cheaper than isfinite().all().
        bad = ~torch.isfinite(denoised.sum())
        if self.immediate:
            if bad:
                self._raise(call)
        else:
            self.flags.append(bad)

    def finish(self) -> None:
        if self.flags:
            flags = torch.stack(self.flags)
            if flags.any():
                self._raise(int(flags.nonzero()[0, 0]))

    def _raise(self, call: int) -> None:
        raise NonFiniteModelOutput(f"the model returned NaN or inf at {self.describe(call)}")


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: half and bfloat16 states are integrated in float32."""
    return torch.promote_types(dtype, torch.float32)


def run_plan(
    model: Model,
    x: torch.Tensor,
    plan: Plan,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sigma_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Execute `plan` from state x; `transform` post-processes each data prediction (e.g. thresholding)."""
    extra_args = {} if extra_args is None else extra_args
    work = working_dtype(x.dtype)
    evals = [stage for stage in plan.stages if stage.evaluate]
    sigma_values = torch.tensor([stage.sigma for stage in evals], dtype=sigma_dtype).to(x.device)
    s_in = x.new_ones([x.shape[0]], dtype=sigma_dtype)

    def describe(call: int) -> str:
        return f"model call {call} (step {evals[call].step}, sigma={evals[call].sigma:.6g})"

    guard = _FiniteGuard(x.device, describe)
    state = x.to(work)
    buffer: dict[int, dict[str, torch.Tensor]] = {}
    call = -1
    with progress_bar(total=plan.nfe, disable=disable) as bar:
        for n, stage in enumerate(plan.stages):
            y = _combine(state, stage.a, stage.terms, buffer)
            if stage.evaluate:
                call += 1
                sigma = sigma_values[call]
                denoised = model(y.to(x.dtype), sigma * s_in, **extra_args).to(work)
                if transform is not None:
                    denoised = transform(denoised)
                guard.check(denoised, call)
                entry = {"D": denoised}
                if "eps" in plan.kinds[call]:
                    entry["eps"] = torch.add(y, denoised, alpha=-stage.alpha).mul_(1.0 / stage.sigma)
                buffer[call] = entry
                if callback is not None:
                    callback({"x": y, "i": call, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised,
                              "step": stage.step, "nfe": call + 1, "total": plan.nfe})
                bar.update(1)
            if stage.commit:
                state = y
            for j in [j for j in buffer if plan.last_use[j] <= n]:
                del buffer[j]
    guard.finish()
    return state.to(x.dtype)


def _combine(x: torch.Tensor, a: float, terms: tuple[Term, ...], buffer: dict[int, dict[str, torch.Tensor]]
             ) -> torch.Tensor:
    """y = a*x + sum(coef * buffer[index][kind]); returns x itself for the identity stage."""
    if not terms:
        return x if a == 1.0 else x * a
    first, *rest = terms
    y = buffer[first.index][first.kind] * first.coef
    if a != 0.0:
        y.add_(x, alpha=a)
    for term in rest:
        y.add_(buffer[term.index][term.kind], alpha=term.coef)
    return y
