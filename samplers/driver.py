"""The one loop that runs a Plan: linear combinations of tensors, noise, model calls, callbacks, checks.

The state is kept in at least float32 and returned in the input dtype. Sigmas reach the device once, before the
loop; the only host synchronisation after that is the final non-finite check on accelerators (CPU checks each
call at no cost); tests/test_no_sync.py counts host reads inside the loop.
`ModelCaller` is the model-call contract on its own, for loops that cannot be planned (the adaptive sampler).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import torch

from .plan import Plan, Stage
from .progress import progress_bar

Model = Callable[..., torch.Tensor]
Callback = Callable[[dict[str, Any]], Any]


class NonFiniteModelOutput(FloatingPointError):
    """The model returned NaN or inf."""


class NonFiniteInput(ValueError):
    """The latent x given to the sampler holds NaN or inf (before any model call)."""


class NonFiniteResult(FloatingPointError):
    """The sampler's result holds NaN or inf although x and every model output were finite."""


class ModelOutputError(ValueError):
    """The model returned something other than a tensor of its input's shape."""


def check_call(x: Any, extra_args: Any) -> None:
    """Raise TypeError unless x is a floating-point torch tensor with a batch dimension (dim >= 1) and extra_args
    None or a mapping (the model's keyword arguments)."""
    if extra_args is not None and not isinstance(extra_args, Mapping):
        raise TypeError(f"extra_args must be a mapping of keyword arguments for the model, got "
                        f"{type(extra_args).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (batch first), got {type(x).__name__}")
    if x.dim() < 1:
        raise TypeError("x must have a batch dimension, got a 0-d tensor")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")


def _bad_samples(x: torch.Tensor) -> list[int]:
    """Indices of the samples of x that hold NaN or inf (error path only: reads the device)."""
    return (~torch.isfinite(x).reshape(x.shape[0], -1).all(1)).nonzero().flatten().tolist()


