"""Quadrature exactness of every DPM-Solver update rule.

With f the model's prediction (D for data prediction, eps for noise prediction), one step from lambda_s to
lambda_t = lambda_s + h of the probability-flow ODE is exactly
  data:  x_t = (sigma_t/sigma_s) x_s + sigma_t * Integral_{lambda_s}^{lambda_t} e^lambda D(lambda) dlambda
  noise: x_t = (alpha_t/alpha_s) x_s - alpha_t * Integral_{lambda_s}^{lambda_t} e^-lambda eps(lambda) dlambda.
An update of order k interpolates f through k nodes, so it must integrate every polynomial f of degree < k
exactly, and for degree k its local error must shrink like h^(k+1). These tests check that, first on
`exponential_step` with every node layout the samplers use, then through the full samplers with a model
whose prediction depends on lambda only (so the ODE solution is the integral formula itself).

The reference integrals are independent of samplers/: with v = (lambda - lambda_s)/h,
  Integral e^(c lambda) v^n dlambda = e^(c lambda_s) h J_n(c h),  J_n(z) = Integral_0^1 e^(z v) v^n dv
and J_n is summed from its power series (checked against scipy's quad below).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from numpy.polynomial import Polynomial
from scipy.integrate import quad

from samplers import FLOW, SAMPLERS, VE, NoiseSchedule
from samplers.coefficients import exponential_step

EXACT_RTOL = 1e-12
STEP_SIZES = (0.05, 0.2, 0.5, 1.0, 2.0)
SLOPE_STEP_SIZES = tuple(float(h) for h in np.geomspace(0.02, 0.32, 5))
SCHEDULES: dict[str, NoiseSchedule] = {"ve": VE, "flow": FLOW}
START_LAMBDA = {"ve": -1.0, "flow": -0.5}
PREDICTIONS = ("data", "noise")

# Node offsets r_j (node lambda = lambda_s + r_j h) of each update rule; node 0 is the step's start.
SINGLESTEP_2 = [(0.0, r) for r in (0.5, 0.3, 2.0 / 3.0, 0.9)]
SINGLESTEP_3 = [(0.0, 1.0 / 3.0, 2.0 / 3.0), (0.0, 0.25, 0.7), (0.0, 0.4, 0.8)]
MULTISTEP_2 = [(0.0, -r0) for r0 in (0.5, 1.0, 2.0)]
MULTISTEP_3 = [(0.0, -r0, -r0 - r1) for r0, r1 in ((1.0, 1.0), (0.5, 0.8), (2.0, 1.5), (0.7, 0.7))]
EXACT_RULES: list[tuple[str, tuple[float, ...]]] = (
    [("singlestep2", o) for o in SINGLESTEP_2]
    + [("singlestep3", o) for o in SINGLESTEP_3]
    + [("multistep2", o) for o in MULTISTEP_2]
    + [("multistep3", o) for o in MULTISTEP_3]
)


def _rule_id(rule: tuple[str, tuple[float, ...]]) -> str:
    name, offsets = rule
    return name + "[" + ",".join(f"{r:.3g}" for r in offsets) + "]"


def moment(n: int, z: float) -> float:
    """J_n(z) = Integral_0^1 e^(z v) v^n dv = sum_m z^m / (m! (n + m + 1)), summed with fsum (|z| <= ~4)."""
    terms, term = [], 1.0
    for m in range(80):
        terms.append(term / (n + m + 1))
        term *= z / (m + 1)
    return math.fsum(terms)


def phi_ref(k: int, z: float) -> float:
    """phi_k(z) = Integral_0^1 e^((1-t) z) t^(k-1)/(k-1)! dt = e^z J_(k-1)(-z)/(k-1)!, independent of samplers/."""
    return math.exp(z) * moment(k - 1, -z) / math.factorial(k - 1)


class Step:
    """One step lambda_s -> lambda_s + h under a schedule, with the exact integral weights for monomials v^n."""

    def __init__(self, schedule: NoiseSchedule, lambda_s: float, h: float) -> None:
        self.lambda_s, self.h = lambda_s, h
        self.lambda_t = lambda_s + h
        self.sigma_s, self.sigma_t = schedule.sigma_at(lambda_s), schedule.sigma_at(self.lambda_t)
        self.alpha_s, self.alpha_t = schedule.alpha(self.sigma_s), schedule.alpha(self.sigma_t)

    def exact_monomial(self, n: int, prediction: str) -> float:
        """Exact increment of x_t for f = v^n, v = (lambda - lambda_s)/h."""
        if prediction == "data":
            return self.sigma_t * (self.alpha_s / self.sigma_s) * self.h * moment(n, self.h)
        return -self.alpha_t * (self.sigma_s / self.alpha_s) * self.h * moment(n, -self.h)

    def exact_poly(self, coefs: Sequence[float], prediction: str) -> float:
        """Exact increment for f(lambda) = sum_k coefs[k] lambda^k (re-expanded in v)."""
        in_v = Polynomial(list(coefs))(Polynomial([self.lambda_s, self.h])).coef
        return math.fsum(c * self.exact_monomial(n, prediction) for n, c in enumerate(in_v))

    def apply(
        self, offsets: Sequence[float], f: Callable[[float], float], prediction: str,
        solver_type: str = "taylor", third_order: str = "consistent", x_s: float = 0.0,
    ) -> float:
        """x_t from one `exponential_step` with nodes lambda_s + r h, f evaluated at the nodes."""
        nodes = [self.lambda_s + r * self.h for r in offsets]
        a, b = exponential_step(self.alpha_s, self.sigma_s, self.alpha_t, self.sigma_t, self.lambda_s,
                                self.lambda_t, nodes, prediction, solver_type, third_order)  # type: ignore[arg-type]
        return a * x_s + math.fsum(bj * f(lam) for bj, lam in zip(b, nodes, strict=True))

    def monomial(self, n: int) -> Callable[[float], float]:
        return lambda lam: ((lam - self.lambda_s) / self.h) ** n

    def ratio(self, prediction: str) -> float:
        """The exact factor multiplying x_s."""
        return self.sigma_t / self.sigma_s if prediction == "data" else self.alpha_t / self.alpha_s


def _order(rule: str) -> int:
    return int(rule[-1])


def _superconvergence(offsets: Sequence[float]) -> int:
    """Nodes (0, 2/3) are the two-point Radau rule: exact for quadratics under a constant weight, so with the
    weight e^(-+h(1-v)) = 1 + O(h) the deg-2 local error is O(h^4), one order better (why DPM-Solver-3 ends
    its step with r2 = 2/3)."""
    return 1 if len(offsets) == 2 and math.isclose(offsets[1], 2.0 / 3.0) else 0


def _slope(hs: Sequence[float], errors: Sequence[float]) -> float:
    return float(np.polyfit(np.log(hs), np.log(np.abs(errors)), 1)[0])


# --- the reference itself --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3])
@pytest.mark.parametrize("z", [-2.0, -0.5, -0.05, 0.05, 0.5, 2.0])
def test_reference_moment_matches_quad(n: int, z: float) -> None:
    """The power-series J_n agrees with adaptive quadrature, so the exact integrals below are trustworthy."""
    value, _ = quad(lambda v: math.exp(z * v) * v**n, 0.0, 1.0, epsabs=0.0, epsrel=1e-13)
    assert moment(n, z) == pytest.approx(value, rel=1e-13)


# --- exponential_step directly ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("rule", EXACT_RULES, ids=_rule_id)
def test_rule_exact_below_its_order(family: str, prediction: str, rule: tuple[str, tuple[float, ...]]) -> None:
    """Taylor singlestep 2/3, multistep 2 and multistep 3 'consistent' integrate every f with deg < order exactly.

    Checked monomial by monomial in v (each has a positive integral, so the relative test is sharp), together
    with the exact factor on x_s.
    """
    name, offsets = rule
    for h in STEP_SIZES:
        step = Step(SCHEDULES[family], START_LAMBDA[family], h)
        for n in range(_order(name)):
            got = step.apply(offsets, step.monomial(n), prediction, x_s=0.7)
            want = step.ratio(prediction) * 0.7 + step.exact_monomial(n, prediction)
            assert got == pytest.approx(want, rel=EXACT_RTOL, abs=0.0), f"h={h}, deg {n}"


@pytest.mark.parametrize("family", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("rule", EXACT_RULES, ids=_rule_id)
def test_rule_exact_for_polynomial_in_lambda(family: str, prediction: str, rule: tuple[str, tuple[float, ...]]
                                             ) -> None:
    """A generic polynomial in lambda itself (not centred at lambda_s), reference by scipy quad."""
    name, offsets = rule
    coefs = [0.8, -1.3, 0.45][: _order(name)]
    poly = Polynomial(coefs)
    for h in STEP_SIZES:
        step = Step(SCHEDULES[family], START_LAMBDA[family], h)
        if prediction == "data":
            integral, _ = quad(lambda lam: math.exp(lam) * poly(lam), step.lambda_s, step.lambda_t,
                               epsabs=0.0, epsrel=1e-13)
            want = step.sigma_t * integral
        else:
            integral, _ = quad(lambda lam: math.exp(-lam) * poly(lam), step.lambda_s, step.lambda_t,
                               epsabs=0.0, epsrel=1e-13)
            want = -step.alpha_t * integral
        got = step.apply(offsets, lambda lam: float(poly(lam)), prediction)
        assert got == pytest.approx(want, rel=1e-11, abs=0.0), f"h={h}"
        assert step.exact_poly(coefs, prediction) == pytest.approx(want, rel=1e-12, abs=0.0)


@pytest.mark.parametrize("family", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("rule", EXACT_RULES, ids=_rule_id)
def test_rule_local_error_order(family: str, prediction: str, rule: tuple[str, tuple[float, ...]]) -> None:
    """For deg f = order the local error is O(h^(order+1)): fitted slope over h in [0.02, 0.32] within 0.2
    (O(h^(order+2)) for the Radau nodes (0, 2/3)).

    f is a full polynomial in lambda of degree `order` (not centred at lambda_s), so the slope also relies on
    the lower-degree part being integrated exactly.
    """
    name, offsets = rule
    order = _order(name)
    coefs = [0.6, -0.9, 1.1, -0.7][: order + 1]
    poly = Polynomial(coefs)
    errors = []
    for h in SLOPE_STEP_SIZES:
        step = Step(SCHEDULES[family], START_LAMBDA[family], h)
        errors.append(step.apply(offsets, lambda lam: float(poly(lam)), prediction)
                      - step.exact_poly(coefs, prediction))
    assert all(abs(e) > 1e-13 for e in errors)
    assert _slope(SLOPE_STEP_SIZES, errors) == pytest.approx(order + 1 + _superconvergence(offsets), abs=0.2)


@pytest.mark.parametrize("family", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("offsets", SINGLESTEP_2 + MULTISTEP_2, ids=lambda o: f"r={o[1]:.3g}")
def test_dpmsolver_second_order_form(family: str, prediction: str, offsets: tuple[float, float]) -> None:
    """solver_type 'dpmsolver' weighs the first derivative by phi_1/2 instead of phi_2.

    It is exact for constants but not for linear f: the error for f = v is exactly c h (phi_1(z)/2 - phi_2(z))
    (c = alpha_t, z = -h for data; c = -sigma_t, z = h for noise), of relative size ~h/6, and for f linear in
    lambda it is O(h^3): exact only to the next order as h -> 0, which keeps the rule second order.
    """
    schedule = SCHEDULES[family]
    for h in STEP_SIZES:
        step = Step(schedule, START_LAMBDA[family], h)
        got0 = step.apply(offsets, step.monomial(0), prediction, solver_type="dpmsolver")
        assert got0 == pytest.approx(step.exact_monomial(0, prediction), rel=EXACT_RTOL, abs=0.0)
        exact1 = step.exact_monomial(1, prediction)
        error = step.apply(offsets, step.monomial(1), prediction, solver_type="dpmsolver") - exact1
        c, z = (step.alpha_t, -h) if prediction == "data" else (-step.sigma_t, h)
        predicted = c * h * (phi_ref(1, z) / 2.0 - phi_ref(2, z))
        assert error == pytest.approx(predicted, rel=1e-10, abs=0.0), f"h={h}"
        assert abs(error / exact1) > h / 20.0, f"h={h}: the dpmsolver form should not be exact for deg 1"
    line = Polynomial([0.4, 1.7])
    errors = []
    for h in SLOPE_STEP_SIZES:
        step = Step(schedule, START_LAMBDA[family], h)
        got = step.apply(offsets, lambda lam: float(line(lam)), prediction, solver_type="dpmsolver")
        errors.append(got - step.exact_poly(list(line.coef), prediction))
    assert _slope(SLOPE_STEP_SIZES, errors) == pytest.approx(3.0, abs=0.2)


@pytest.mark.parametrize("family", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("offsets", MULTISTEP_3, ids=lambda o: f"r={o[1]:.3g},{o[2]:.3g}")
def test_reference_third_order_halves_second_derivative(family: str, prediction: str,
                                                         offsets: tuple[float, float, float]) -> None:
    """3M 'reference' (official DPM-Solver/diffusers) weighs g_2 = h^2 f'' by phi_3/2 instead of phi_3.

    It is exact for deg <= 1 but not for deg 2: for f = v^2 (Taylor term g_2 v^2/2 with g_2 = 2, whose exact
    contribution c h phi_3(z) g_2 is the whole integral) it returns exactly half the integral; for any quadratic
    the error is -1/2 of that W2 term. The local error is then O(h^3): a second-order method.
    """
    schedule = SCHEDULES[family]
    quadratic = Polynomial([0.3, -0.8, 1.2])
    for h in STEP_SIZES:
        step = Step(schedule, START_LAMBDA[family], h)
        for n in (0, 1):
            got = step.apply(offsets, step.monomial(n), prediction, third_order="reference")
            assert got == pytest.approx(step.exact_monomial(n, prediction), rel=EXACT_RTOL, abs=0.0)
        exact2 = step.exact_monomial(2, prediction)
        c, z = (step.alpha_t, -h) if prediction == "data" else (-step.sigma_t, h)
        w2_term = c * h * phi_ref(3, z) * 2.0
        assert w2_term == pytest.approx(exact2, rel=1e-12)
        got2 = step.apply(offsets, step.monomial(2), prediction, third_order="reference")
        assert got2 - exact2 == pytest.approx(-0.5 * w2_term, rel=1e-9, abs=0.0), f"h={h}"
        assert abs(got2 - exact2) > 0.4 * abs(exact2)
        a2_in_v = quadratic(Polynomial([step.lambda_s, h])).coef[2]
        got = step.apply(offsets, lambda lam: float(quadratic(lam)), prediction, third_order="reference")
        error = got - step.exact_poly(list(quadratic.coef), prediction)
        assert error == pytest.approx(-0.5 * a2_in_v * w2_term, rel=1e-8)
    errors = []
    for h in SLOPE_STEP_SIZES:
        step = Step(schedule, START_LAMBDA[family], h)
        got = step.apply(offsets, lambda lam: float(quadratic(lam)), prediction, third_order="reference")
        errors.append(got - step.exact_poly(list(quadratic.coef), prediction))
    assert _slope(SLOPE_STEP_SIZES, errors) == pytest.approx(3.0, abs=0.2)


# --- through the samplers --------------------------------------------------------------------------------------

DIMS = 3
# Per-dimension polynomial coefficients in lambda (constant, linear, quadratic, cubic).
POLY_COEFS = np.array([[0.7, -0.4, 0.25, -0.06], [-1.2, 0.9, -0.3, 0.08], [0.3, 0.5, 0.6, 0.1]])
GRIDS = {
    "ve": [5.0, 3.1, 1.7, 1.2, 0.55, 0.2],
    "flow": [0.9, 0.75, 0.55, 0.4, 0.22, 0.1],
}
FAST_GRIDS = {
    "ve": [5.0, 4.0, 3.1, 2.3, 1.7, 1.2, 0.8, 0.55, 0.2],
    "flow": [0.9, 0.83, 0.75, 0.65, 0.55, 0.4, 0.3, 0.22, 0.1],
}


def _prediction(name: str) -> str:
    return "data" if "_pp_" in name else "noise"


def lambda_polynomial_model(schedule: NoiseSchedule, coefs: np.ndarray, prediction: str
                            ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A model whose prediction depends on lambda only: D = p(lambda), or eps = p(lambda) for noise samplers.

    For noise prediction the model returns D = (x - sigma q)/alpha, which makes the sampler's eps = q(lambda).
    """

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.dtype == torch.float64 and bool((sigma == sigma[0]).all())
        s = float(sigma[0])
        lam = schedule.lambda_(s)
        values = torch.tensor([float(Polynomial(row)(lam)) for row in coefs], dtype=x.dtype)
        if prediction == "data":
            return values.expand_as(x).clone()
        return (x - s * values) / schedule.alpha(s)

    return model


