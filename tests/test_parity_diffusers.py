"""Parity with diffusers' DPM-Solver schedulers: same grid, same exact model, same start, same answer.

diffusers (through tests/diffusers_oracle.py) is the independent implementation; our samplers get the sigma
grid diffusers built (``set_timesteps``) and must reproduce its final state and call the model at exactly the
same sigmas, with diffusers' order per step.

Precision.  diffusers' multistep ``step`` rounds the state to float32 at every step.  On the Gaussian-mixture
models used here that rounding is amplified to 1e-6 .. 1e-4 relative in the result (worst: noise prediction in
flow, whose first sigma has alpha = 3.3e-4, so x - sigma*eps = alpha*x0 cancels ~12 bits), which would hide
real formula differences.  ``_Float64State`` (a tensor subclass whose ``.to(torch.float32)`` is a no-op) keeps
diffusers' multistep state in float64; ``test_float64_state_changes_only_rounding`` checks that this changes
the result only at the float32 level.  Singlestep diffusers is float64 throughout already.  Then both
agree to ~1e-13 relative (up to ~5e-11 for noise prediction in flow, by the same cancellation): see tolerance().

Known differences (asserted, not hidden):
* 3M with ``third_order="consistent"`` is not diffusers' 3M update (``"reference"`` is).
* Third-order singlestep with ``solver_type="dpmsolver"`` (diffusers "midpoint"): diffusers computes the second
  intermediate state with its *midpoint* second-order update (weight phi_1/2), while ours (like the official
  DPM-Solver-3) uses the exact phi_2 weight there; everything else is identical
  (``test_fast_midpoint_differs_only_in_the_intermediate_point`` rebuilds diffusers' variant from our weights).
* DPM-Solver-fast with a final step to sigma = 0 for N % 3 == 1 intervals: ours applies the fast rule to the
  N - 1 intervals before the denoise step, diffusers keeps its order list for N and only sets the last order to 1.
* Dynamic thresholding with a threshold above 1: our quantile of |x0| is computed in float32 even for a float64
  state (diffusers: float64), a ~1e-7 relative difference in s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any

import pytest
import torch
from diffusers_oracle import OracleTrace, run_multistep, run_singlestep

from samplers import FLOW, SAMPLERS, VE
from samplers.bench.problems import GaussianMixture, Problem, flow_mixture, ve_mixture
from samplers.coefficients import exponential_step, first_order_data_step
from samplers.deterministic import LOWER_ORDER_FINAL_BELOW, SolverSpec
from samplers.driver import run_plan
from samplers.plan import Plan, fast_orders, singlestep_plan
from samplers.registry import SamplerEntry
from samplers.schedules import NoiseSchedule

FAMILIES = ("ve", "flow")
SCHEDULES: dict[str, NoiseSchedule] = {"ve": VE, "flow": FLOW}
# diffusers solver_type -> ours
SOLVER_TYPES = {"midpoint": "dpmsolver", "heun": "taylor"}
# diffusers algorithm_type -> our prediction
PREDICTIONS = {"dpmsolver++": "data", "dpmsolver": "noise"}
MULTISTEP_NAMES = {("data", 2): "dpm_solver_pp_2m", ("data", 3): "dpm_solver_pp_3m",
                   ("noise", 2): "dpm_solver_2m", ("noise", 3): "dpm_solver_3m"}
FAST_DATA = SamplerEntry("dpm_solver_pp_fast", "DPM-Solver++-fast", "data-prediction fast (test only)", 1, False,
                         SAMPLERS["dpm_solver_fast"].defaults, SolverSpec("fast", 3, "data"))
FAST = {"noise": SAMPLERS["dpm_solver_fast"], "data": FAST_DATA}
DIFFUSERS_LOWER_ORDER_FINAL_BELOW = 15  # diffusers applies lower_order_final only when num_steps < 15
BATCH = 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The tensors here are tiny; intra-op threads only add overhead (torch.softmax on an (8, 5) tensor took
    ~13 ms instead of ~2 us with 2 threads on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tolerance(family: str, prediction: str) -> float:
    """Max |ours - diffusers| / max |diffusers| for float64 runs of the same formulas."""
    return 1e-9 if (family, prediction) == ("flow", "noise") else 1e-11


class _Float64State(torch.Tensor):
    """A float64 state that ignores ``.to(torch.float32)``: diffusers' multistep float32 cast becomes a no-op."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.Tensor.to and (torch.float32 in args[1:] or kwargs.get("dtype") is torch.float32):
            return args[0]
        return super().__torch_function__(func, types, args, kwargs)


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor)


