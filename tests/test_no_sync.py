"""No host round trip inside the step loop of a planned sampler.

Before the loop a sampler reads the grid (`sigmas.tolist()`), builds its plan, and moves every sigma and every
noise key it will need to the device in one transfer each; after the loop the deferred NaN check reads one flag.
Between the first model call and that check nothing may read a device value on the host or copy host data to
the device: on an accelerator each such call would stall the queue once per step.

On CPU this is proven by counting calls of every Tensor method that reads values on the host (item, tolist,
__bool__, __float__, __int__, __index__, cpu, numpy), of torch.cuda.synchronize, and of tensor creation from
host data (torch.tensor, torch.as_tensor: a host-to-device copy on an accelerator), with the NaN guard in its
accelerator (deferred) mode. With CUDA the same runs go through torch.cuda.set_sync_debug_mode("error"), which
raises on any synchronising CUDA call, and are compared with the CPU results.

Exception: the adaptive samplers decide each step on the host (accept or reject from the error norm), so they
read one value per attempt by design; `test_adaptive_samplers_read_one_value_per_attempt` pins that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from samplers import SAMPLERS, driver, grids
from samplers.registry import SamplerEntry

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")
HOST_DATA = ("tensor", "as_tensor")
PLANNED = [name for name, entry in SAMPLERS.items() if type(entry).plan is SamplerEntry.plan]
ADAPTIVE = [name for name, entry in SAMPLERS.items() if entry.spec is not None and entry.spec.structure == "adaptive"]
CASES: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in PLANNED] + [
    ("dpm_solver_pp_pc", {"corrector": "langevin", "corrector_steps": 2}),
    ("dpm_solver_pp_2m", {"thresholding": True}),
    ("dpm_solver_pp_3m_sde", {"schedule": "flow"}),
    ("dpm_solver_pp_sde", {"schedule": "flow"}),
    ("dpm_solver_2", {"schedule": "flow"}),
]


class HostCalls:
    """Counts host reads and host-data tensor creations while armed (armed from the first model call until the
    driver's final NaN check)."""

    def __init__(self) -> None:
        self.armed = False
        self.calls: list[str] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.armed:
                self.calls.append(name)
            return fn(*args, **kwargs)

        return counted


@contextlib.contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostCalls]:
    calls = HostCalls()
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, calls.wrap(f"Tensor.{name}", getattr(torch.Tensor, name)))
    for name in HOST_DATA:
        monkeypatch.setattr(torch, name, calls.wrap(f"torch.{name}", getattr(torch, name)))
    monkeypatch.setattr(torch.cuda, "synchronize", calls.wrap("torch.cuda.synchronize", torch.cuda.synchronize))
    monkeypatch.setattr(driver._FiniteGuard, "immediate_on", ())  # the accelerator path, on CPU
    finish = driver._FiniteGuard.finish

    def disarm_then_finish(guard: driver._FiniteGuard) -> None:
        calls.armed = False
        finish(guard)

    monkeypatch.setattr(driver._FiniteGuard, "finish", disarm_then_finish)
    yield calls


def armed_model(calls: HostCalls) -> Callable[..., torch.Tensor]:
    def model(x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        calls.armed = True
        return x * 0.5 + sigma.reshape(-1, *([1] * (x.dim() - 1))) * 0.01

    return model


def grid(options: dict[str, Any], device: str = "cpu") -> torch.Tensor:
    if options.get("schedule") == "flow":
        sigmas = [1.0, 0.9, 0.75, 0.6, 0.45, 0.3, 0.15, 0.05, 0.0]
        return torch.tensor(sigmas, dtype=torch.float32, device=device)
    return grids.karras(8, 0.03, 14.6).to(torch.float32).to(device)


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}{'-' + '-'.join(o) if o else ''}" for n, o in CASES])
def test_step_loop_makes_no_host_round_trip(monkeypatch: pytest.MonkeyPatch, name: str,
                                            options: dict[str, Any]) -> None:
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigmas = grid(options)
    with counting(monkeypatch) as calls:
        out = SAMPLERS[name](armed_model(calls), x, sigmas, disable=True, **options)
    assert calls.calls == [], f"{name} read the device on the host inside its loop: {calls.calls}"
    assert torch.isfinite(out).all()


def test_the_counter_catches_a_host_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The instrument itself: a model that reads a value inside the loop is caught, once per call."""
    x = torch.randn(1, 4, 8, 8)
    sigmas = grids.karras(5, 0.03, 14.6)
    with counting(monkeypatch) as calls:
        inner = armed_model(calls)

        def reading(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = inner(x, sigma)
            assert float(sigma[0]) > 0.0
            return out

        SAMPLERS["dpm_solver_pp_2m"](reading, x, sigmas, disable=True)
    assert calls.calls.count("Tensor.__float__") == 5


def test_deferred_guard_still_names_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver._FiniteGuard, "immediate_on", ())
    x = torch.randn(1, 4, 8, 8)
    seen = []

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(1)
        return x * (float("nan") if len(seen) == 3 else 0.5)

    with pytest.raises(driver.NonFiniteModelOutput, match=r"model call 2 \(step 2, sigma="):
        SAMPLERS["dpm_solver_pp_3m"](model, x, grids.karras(6, 0.03, 14.6), disable=True)
    assert len(seen) == 6  # deferred: the run finishes, then the check names the first bad call


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_samplers_read_one_value_per_attempt(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The documented exception: an adaptive step is accepted or rejected on the host."""
    x = torch.randn(1, 4, 8, 8)
    info: dict[str, Any] = {}
    with counting(monkeypatch) as calls:
        SAMPLERS[name](armed_model(calls), x, grids.karras(8, 0.03, 14.6), disable=True, info=info)
    attempts = info["accepted"] + info["rejected"]
    assert attempts > 0 and calls.calls == ["Tensor.__float__"] * attempts  # the error norm, nothing else


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}{'-' + '-'.join(o) if o else ''}" for n, o in CASES])
def test_cuda_step_loop_never_synchronises(name: str, options: dict[str, Any]) -> None:
    """On CUDA: no synchronising call between the first model call and the final check, and the same result
    as on CPU (device-independent noise) up to float rounding."""
    x = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    finish = driver._FiniteGuard.finish
    state = {"armed": False}

    def model(x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        if x.is_cuda and not state["armed"]:
            torch.cuda.set_sync_debug_mode("error")
            state["armed"] = True
        return x * 0.5 + sigma.reshape(-1, *([1] * (x.dim() - 1))) * 0.01

    def disarm_then_finish(guard: driver._FiniteGuard) -> None:
        torch.cuda.set_sync_debug_mode("default")
        finish(guard)

    cpu = SAMPLERS[name](model, x, grid(options), disable=True, **options)
    try:
        driver._FiniteGuard.finish = disarm_then_finish  # type: ignore[method-assign]
        gpu = SAMPLERS[name](model, x.cuda(), grid(options, "cuda"), disable=True, **options)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        driver._FiniteGuard.finish = finish  # type: ignore[method-assign]
    assert state["armed"]
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