class _FiniteGuard:
    """Checks the input x, every model output and the result for NaN/inf: at once on CPU, deferred to one sync at
    the end elsewhere.

    NaN and inf propagate through a sum, so one reduction per tensor is the check (far cheaper than
    isfinite().all()). Deferred, each call's sum is written into a preallocated device vector (no allocation, no
    host read); `finish` reads them once, the input's and the result's with them.
    """

    immediate_on: tuple[str, ...] = ("cpu",)
    """Device types checked at once (reading a CPU scalar costs no device sync)."""
    _CHUNK = 64

    def __init__(self, device: torch.device, describe: Callable[[int], str]) -> None:
        self.immediate = device.type in self.immediate_on
        self.describe = describe
        self.sums: list[torch.Tensor] = []
        self.count = 0
        self.input: tuple[torch.Tensor, torch.Tensor] | None = None
        self.result: tuple[torch.Tensor, torch.Tensor] | None = None

    def check_input(self, x: torch.Tensor) -> None:
        """x, the latent the sampler starts from."""
        self.input = self._whole(x, self._raise_input)

    def check_result(self, state: torch.Tensor) -> None:
        """The state the sampler returns; checked after the model outputs, so a model NaN is named first."""
        self.result = self._whole(state, self._raise_result)

    def _whole(self, tensor: torch.Tensor, fail: Callable[[torch.Tensor], None]
               ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The sum of `tensor` (`_total`): checked at once (`fail` raises), or kept with the tensor for `finish`."""
        total = _total(tensor)
        if not self.immediate:
            return tensor, total
        if not math.isfinite(float(total)):
            fail(tensor)
        return None

    def check(self, denoised: torch.Tensor, call: int, given: torch.Tensor) -> None:
        """The output of model call `call`; `given`, its input, is read only when the output is bad (to tell a
        NaN the model made from one it was given)."""
        if self.immediate:
            if not math.isfinite(float(denoised.sum())):
                if not math.isfinite(float(_total(given))):
                    self._raise_state(call)
                self._raise(call)
            return
        chunk, at = divmod(call, self._CHUNK)
        while len(self.sums) <= chunk:
            self.sums.append(torch.empty(self._CHUNK, dtype=denoised.dtype, device=denoised.device))
        torch.sum(denoised, dim=tuple(range(denoised.dim())), out=self.sums[chunk][at])
        self.count = max(self.count, call + 1)

    def finish(self) -> None:
        """Raise for the first non-finite tensor in the order input, model calls, result (one host read)."""
        parts = [] if self.input is None else [self.input[1].reshape(1)]
        if self.count:
            parts.append(torch.cat(self.sums)[:self.count])
        if self.result is not None:
            parts.append(self.result[1].reshape(1))
        if not parts:
            return
        bad = ~torch.isfinite(torch.cat(parts))
        if not bad.any():
            return
        first = int(bad.nonzero()[0, 0]) - (self.input is not None)
        if first < 0:
            assert self.input is not None
            self._raise_input(self.input[0])
        if first < self.count:
            self._raise(first)
        assert self.result is not None
        self._raise_result(self.result[0])

    def _raise(self, call: int) -> None:
        hint = "" if self.immediate else (" (or was given them: noise_sampler or guidance_parts can put NaN in the "
                                          "state, and only on the CPU is the input checked then)")
        raise NonFiniteModelOutput(f"the model returned NaN or inf at {self.describe(call)}{hint}")

    def _raise_state(self, call: int) -> None:
        raise NonFiniteResult(f"the sampler's state held NaN or inf before {self.describe(call)} although x and every "
                              "earlier model output were finite: check noise_sampler, guidance_parts and options too "
                              "large for the latent's dtype")

    @staticmethod
    def _raise_input(x: torch.Tensor) -> None:
        raise NonFiniteInput(f"x, the latent given to the sampler, holds NaN or inf (sample(s) {_bad_samples(x)}): "
                             "check what made it (an fp16 VAE encode, an earlier sampler)")

    @staticmethod
    def _raise_result(state: torch.Tensor) -> None:
        raise NonFiniteResult(f"the sampler's result holds NaN or inf (sample(s) {_bad_samples(state)}) although x "
                              "and every model output were finite: check noise_sampler, guidance_parts and options "
                              "too large for the latent's dtype")


def described(value: Any) -> str:
    """What a host callable returned instead of a tensor of the expected shape: "shape (...)" or "a <type>"."""
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"


def _total(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` in at least float32 (a half sum overflows at 65504): finite iff every element is."""
    return torch.sum(tensor, dtype=working_dtype(tensor.dtype))


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: half and bfloat16 states are integrated in float32."""
    return torch.promote_types(dtype, torch.float32)


class NoiseSource(Protocol):
    """Where stochastic stages get their standard normals (see samplers/noise.py)."""

    def prepare(self, increments: Iterable[tuple[float, float]] = (),
                points: Iterable[tuple[float, int]] = ()) -> None: ...

    def increment(self, sigma: float, sigma_next: float) -> torch.Tensor: ...

    def langevin(self, sigma: float, iteration: int) -> torch.Tensor: ...


class ModelCaller:
    """The sampler contract around each model call, shared by the plan driver and the adaptive loop.

    The model receives the input dtype and sigma[B]; its output must be a tensor of the input's shape, is
    integrated in the working dtype (at least float32), optionally transformed (thresholding), checked for NaN/inf
    (at once on CPU, deferred elsewhere; x and the result too, see `finish`), reported to the callback and counted
    on the progress bar.
    """

    def __init__(self, model: Model, x: torch.Tensor, *, extra_args: dict[str, Any] | None,
                 callback: Callback | None, bar: Any, total: int | None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 sigma_dtype: torch.dtype = torch.float32) -> None:
        self.model = model
        self.extra_args = {} if extra_args is None else extra_args
        self.callback = callback
        self.bar = bar
        self.total = total
        self.transform = transform
        self.in_dtype = x.dtype
        self.work = working_dtype(x.dtype)
        self.s_in = x.new_ones([x.shape[0]], dtype=sigma_dtype)
        self.sigma_dtype = sigma_dtype
        self.device = x.device
        self.calls: list[tuple[int, float]] = []
        self.guard = _FiniteGuard(x.device, self.describe)
        self.guard.check_input(x)

    @property
    def nfe(self) -> int:
        return len(self.calls)

    def describe(self, call: int) -> str:
        step, sigma = self.calls[call]
        return f"model call {call} (step {step}, sigma={sigma:.6g})"

    def sigma_tensor(self, sigma: float) -> torch.Tensor:
        """A 0-d sigma on the device, filled by a kernel (no host-to-device copy, which would synchronise)."""
        return torch.full((), sigma, dtype=self.sigma_dtype, device=self.device)

    def evaluate(self, y: torch.Tensor, sigma: torch.Tensor, sigma_value: float, step: int,
                 sigma_in: torch.Tensor | None = None) -> torch.Tensor:
        """D(y, sigma) in the working dtype, checked; the caller must `notify` next. `sigma_in` is the model's
        sigma[B] when the caller has it already (plans make them all at once), else sigma * ones[B]."""
        call = len(self.calls)
        self.calls.append((step, sigma_value))
        x_in = y if y.dtype == self.in_dtype else y.to(self.in_dtype)
        denoised = self.model(x_in, sigma * self.s_in if sigma_in is None else sigma_in, **self.extra_args)
        if not isinstance(denoised, torch.Tensor) or denoised.shape != y.shape:
            raise ModelOutputError(f"the model returned {described(denoised)} at {self.describe(call)}; expected a "
                                   f"tensor of x's shape {tuple(y.shape)}")
        if denoised.dtype != self.work:
            denoised = denoised.to(self.work)
        if self.transform is not None:
            denoised = self.transform(denoised)
        self.guard.check(denoised, call, x_in)
        return denoised

    def notify(self, y: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor, step: int,
               extra: dict[str, Any] | None = None) -> None:
        """Callback for the latest call (payload keys x, i, sigma, sigma_hat, denoised, step, nfe, total, plus
        `extra`), then one tick of the progress bar."""
        if self.callback is not None:
            call = len(self.calls) - 1
            payload = {"x": y, "i": call, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised,
                       "step": step, "nfe": call + 1, "total": self.total}
            if extra:
                payload.update(extra)
            self.callback(payload)
        self.bar.update(1)

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor, sigma_value: float, step: int,
                 extra: dict[str, Any] | None = None, sigma_in: torch.Tensor | None = None) -> torch.Tensor:
        """evaluate, then notify."""
        denoised = self.evaluate(y, sigma, sigma_value, step, sigma_in)
        self.notify(y, sigma, denoised, step, extra)
        return denoised

    def finish(self, result: torch.Tensor) -> None:
        """The run's last check: x, every model output and `result` finite (raises for the first that is not)."""
        self.guard.check_result(result)
        self.guard.finish()


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
    noise: NoiseSource | None = None,
) -> torch.Tensor:
    """Execute `plan` from state x; `transform` post-processes each data prediction (e.g. thresholding).

    Plans with noise or Langevin stages need `noise`; it is asked for every time the plan will draw at once
    (`prepare`), so the loop stays free of host transfers.
    """
    if plan.stochastic:
        if noise is None:
            raise ValueError("this plan draws noise: pass a noise source")
        noise.prepare(*plan.noise_times())
    program = plan.program()
    nfe = plan.nfe
    # every sigma the model will see, as 0-d values and as sigma[B] rows, in one host-to-device transfer
    sigma_values = torch.tensor([stage.sigma for stage in plan.stages if stage.evaluate],
                                dtype=sigma_dtype).to(x.device)
    sigma_rows = sigma_values[:, None] * x.new_ones([x.shape[0]], dtype=sigma_dtype)
    needs_eps = ["eps" in kinds for kinds in plan.kinds]
    state = x.to(working_dtype(x.dtype))
    slots: list[torch.Tensor | None] = [None] * (2 * nfe)  # slot 2j: D of call j, 2j + 1: its eps
    with progress_bar(total=nfe, disable=disable) as bar:
        caller = ModelCaller(model, x, extra_args=extra_args, callback=callback, bar=bar, total=nfe,
                             transform=transform, sigma_dtype=sigma_dtype)
        for stage, terms, released in program:
            if stage.langevin is not None:
                assert noise is not None
                y = _langevin(state, slots[2 * stage.langevin.index], stage, noise)
            else:
                y = combine(state, stage.a, terms, slots)
                if stage.noise is not None:
                    assert noise is not None
                    z = noise.increment(stage.noise.sigma_from, stage.noise.sigma_to)
                    y = y + z * stage.noise.coef if y is state else y.add_(z, alpha=stage.noise.coef)
            if stage.evaluate:
                call = caller.nfe
                denoised = caller(y, sigma_values[call], stage.sigma, stage.step, sigma_in=sigma_rows[call])
                slots[2 * call] = denoised
                if needs_eps[call]:
                    slots[2 * call + 1] = torch.add(y, denoised, alpha=-stage.alpha).mul_(1.0 / stage.sigma)
            if stage.commit:
                state = y
            for slot in released:
                slots[slot] = None
    caller.finish(state)
    return state.to(x.dtype)