def _oracle_denoiser(model: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
        x = _plain(x)
        return model(x, torch.full((x.shape[0],), sigma, dtype=x.dtype))

    return denoiser


def oracle(runner: Callable[..., tuple[torch.Tensor, torch.Tensor]], model: Callable[..., torch.Tensor],
           x: torch.Tensor, *, float64: bool = True, **config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas, x_final) from diffusers, as plain float64 tensors."""
    x_init = x.clone().as_subclass(_Float64State) if float64 else x.clone()
    sigmas, x_final = runner(_oracle_denoiser(model), x_init, **config)
    return _plain(sigmas), _plain(x_final)


class Recording:
    """Wraps a model and records the sigma of every call (checking the batch shares it)."""

    def __init__(self, model: Callable[..., torch.Tensor]) -> None:
        self.model = model
        self.sigmas: list[float] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],) and bool((sigma == sigma[0]).all())
        self.sigmas.append(float(sigma[0]))
        return self.model(x, sigma, **extra)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == torch.float64
    return float((a - b).abs().max() / b.abs().max())


@cache
def problem(family: str) -> Problem:
    return ve_mixture() if family == "ve" else flow_mixture()


def start(family: str) -> torch.Tensor:
    return problem(family).prior_noise(BATCH)


def laid_orders(orders: Sequence[int]) -> list[int]:
    """diffusers' singlestep order list [1, 2, 3, 1, 2, 1, ...] as step orders [3, 2, ...]."""
    steps: list[int] = []
    for order in orders:
        if order == 1:
            steps.append(1)
        else:
            assert steps and order == steps[-1] + 1, orders
            steps[-1] = order
    return steps


def calls_per_step(plan: Plan) -> list[int]:
    counts: dict[int, int] = {}
    for stage in plan.stages:
        if stage.evaluate:
            counts[stage.step] = counts.get(stage.step, 0) + 1
    return [counts[i] for i in sorted(counts)]


def committed_orders(plan: Plan) -> list[int]:
    """Order of each multistep update: the number of model outputs its commit stage combines."""
    return [len(stage.terms) for stage in plan.stages if stage.commit]


# ---------------------------------------------------------------------------------------------- multistep


MULTISTEP_CASES = [
    pytest.param(family, algorithm, order, solver_type, final, n, lof,
                 id=f"{family}-{algorithm}-o{order}-{solver_type}-{final}-N{n}-lof{int(lof)}")
    for family in FAMILIES
    for algorithm in PREDICTIONS
    for order in (2, 3)
    for solver_type in SOLVER_TYPES
    for final in ("zero", "sigma_min")
    if not (final == "zero" and algorithm == "dpmsolver")  # diffusers refuses a noise-prediction step to 0
    for n in (5, 8, 10, 16, 25)  # diffusers ignores lower_order_final from 15 steps on (ours then gets False)
    for lof in (True, False)
]


@pytest.mark.parametrize(("family", "algorithm", "order", "solver_type", "final", "n", "lof"), MULTISTEP_CASES)
def test_multistep_matches_diffusers(family: str, algorithm: str, order: int, solver_type: str, final: str,
                                     n: int, lof: bool) -> None:
    prediction = PREDICTIONS[algorithm]
    x = start(family)
    trace = OracleTrace()
    sigmas, expected = oracle(run_multistep, problem(family).model, x, family=family, num_steps=n,
                              solver_order=order, algorithm_type=algorithm, solver_type=solver_type,
                              lower_order_final=lof, final_sigmas_type=final, trace=trace)
    entry = SAMPLERS[MULTISTEP_NAMES[prediction, order]]
    options: dict[str, Any] = {"schedule": family, "solver_type": SOLVER_TYPES[solver_type],
                               "lower_order_final": lof and n < DIFFUSERS_LOWER_ORDER_FINAL_BELOW}
    if order == 3:
        options["third_order"] = "reference"
    model = Recording(problem(family).model)
    got = entry(model, x.clone(), sigmas, disable=True, **options)
    assert rel(got, expected) < tolerance(family, prediction)
    assert model.sigmas == trace.call_sigmas
    assert committed_orders(entry.plan(sigmas, **options)) == trace.orders


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("algorithm", list(PREDICTIONS))
@pytest.mark.parametrize("n", [5, 10, 16, 25])
def test_consistent_third_order_is_not_diffusers(family: str, algorithm: str, n: int) -> None:
    """The default 3M weights differ from diffusers' 3M (which equals our third_order="reference")."""
    prediction = PREDICTIONS[algorithm]
    x = start(family)
    trace = OracleTrace()
    sigmas, expected = oracle(run_multistep, problem(family).model, x, family=family, num_steps=n,
                              solver_order=3, algorithm_type=algorithm, lower_order_final=False,
                              final_sigmas_type="sigma_min", trace=trace)
    assert 3 in trace.orders
    entry = SAMPLERS[MULTISTEP_NAMES[prediction, 3]]
    common: dict[str, Any] = {"schedule": family, "lower_order_final": False}
    reference = entry(problem(family).model, x.clone(), sigmas, disable=True, third_order="reference", **common)
    consistent = entry(problem(family).model, x.clone(), sigmas, disable=True, third_order="consistent", **common)
    assert rel(reference, expected) < tolerance(family, prediction)
    assert rel(consistent, expected) > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n", [3, 4, 5, 10, 16])
def test_defaults_are_diffusers_with_our_lower_order_final_rule(family: str, n: int) -> None:
    """Default options (third_order reference, lower_order_final 'auto') equal diffusers' 3M with
    lower_order_final on exactly below LOWER_ORDER_FINAL_BELOW steps (the rule picked by the benchmark)."""
    x = start(family)
    trace = OracleTrace()
    low = n < LOWER_ORDER_FINAL_BELOW
    sigmas, expected = oracle(run_multistep, problem(family).model, x, family=family, num_steps=n,
                              solver_order=3, lower_order_final=low, final_sigmas_type="sigma_min", trace=trace)
    assert (trace.orders[-1] == 1) == low
    got = SAMPLERS["dpm_solver_pp_3m"](problem(family).model, x.clone(), sigmas, disable=True, schedule=family)
    assert rel(got, expected) < tolerance(family, "data")


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("solver_type", list(SOLVER_TYPES))
@pytest.mark.parametrize("n", [8, 20])
def test_multistep_karras_grid(order: int, solver_type: str, n: int) -> None:
    x = start("ve")
    sigmas, expected = oracle(run_multistep, problem("ve").model, x, family="ve", num_steps=n, solver_order=order,
                              solver_type=solver_type, lower_order_final=True, final_sigmas_type="zero",
                              use_karras_sigmas=True)
    options: dict[str, Any] = {"solver_type": SOLVER_TYPES[solver_type], "lower_order_final": n < 15}
    if order == 3:
        options["third_order"] = "reference"
    got = SAMPLERS[MULTISTEP_NAMES["data", order]](problem("ve").model, x.clone(), sigmas, disable=True, **options)
    assert rel(got, expected) < tolerance("ve", "data")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("algorithm", list(PREDICTIONS))
def test_float64_state_changes_only_rounding(family: str, algorithm: str) -> None:
    """The _Float64State patch only removes diffusers' float32 rounding (a small, nonzero change)."""
    x = start(family)
    config: dict[str, Any] = {"family": family, "num_steps": 10, "solver_order": 3, "algorithm_type": algorithm,
                              "final_sigmas_type": "sigma_min"}
    _, exact = oracle(run_multistep, problem(family).model, x, **config)
    _, rounded = oracle(run_multistep, problem(family).model, x, float64=False, **config)
    assert 0.0 < rel(rounded, exact) < 1e-3


# ------------------------------------------------------------------------------------------- thresholding


@cache
def bright_mixture(family: str) -> GaussianMixture:
    """The benchmark mixture with means scaled by 3: |x0| exceeds 1, so thresholding acts."""
    base = problem(family).data
    assert base is not None
    return GaussianMixture(base.means * 3.0, base.stds, base.weights, family=family)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("algorithm", "order"), [("dpmsolver++", 2), ("dpmsolver++", 3), ("dpmsolver", 2)])