def exact_transition(schedule: NoiseSchedule, coefs: np.ndarray, prediction: str, sigma_s: float, sigma_t: float,
                     x_s: torch.Tensor) -> torch.Tensor:
    """The exact ODE solution at sigma_t from x_s at sigma_s for a prediction p(lambda)."""
    step = Step(schedule, schedule.lambda_(sigma_s), schedule.lambda_(sigma_t) - schedule.lambda_(sigma_s))
    increment = torch.tensor([step.exact_poly(list(row), prediction) for row in coefs], dtype=x_s.dtype)
    return step.ratio(prediction) * x_s + increment


def grid_states(name: str, model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: list[float],
                **options: Any) -> tuple[list[float], list[torch.Tensor], list[int]]:
    """Run a sampler; return the sigmas where a step starts or ends, the state there, and each step's call count."""
    starts: dict[int, tuple[float, torch.Tensor]] = {}
    calls: dict[int, int] = {}

    def callback(info: dict[str, Any]) -> None:
        step = int(info["step"])
        starts.setdefault(step, (float(info["sigma"]), info["x"].clone()))
        calls[step] = calls.get(step, 0) + 1

    out = SAMPLERS[name](model, x, torch.tensor(sigmas, dtype=torch.float64), callback=callback, disable=True,
                         **options)
    steps = sorted(starts)
    assert steps == list(range(len(steps)))
    return ([starts[i][0] for i in steps] + [sigmas[-1]], [starts[i][1] for i in steps] + [out],
            [calls[i] for i in steps])


