"""Exponential-integrator weights of the DPM-Solver family, in float64.

From lambda_s to lambda_t = lambda_s + h, with f = D (data prediction, DPM-Solver++) or eps (noise prediction):
  data:  x_t = (sigma_t/sigma_s) x_s + alpha_t * sum_k h phi_{k+1}(-h) g_k
  noise: x_t = (alpha_t/alpha_s) x_s - sigma_t * sum_k h phi_{k+1}(+h) g_k
where g_k = h^k f^(k)(lambda_s) and phi_k(z) = sum_n z^n/(n+k)!. Derivatives come from the polynomial through
model outputs at nodes lambda_s + r_j h, so every update is x_t = a x_s + sum_j b_j f_j.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Prediction = Literal["data", "noise"]
SolverType = Literal["dpmsolver", "taylor"]
ThirdOrder = Literal["reference", "consistent"]

_SERIES_RADIUS = 1.0
_SERIES_TERMS = 30


def phi(k: int, z: float) -> float:
    """phi_k(z) = sum_{n>=0} z^n/(n+k)!; phi_0 = e^z and phi_{k+1}(z) = (phi_k(z) - 1/k!)/z."""
    if abs(z) < _SERIES_RADIUS:
        term = 1.0 / math.factorial(k)
        total = term
        for n in range(1, _SERIES_TERMS):
            term *= z / (n + k)
            total += term
            if abs(term) < 1e-17 * abs(total):
                break
        return total
    value = math.exp(z)
    for j in range(k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value


def derivative_matrix(offsets: Sequence[float]) -> list[list[float]]:
    """Rows k of M with g_k = sum_j M[k][j] f_j: h^k f^(k)(0) of the polynomial through f_j at offsets r_j.

    Solves V g = f with V[j][k] = r_j^k / k! (Gauss-Jordan with partial pivoting; at most a few nodes).
    """
    m = len(offsets)
    if offsets[0] != 0.0:
        raise ValueError("the first node must be the step's start (offset 0)")
    vand = [[r**k / math.factorial(k) for k in range(m)] + [1.0 if i == j else 0.0 for i in range(m)]
            for j, r in enumerate(offsets)]
    for col in range(m):
        pivot = max(range(col, m), key=lambda row: abs(vand[row][col]))
        if vand[pivot][col] == 0.0:
            raise ValueError(f"interpolation nodes {list(offsets)} are not distinct")
        vand[col], vand[pivot] = vand[pivot], vand[col]
        scale = vand[col][col]
        vand[col] = [v / scale for v in vand[col]]
        for row in range(m):
            if row != col and vand[row][col] != 0.0:
                factor = vand[row][col]
                vand[row] = [a - factor * b for a, b in zip(vand[row], vand[col], strict=True)]
    return [row[m:] for row in vand]


def derivative_weights(
    order: int, z: float, solver_type: SolverType = "taylor", third_order: ThirdOrder = "consistent"
) -> list[float]:
    """Weights w_k (k < order) that multiply h*g_k.

    "taylor": the exact w_k = phi_{k+1}(z). "dpmsolver" (order 2): w_1 = phi_1(z)/2, the DPM-Solver form.
    third_order "reference": w_2 = phi_3(z)/2, the weight of the official/diffusers 3M update (order 2 only).
    """
    weights = [phi(k + 1, z) for k in range(order)]
    if order == 2 and solver_type == "dpmsolver":
        weights[1] = weights[0] / 2.0
    if order == 3 and third_order == "reference":
        weights[2] /= 2.0
    return weights


def exponential_step(
    alpha_s: float,
    sigma_s: float,
    alpha_t: float,
    sigma_t: float,
    lambda_s: float,
    lambda_t: float,
    node_lambdas: Sequence[float],
    prediction: Prediction,
    solver_type: SolverType = "taylor",
    third_order: ThirdOrder = "consistent",
    eta: float = 0.0,
) -> tuple[float, list[float]]:
    """(a, [b_j]) with x_t = a x_s + sum_j b_j f_j, f_j the prediction at node_lambdas[j] (node 0 = lambda_s).

    Requires finite lambda_s and lambda_t; use `first_order_data_step` at sigma = 0 or alpha = 0.
    `eta` > 0 (data prediction only) gives the deterministic part of the SDE step, see `sde_noise_std`.
    """
    h = lambda_t - lambda_s
    offsets = [(lam - lambda_s) / h for lam in node_lambdas]
    order = len(offsets)
    kappa = 1.0 + eta
    if prediction == "data":
        a, c, z = sigma_t / sigma_s * math.exp(-eta * h), alpha_t * kappa, -kappa * h
    else:
        if eta != 0.0:
            raise ValueError("the SDE step (eta > 0) is written for data prediction only")
        a, c, z = alpha_t / alpha_s, -sigma_t, h
    weights = derivative_weights(order, z, solver_type, third_order)
    matrix = derivative_matrix(offsets)
    b = [c * h * sum(weights[k] * matrix[k][j] for k in range(order)) for j in range(order)]
    return a, b


def sde_noise_std(sigma_t: float, h: float, eta: float) -> float:
    """Standard deviation sigma_t sqrt(1 - e^(-2 eta h)) of the fresh noise of an SDE step of length h in lambda.

    The SDE step with data prediction (eta >= 0, kappa = 1 + eta) is the exact solution of the linear SDE
    whose drift pulls x/alpha towards D at rate kappa per unit lambda, given D(lambda) on the step:
      x_t = (sigma_t/sigma_s) e^(-eta h) x_s + alpha_t int_0^h kappa e^(-kappa(h-u)) D(lambda_s+u) du
            + sigma_t sqrt(1 - e^(-2 eta h)) z.
    With D expanded as sum_k u^k/k! D^(k) the integral is alpha_t sum_k h kappa phi_(k+1)(-kappa h) g_k,
    g_k = h^k D^(k): the ODE weights with phi_(k+1)(-h) replaced by kappa phi_(k+1)(-kappa h), which is what
    `exponential_step(..., eta=eta)` returns. eta = 0 is the ODE step exactly.
    """
    if eta == 0.0 or sigma_t == 0.0:
        return 0.0
    if math.isinf(h):
        return sigma_t
    return sigma_t * math.sqrt(-math.expm1(-2.0 * eta * h))


def first_order_data_step(alpha_s: float, sigma_s: float, alpha_t: float, sigma_t: float) -> tuple[float, float]:
    """DDIM written with D: x_t = (sigma_t/sigma_s) x_s + (alpha_t - sigma_t alpha_s/sigma_s) D_s.

    Finite where lambda is infinite: at sigma_t = 0 it gives x_t = D_s, from alpha_s = 0 (flow sigma = 1)
    it gives x_t = sigma_t x_s + alpha_t D_s.
    """
    ratio = sigma_t / sigma_s
    return ratio, alpha_t - ratio * alpha_s