@pytest.mark.parametrize("threshold_max", [1.0, 2.5])
def test_thresholding_matches_diffusers(family: str, algorithm: str, order: int, threshold_max: float) -> None:
    prediction = PREDICTIONS[algorithm]
    mix = bright_mixture(family)
    x = mix.prior_noise(BATCH, 14.6 if family == "ve" else 1.0, torch.Generator().manual_seed(3))
    x = x.reshape(BATCH, 1, 16)  # diffusers' thresholding wants (batch, channels, ...)
    quantiles: list[torch.Tensor] = []

    def watched(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        d = mix(x, sigma)
        quantiles.append(torch.quantile(d.reshape(BATCH, -1).abs(), 0.995, dim=1))
        return d

    sigmas, expected = oracle(run_multistep, watched, x, family=family, num_steps=10, solver_order=order,
                              algorithm_type=algorithm, lower_order_final=False, final_sigmas_type="sigma_min",
                              thresholding=True, sample_max_value=threshold_max)
    q = torch.cat(quantiles)
    if threshold_max == 1.0:
        assert bool((q > 1.0).any())  # clipping to [-1, 1] acts
    else:
        assert bool(((q > 1.0) & (q < threshold_max)).any())  # a dynamic s in (1, max) acts
    options: dict[str, Any] = {"schedule": family, "lower_order_final": False}
    if order == 3:
        options["third_order"] = "reference"
    entry = SAMPLERS[MULTISTEP_NAMES[prediction, order]]
    got = entry(mix, x.clone(), sigmas, disable=True, thresholding=True, threshold_max=threshold_max, **options)
    unthresholded = entry(mix, x.clone(), sigmas, disable=True, **options)
    # With s > 1 our quantile is taken in float32 (DynamicThreshold), diffusers' in float64: ~1e-7 in s.
    tol = tolerance(family, prediction) if threshold_max == 1.0 else 2e-5
    assert rel(got, expected) < tol
    assert rel(unthresholded, expected) > 0.1


# --------------------------------------------------------------------------------------------- singlestep


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 10, 12, 20])
@pytest.mark.parametrize(("algorithm", "final"), [("dpmsolver", "sigma_min"), ("dpmsolver++", "sigma_min"),
                                                  ("dpmsolver++", "zero")])