def _start(batch: int = 2) -> torch.Tensor:
    return torch.linspace(-1.0, 1.5, batch * DIMS, dtype=torch.float64).reshape(batch, DIMS)


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    scale = float(want.abs().max()) + 1.0
    return float((got - want).abs().max()) <= 1e-12 * scale


def _step_exact(family: str, name: str, degree: int, states: list[torch.Tensor], sigmas: list[float],
                i: int) -> bool:
    schedule = SCHEDULES[family]
    coefs = POLY_COEFS[:, : degree + 1]
    want = exact_transition(schedule, coefs, _prediction(name), sigmas[i], sigmas[i + 1], states[i])
    return _close(states[i + 1], want)


SINGLESTEP_CASES = [
    # (sampler, options, highest degree integrated exactly)
    ("dpm_solver_1", {}, 0),
    ("dpm_solver_2", {"solver_type": "taylor"}, 1),
    ("dpm_solver_2", {"solver_type": "taylor", "r1": 0.3}, 1),
    ("dpm_solver_2", {"solver_type": "dpmsolver"}, 0),
    ("dpm_solver_3", {"solver_type": "taylor"}, 2),
    ("dpm_solver_3", {"solver_type": "taylor", "r1": 0.25, "r2": 0.7}, 2),
    ("dpm_solver_3", {"solver_type": "dpmsolver"}, 1),
    ("dpm_solver_pp_2s", {"solver_type": "taylor"}, 1),
    ("dpm_solver_pp_2s", {"solver_type": "taylor", "r1": 0.7}, 1),
    ("dpm_solver_pp_2s", {"solver_type": "dpmsolver"}, 0),
    ("dpm_solver_pp_3s", {"solver_type": "taylor"}, 2),
    ("dpm_solver_pp_3s", {"solver_type": "taylor", "r1": 0.4, "r2": 0.8}, 2),
    ("dpm_solver_pp_3s", {"solver_type": "dpmsolver"}, 1),
]