def _langevin(x: torch.Tensor, denoised: torch.Tensor, stage: Stage, noise: NoiseSource) -> torch.Tensor:
    """One Langevin move at the stage's sigma: x + e*score + s_noise*sqrt(2e)*z, score = (alpha D - x)/sigma^2.

    e = 2 (snr sigma)^2 is Song et al.'s signal-to-noise step rule evaluated at the score norm sqrt(d)/sigma of
    noise level sigma. A step fixed per level leaves p_sigma invariant up to the O(e) discretisation bias; the
    rule's per-sample form (e from the current |score| and |z|) makes the step depend on x and z, which
    inflates the variance (by ~30% on the 16-dimensional benchmark mixtures), and its batch form couples samples.
    """
    move = stage.langevin
    assert move is not None
    step = 2.0 * (move.snr * stage.sigma) ** 2
    z = noise.langevin(stage.sigma, move.iteration)
    y = torch.add(x, denoised, alpha=-stage.alpha).mul_(1.0 - step / stage.sigma**2)  # x + e*score - alpha D
    y.add_(denoised, alpha=stage.alpha)
    return y.add_(z, alpha=move.s_noise * math.sqrt(2.0 * step))


def combine(x: torch.Tensor, a: float, terms: tuple[tuple[float, int], ...], slots: list[torch.Tensor | None]
             ) -> torch.Tensor:
    """y = a*x + sum(coef * slots[slot]); returns x itself for the identity stage."""
    if not terms:
        return x if a == 1.0 else x * a
    (coef, slot), *rest = terms
    first = slots[slot]
    assert first is not None
    y = first * coef
    if a != 0.0:
        y.add_(x, alpha=a)
    for coef, slot in rest:
        y.add_(slots[slot], alpha=coef)
    return y