def test_fast_matches_diffusers_order3(family: str, n: int, algorithm: str, final: str) -> None:
    """DPM-Solver-fast == diffusers' singlestep order 3 (lower_order_final) with "heun" (our "taylor").

    With a final step to 0 the laid orders coincide unless n % 3 == 1 (then they differ as documented above).
    """
    prediction = PREDICTIONS[algorithm]
    x = start(family)
    trace = OracleTrace()
    sigmas, expected = oracle(run_singlestep, problem(family).model, x, family=family, num_steps=n,
                              solver_order=3, algorithm_type=algorithm, solver_type="heun", lower_order_final=True,
                              final_sigmas_type=final, trace=trace)
    entry = FAST[prediction]
    options = {"schedule": family, "solver_type": "taylor"}
    ours = calls_per_step(entry.plan(sigmas, **options))
    diffusers = laid_orders(trace.orders)
    if final == "zero" and n % 3 == 1:
        assert diffusers == [3] * (n // 3) + [1]
        assert ours == [*fast_orders(n - 1), 1]
        return
    assert ours == diffusers
    model = Recording(problem(family).model)
    got = entry(model, x.clone(), sigmas, disable=True, **options)
    assert rel(got, expected) < tolerance(family, prediction)
    assert model.sigmas == trace.call_sigmas


def diffusers_style_singlestep(schedule: NoiseSchedule, sigmas: Sequence[float], steps: Sequence[int],
                               prediction: str, solver_type: str) -> Plan:
    """diffusers' singlestep over consecutive grid points, built from our weights: the m-th intermediate state
    of a k-th order step is the m-th order update of the *same* solver_type (ours: always exact weights)."""
    plan = Plan()
    kind = "D" if prediction == "data" else "eps"
    at = 0
    for i, k in enumerate(steps):
        pts = list(sigmas[at:at + k + 1])
        lam = [schedule.lambda_(s) for s in pts]
        alpha = [schedule.alpha(s) for s in pts]
        nodes = [(plan.evaluate(pts[0], alpha[0], i), lam[0])]
        for m in range(1, k + 1):
            if math.isinf(lam[m]):
                a, b0 = first_order_data_step(alpha[0], pts[0], alpha[m], pts[m])
                terms = [(b0, nodes[0][0], "D")]
            else:
                use, kind_m = nodes, solver_type
                if m == 3 and solver_type == "dpmsolver":
                    use, kind_m = [nodes[0], nodes[2]], "taylor"
                a, b = exponential_step(alpha[0], pts[0], alpha[m], pts[m], lam[0], lam[m], [n[1] for n in use],
                                        prediction, kind_m)
                terms = [(c, j, kind) for c, (j, _) in zip(b, use, strict=True)]
            last = m == k
            j = plan.combine(a, terms, pts[m], alpha[m], i, evaluate=not last, commit=last)
            if j is not None:
                nodes.append((j, lam[m]))
        at += k
    return plan


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n", [6, 7, 8, 12])
@pytest.mark.parametrize("algorithm", list(PREDICTIONS))
def test_fast_midpoint_differs_only_in_the_intermediate_point(family: str, n: int, algorithm: str) -> None:
    prediction = PREDICTIONS[algorithm]
    x = start(family)
    trace = OracleTrace()
    config: dict[str, Any] = {"family": family, "num_steps": n, "solver_order": 3, "algorithm_type": algorithm,
                              "lower_order_final": True, "final_sigmas_type": "sigma_min", "trace": trace}
    sigmas, expected = oracle(run_singlestep, problem(family).model, x, solver_type="midpoint", **config)
    steps = laid_orders(trace.orders)
    assert 3 in steps
    emulated = diffusers_style_singlestep(SCHEDULES[family], sigmas.tolist(), steps, prediction, "dpmsolver")
    assert rel(run_plan(problem(family).model, x.clone(), emulated, disable=True), expected) \
        < tolerance(family, prediction)
    ours = FAST[prediction](problem(family).model, x.clone(), sigmas, disable=True, schedule=family)
    assert rel(ours, expected) > 1e-4
    # and the emulation reproduces our sampler where both use exact intermediate weights
    taylor = diffusers_style_singlestep(SCHEDULES[family], sigmas.tolist(), steps, prediction, "taylor")
    got = run_plan(problem(family).model, x.clone(), taylor, disable=True)
    want = FAST[prediction](problem(family).model, x.clone(), sigmas, disable=True, schedule=family,
                            solver_type="taylor")
    assert rel(got, want) < tolerance(family, prediction)


SINGLESTEP2_CASES = [
    pytest.param(family, algorithm, solver_type, final, n, id=f"{family}-{algorithm}-{solver_type}-{final}-N{n}")
    for family in FAMILIES
    for algorithm in PREDICTIONS
    for solver_type in SOLVER_TYPES
    for final in ("zero", "sigma_min")
    if not (final == "zero" and algorithm == "dpmsolver")
    for n in (5, 6, 7, 8, 12)
]


@pytest.mark.parametrize(("family", "algorithm", "solver_type", "final", "n"), SINGLESTEP2_CASES)
def test_singlestep_order2_matches_diffusers(family: str, algorithm: str, solver_type: str, final: str,
                                             n: int) -> None:
    """diffusers' order-2 singlestep list as an explicit singlestep_plan (inner points = the grid points)."""
    prediction = PREDICTIONS[algorithm]
    x = start(family)
    trace = OracleTrace()
    sigmas, expected = oracle(run_singlestep, problem(family).model, x, family=family, num_steps=n,
                              solver_order=2, algorithm_type=algorithm, solver_type=solver_type,
                              lower_order_final=True, final_sigmas_type=final, trace=trace)
    steps = laid_orders(trace.orders)
    assert 2 in steps
    grid = sigmas.tolist()
    outer, inner, at = [grid[0]], [], 0
    for k in steps:
        inner.append(grid[at + 1:at + k])
        at += k
        outer.append(grid[at])
    plan = singlestep_plan(SCHEDULES[family], outer, steps, prediction, SOLVER_TYPES[solver_type], inner)
    model = Recording(problem(family).model)
    got = run_plan(model, x.clone(), plan, disable=True, sigma_dtype=torch.float64)
    assert rel(got, expected) < tolerance(family, prediction)
    assert model.sigmas == trace.call_sigmas