def _case_id(case: tuple[str, dict[str, Any], int]) -> str:
    name, options, _ = case
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


@pytest.mark.parametrize("family", SCHEDULES)
@pytest.mark.parametrize("case", SINGLESTEP_CASES, ids=_case_id)
def test_singlestep_sampler_exact(family: str, case: tuple[str, dict[str, Any], int]) -> None:
    """Over a whole grid (ending above 0), a singlestep sampler reproduces the exact ODE solution when the
    prediction is a polynomial in lambda it integrates exactly, and is off for the next degree."""
    name, options, exact_degree = case
    schedule = SCHEDULES[family]
    if name != "dpm_solver_1":
        options = {**options, "lower_order_final": False}
    x = _start()
    sigmas = GRIDS[family]
    for degree in range(exact_degree + 2):
        coefs = POLY_COEFS[:, : degree + 1]
        model = lambda_polynomial_model(schedule, coefs, _prediction(name))
        knots, states, _ = grid_states(name, model, x, sigmas, schedule=family, **options)
        assert knots == sigmas
        want = x
        for i in range(len(sigmas) - 1):
            want = exact_transition(schedule, coefs, _prediction(name), sigmas[i], sigmas[i + 1], want)
            if degree <= exact_degree:
                assert _close(states[i + 1], want), f"degree {degree}, grid point {i + 1}"
        if degree > exact_degree:
            assert not _close(states[-1], want), f"degree {degree} should not be exact"


