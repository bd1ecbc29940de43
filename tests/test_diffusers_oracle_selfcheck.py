"""Sanity checks of the diffusers oracle harness itself (tests/diffusers_oracle.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers_oracle import OracleTrace, run_multistep, run_singlestep

RUNNERS = {"multistep": run_multistep, "singlestep": run_singlestep}
# multistep rounds the state to float32 at every step (diffusers' cast); singlestep stays float64.
RTOL = {"multistep": 1e-6, "singlestep": 1e-12}


def nonlinear_denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.tanh(x) / (1.0 + sigma) + 0.1 * torch.sin(3.0 * x)


def alpha_of(family: str, sigma: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(sigma) if family == "ve" else 1.0 - sigma


def ddim_reference(denoiser, x: torch.Tensor, sigmas: torch.Tensor, family: str) -> torch.Tensor:
    """x_{i+1} = (s_{i+1}/s_i) x_i + alpha_{i+1} (1 - exp(-(lambda_{i+1} - lambda_i))) D_i, in float64."""
    x = x.to(torch.float64)
    alphas = alpha_of(family, sigmas)
    lambdas = torch.log(alphas) - torch.log(sigmas)  # +inf at sigma = 0
    for i in range(len(sigmas) - 1):
        d = denoiser(x, float(sigmas[i]))
        h = lambdas[i + 1] - lambdas[i]
        x = (sigmas[i + 1] / sigmas[i]) * x + alphas[i + 1] * (1.0 - torch.exp(-h)) * d
    return x


@pytest.fixture
def x_init() -> torch.Tensor:
    return torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("family", ["ve", "flow"])
@pytest.mark.parametrize("final_sigmas_type", ["zero", "sigma_min"])
@pytest.mark.parametrize("kind", ["multistep", "singlestep"])
def test_order1_is_ddim(kind: str, family: str, final_sigmas_type: str, x_init: torch.Tensor) -> None:
    trace = OracleTrace()
    scale = 14.6 if family == "ve" else 1.0
    sigmas, x = RUNNERS[kind](nonlinear_denoiser, x_init * scale, family=family, num_steps=8, solver_order=1,
                              final_sigmas_type=final_sigmas_type, trace=trace)
    assert sigmas.dtype == torch.float64 and x.dtype == torch.float64
    assert trace.orders == [1] * 8
    assert trace.call_sigmas == sigmas[:-1].tolist()
    assert (sigmas[-1] == 0) == (final_sigmas_type == "zero")
    ref = ddim_reference(nonlinear_denoiser, x_init * scale, sigmas, family)
    torch.testing.assert_close(x, ref, rtol=RTOL[kind], atol=RTOL[kind])


@pytest.mark.parametrize("family", ["ve", "flow"])
@pytest.mark.parametrize("kind", ["multistep", "singlestep"])
def test_noise_prediction_order1_is_ddim(kind: str, family: str, x_init: torch.Tensor) -> None:
    """algorithm_type='dpmsolver' (needs final 'sigma_min'; flow then uses prediction_type 'sample')."""
    scale = 14.6 if family == "ve" else 1.0
    trace = OracleTrace()
    sigmas, x = RUNNERS[kind](nonlinear_denoiser, x_init * scale, family=family, algorithm_type="dpmsolver",
                              solver_order=1, final_sigmas_type="sigma_min", num_steps=6, trace=trace)
    assert trace.prediction_type == ("epsilon" if family == "ve" else "sample")
    ref = ddim_reference(nonlinear_denoiser, x_init * scale, sigmas, family)
    torch.testing.assert_close(x, ref, rtol=10 * RTOL[kind], atol=10 * RTOL[kind])


def test_zero_final_rejected_for_noise_prediction() -> None:
    with pytest.raises(ValueError, match="final_sigmas_type"):
        run_multistep(nonlinear_denoiser, torch.ones(1, 1), algorithm_type="dpmsolver",
                      final_sigmas_type="zero")


def test_sigma_grids() -> None:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    abar = torch.cumprod(1.0 - betas, dim=0)
    train_sigmas = ((1 - abar) / abar) ** 0.5
    t = np.linspace(0, 999, 11).round()[::-1][:-1].astype(np.int64)
    expected_ve = torch.cat([train_sigmas[t.copy()], torch.zeros(1)]).to(torch.float64)
    sigmas, _ = run_multistep(nonlinear_denoiser, torch.zeros(1, 1), num_steps=10)
    assert torch.equal(sigmas, expected_ve)

    s = 1.0 - np.linspace(1, 1 / 1000, 11)
    shifted = np.flip(3.0 * s / (1 + 2.0 * s))[:-1]
    expected_flow = np.concatenate([shifted, [float(train_sigmas[0])]]).astype(np.float32).astype(np.float64)
    sigmas, _ = run_singlestep(nonlinear_denoiser, torch.zeros(1, 1), family="flow", num_steps=10)
    assert torch.equal(sigmas, torch.from_numpy(expected_flow))

    sigmas, _ = run_multistep(nonlinear_denoiser, torch.zeros(1, 1), use_karras_sigmas=True, num_steps=10)
    assert sigmas[0] == train_sigmas[-1] and sigmas[-2] == train_sigmas[0] and sigmas[-1] == 0


@pytest.mark.parametrize(
    ("order", "n", "lof", "final", "expected"),
    [
        (2, 8, True, "sigma_min", [1, 2, 1, 2, 1, 2, 1, 1]),
        (2, 7, True, "sigma_min", [1, 2, 1, 2, 1, 2, 1]),
        (2, 8, False, "sigma_min", [1, 2] * 4),
        (2, 7, False, "sigma_min", [1, 2, 1, 2, 1, 2, 1]),  # forced lower_order_final
        (3, 9, True, "sigma_min", [1, 2, 3, 1, 2, 3, 1, 2, 1]),
        (3, 7, True, "sigma_min", [1, 2, 3, 1, 2, 3, 1]),
        (3, 8, True, "sigma_min", [1, 2, 3, 1, 2, 3, 1, 2]),
        (3, 8, True, "zero", [1, 2, 3, 1, 2, 3, 1, 1]),
        (3, 9, False, "sigma_min", [1, 2, 3] * 3),
    ],
)
def test_singlestep_orders(order: int, n: int, lof: bool, final: str, expected: list[int]) -> None:
    trace = OracleTrace()
    run_singlestep(nonlinear_denoiser, torch.ones(1, 1), num_steps=n, solver_order=order,
                   lower_order_final=lof, final_sigmas_type=final, trace=trace)
    assert trace.orders == expected


@pytest.mark.parametrize(
    ("order", "n", "lof", "final", "expected"),
    [
        (3, 8, True, "zero", [1, 2, 3, 3, 3, 3, 2, 1]),
        (3, 8, False, "sigma_min", [1, 2, 3, 3, 3, 3, 3, 3]),
        (3, 8, False, "zero", [1, 2, 3, 3, 3, 3, 3, 1]),
        (3, 15, True, "sigma_min", [1, 2] + [3] * 13),  # lower_order_final only acts for N < 15
        (3, 15, True, "zero", [1, 2] + [3] * 12 + [1]),
        (2, 14, True, "sigma_min", [1] + [2] * 12 + [1]),
    ],
)
def test_multistep_orders(order: int, n: int, lof: bool, final: str, expected: list[int]) -> None:
    trace = OracleTrace()
    run_multistep(nonlinear_denoiser, torch.ones(1, 1), num_steps=n, solver_order=order,
                  lower_order_final=lof, final_sigmas_type=final, trace=trace)
    assert trace.orders == expected


C = 0.7  # data std of the Gaussian toy problem


def gaussian_denoiser(family: str):
    def d(x: torch.Tensor, sigma: float) -> torch.Tensor:
        a = 1.0 if family == "ve" else 1.0 - sigma
        return a * C**2 / (a**2 * C**2 + sigma**2) * x

    return d


def exact_gaussian(family: str, x0: torch.Tensor, s0: float, s1: float) -> torch.Tensor:
    a0, a1 = (1.0, 1.0) if family == "ve" else (1.0 - s0, 1.0 - s1)
    return x0 * math.sqrt(a1**2 * C**2 + s1**2) / math.sqrt(a0**2 * C**2 + s0**2)


@pytest.mark.parametrize(("family", "num_steps", "karras"), [("ve", 24, True), ("flow", 48, False)])
@pytest.mark.parametrize("kind", ["multistep", "singlestep"])
def test_higher_order_is_more_accurate(kind: str, family: str, num_steps: int, karras: bool,
                                       x_init: torch.Tensor) -> None:
    errors = []
    for order in (1, 2, 3):
        sigmas, x = RUNNERS[kind](gaussian_denoiser(family), x_init, family=family, num_steps=num_steps,
                                  solver_order=order, use_karras_sigmas=karras)
        ref = exact_gaussian(family, x_init, float(sigmas[0]), float(sigmas[-1]))
        errors.append(float((x - ref).abs().max() / ref.abs().max()))
    assert errors[1] < 0.5 * errors[0] and errors[2] < errors[1], errors


@pytest.mark.parametrize("kind", ["multistep", "singlestep"])
def test_float32_input_is_upcast(kind: str, x_init: torch.Tensor) -> None:
    x32 = (x_init * 14.6).to(torch.float32)
    _, a = RUNNERS[kind](nonlinear_denoiser, x32, solver_order=2)
    _, b = RUNNERS[kind](nonlinear_denoiser, x32.double(), solver_order=2)
    assert a.dtype == torch.float64 and torch.equal(a, b)