MULTISTEP_CASES = [
    # (sampler, options, order of the fully warmed-up step, highest degree that step integrates exactly)
    ("dpm_solver_2m", {"solver_type": "taylor"}, 2, 1),
    ("dpm_solver_2m", {"solver_type": "dpmsolver"}, 2, 0),
    ("dpm_solver_3m", {"solver_type": "taylor", "third_order": "consistent"}, 3, 2),
    ("dpm_solver_3m", {"solver_type": "dpmsolver", "third_order": "consistent"}, 3, 2),
    ("dpm_solver_3m", {"solver_type": "taylor", "third_order": "reference"}, 3, 1),
    ("dpm_solver_pp_2m", {"solver_type": "taylor"}, 2, 1),
    ("dpm_solver_pp_2m", {"solver_type": "dpmsolver"}, 2, 0),
    ("dpm_solver_pp_3m", {"solver_type": "taylor", "third_order": "consistent"}, 3, 2),
    ("dpm_solver_pp_3m", {"solver_type": "dpmsolver", "third_order": "consistent"}, 3, 2),
    ("dpm_solver_pp_3m", {"solver_type": "taylor", "third_order": "reference"}, 3, 1),
]


@pytest.mark.parametrize("family", SCHEDULES)
@pytest.mark.parametrize("case", MULTISTEP_CASES, ids=lambda c: _case_id((c[0], c[1], c[3])))
def test_multistep_sampler_exact_step_by_step(family: str, case: tuple[str, dict[str, Any], int, int]) -> None:
    """Each multistep step is compared with the exact transition from the sampler's own state.

    Step i has order min(order, i + 1) (warm-up, lower_order_final=False); every step, warm-up included, must be
    exact up to the degree its rule handles and not for the next one, so warm-up cannot hide a bad 3M step.
    """
    name, options, order, exact_degree = case
    schedule = SCHEDULES[family]
    options = {**options, "lower_order_final": False}
    sigmas = GRIDS[family]
    for degree in range(exact_degree + 2):
        coefs = POLY_COEFS[:, : degree + 1]
        model = lambda_polynomial_model(schedule, coefs, _prediction(name))
        knots, states, calls = grid_states(name, model, _start(), sigmas, schedule=family, **options)
        assert knots == sigmas and calls == [1] * (len(sigmas) - 1)
        for i in range(len(sigmas) - 1):
            step_order = min(order, i + 1)
            if step_order == order:
                step_exact_degree = exact_degree
            else:
                step_exact_degree = step_order - 1 if options["solver_type"] == "taylor" else 0
            exact = _step_exact(family, name, degree, states, sigmas, i)
            assert exact == (degree <= step_exact_degree), f"degree {degree}, step {i} of order {step_order}"


@pytest.mark.parametrize("family", SCHEDULES)
def test_fast_sampler_exact_per_step(family: str) -> None:
    """DPM-Solver-fast (taylor) lays steps of orders 3, 3, 2 over 8 intervals; each is exact below its order."""
    schedule = SCHEDULES[family]
    sigmas = FAST_GRIDS[family]
    for degree in range(4):
        coefs = POLY_COEFS[:, : degree + 1]
        model = lambda_polynomial_model(schedule, coefs, "noise")
        knots, states, calls = grid_states("dpm_solver_fast", model, _start(), sigmas, schedule=family,
                                           solver_type="taylor")
        assert calls == [3, 3, 2]
        assert knots == [sigmas[0], sigmas[3], sigmas[6], sigmas[8]]
        for i, step_order in enumerate(calls):
            exact = _step_exact(family, "dpm_solver_fast", degree, states, knots, i)
            assert exact == (degree < step_order), f"degree {degree}, step {i}"
