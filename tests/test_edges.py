"""Edge cases of the sampler contract: grids, dtypes, callbacks, model-call counts, errors, options."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from samplers import FLOW, SAMPLERS, VE, NonFiniteModelOutput, grids
from samplers.deterministic import LOWER_ORDER_FINAL_BELOW
from samplers.driver import ModelOutputError, NonFiniteInput, NonFiniteResult, _FiniteGuard, combine, run_plan
from samplers.noise import SeededNoise
from samplers.plan import Noise, Plan
from samplers.registry import AdaptiveEntry, SdsEntry
from samplers.schedules import VarianceExploding
from samplers.sigmas import distinct, no_signal_end
from samplers.thresholding import DynamicThreshold, row_quantile

NAMES = sorted(SAMPLERS)
ODE_NAMES = [n for n in NAMES if not SAMPLERS[n].stochastic]
"""Samplers whose result is the ODE solution (the stochastic ones' edge cases: tests/test_sde.py). dpm_solver_sds is
one with its default options (DDIM); its other options: tests/test_sds.py."""


def structure(name: str) -> str:
    """The entry's step structure; "sds" for dpm_solver_sds, which has no SolverSpec (one call per interval)."""
    spec = SAMPLERS[name].spec
    return spec.structure if spec is not None else "sds"


def order(name: str) -> int:
    """The entry's order; dpm_solver_sds with its defaults is DDIM, first order."""
    spec = SAMPLERS[name].spec
    return spec.order if spec is not None else 1


PLANNED = [n for n in NAMES if structure(n) != "adaptive"]
"""Samplers with fixed steps: exact model-call counts, batch-independent (adaptive: tests/test_adaptive.py)."""
MU, STD = 0.5, 0.8


def gaussian_model(schedule: str = "ve"):
    """Exact denoiser of N(MU, STD^2) for x = alpha x0 + sigma eps; also counts calls and records sigmas."""

    def model(x: torch.Tensor, sigma: torch.Tensor, **extra: object) -> torch.Tensor:
        model.calls += 1
        model.sigmas.append(float(sigma[0]))
        model.dtypes.append(x.dtype)
        model.extra.append(extra)
        s = sigma.to(torch.float64).reshape(-1, *([1] * (x.dim() - 1)))
        a = 1.0 - s if schedule == "flow" else torch.ones_like(s)
        out = MU + a * STD**2 / (a**2 * STD**2 + s**2) * (x.to(torch.float64) - a * MU)
        return out.to(x.dtype)

    model.calls, model.sigmas, model.dtypes, model.extra = 0, [], [], []
    return model


def exact(x: torch.Tensor, s0: float, s1: float, schedule: str = "ve") -> torch.Tensor:
    a0, a1 = (1 - s0, 1 - s1) if schedule == "flow" else (1.0, 1.0)
    return a1 * MU + math.sqrt(a1**2 * STD**2 + s1**2) * (x - a0 * MU) / math.sqrt(a0**2 * STD**2 + s0**2)


def start(n: int = 4, sigma: float = 14.6, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (MU + math.sqrt(STD**2 + sigma**2) * torch.randn(n, 3, 2, 2, generator=g, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("grid", [
    lambda n: grids.karras(n, 0.03, 14.6), lambda n: grids.exponential(n, 0.03, 14.6),
    lambda n: grids.uniform_lambda(n, 0.03, 14.6)])
def test_a_one_step_grid_goes_from_sigma_max_to_zero(grid: Any) -> None:
    torch.testing.assert_close(grid(1), torch.tensor([14.6, 0.0], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(grid(2), torch.tensor([14.6, 0.03, 0.0], dtype=torch.float64), rtol=1e-12, atol=0)


def test_grid_defaults_are_the_documented_ones() -> None:
    """uniform_lambda on a VE model ends at 0 unless told; flow_simple is SD3's shift 3."""
    assert grids.uniform_lambda(4, 0.03, 14.6)[-1] == 0.0
    assert torch.equal(grids.flow_simple(6), grids.flow_simple(6, shift=3.0))
    assert grids.flow_simple(2, append_zero=False).tolist() == [1.0, 0.75]  # 3 (1/2) / (1 + 2 (1/2))


@pytest.mark.parametrize(("lo", "hi", "schedule"), [(0.0, 14.6, "ve"), (0.03, math.inf, "ve"), (0.03, 1.0, "flow")])
def test_uniform_lambda_refuses_an_end_without_a_finite_log_snr(lo: float, hi: float, schedule: str) -> None:
    with pytest.raises(ValueError, match="finite half-log-SNR"):
        grids.uniform_lambda(5, lo, hi, schedule)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sigmas", [torch.tensor([]), torch.tensor([3.0])])
def test_short_grids_return_x(name: str, sigmas: torch.Tensor, capfd: pytest.CaptureFixture[str]) -> None:
    """Nothing to do: x itself back, no model call, no progress bar, a count of 0 calls and no plan."""
    x = start()
    model = gaussian_model()
    entry = SAMPLERS[name]
    assert entry(model, x, sigmas) is x and model.calls == 0
    assert capfd.readouterr().err == ""
    if isinstance(entry, AdaptiveEntry):
        return
    assert entry.count_model_calls(sigmas) == 0
    if not isinstance(entry, SdsEntry):
        assert entry.plan(sigmas) is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("sigmas", "message"),
    [
        ([1.0, 2.0, 0.0], "non-increasing"),
        ([2.0, -0.5], "non-negative"),
        ([float("nan"), 1.0], "finite"),
        ([float("inf"), 1.0, 0.0], "finite"),
    ],
)
def test_bad_sigmas_raise_value_error_naming_the_problem(name: str, sigmas: list[float], message: str) -> None:
    model = gaussian_model()
    with pytest.raises(ValueError, match=message):
        SAMPLERS[name](model, start(), torch.tensor(sigmas), disable=True)
    assert model.calls == 0


def test_two_dimensional_sigmas_and_flow_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="1-D"):
        SAMPLERS["dpm_solver_pp_2m"](gaussian_model(), start(), torch.ones(2, 2), disable=True)
    with pytest.raises(ValueError, match="flow"):
        SAMPLERS["dpm_solver_pp_2m"](gaussian_model(), start(), torch.tensor([1.5, 0.5, 0.0]), schedule="flow",
                                     disable=True)


@pytest.mark.parametrize("name", NAMES)
def test_nan_from_model_names_call_step_and_sigma(name: str) -> None:
    sigmas = grids.karras(6, 0.03, 14.6)
    inner = gaussian_model()

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        out = inner(x, sigma)
        return out * float("nan") if inner.calls == 3 else out

    with pytest.raises(NonFiniteModelOutput, match=r"model call 2 \(step \d, sigma=[0-9.]+\)"):
        SAMPLERS[name](model, start(), sigmas, disable=True)
    assert inner.calls == 3


def test_deferred_finite_guard_reports_the_first_bad_call() -> None:
    guard = _FiniteGuard(torch.device("cuda"), lambda call: f"call {call}")
    assert not guard.immediate
    for call, value in enumerate([1.0, 2.0, float("inf"), float("nan")]):
        guard.check(torch.full((2,), value), call, torch.ones(2))
    with pytest.raises(NonFiniteModelOutput, match=r"call 2 \(or was given them: noise_sampler or guidance_parts"):
        guard.finish()


def test_deferred_finite_guard_reads_only_the_calls_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its buffers come from torch.empty; the entries past the last call hold whatever memory held (NaN here)."""
    monkeypatch.setattr(torch, "empty", lambda *shape, **kw: torch.full(shape, float("nan"), **kw))
    guard = _FiniteGuard(torch.device("cuda"), lambda call: f"call {call}")
    for call in range(3):
        guard.check(torch.ones(2), call, torch.ones(2))
    guard.finish()


def test_a_stage_without_terms_scales_the_state() -> None:
    x = torch.arange(3.0)
    assert combine(x, 1.0, (), []) is x
    assert torch.equal(combine(x, 0.5, (), []), 0.5 * x)


def test_a_noise_only_stage_adds_its_noise_and_leaves_the_input_alone() -> None:
    """y = x + coef z for a stage with a = 1 and no terms: y must not be x itself updated in place (x is the
    caller's tensor when its dtype is the working one)."""
    plan = Plan()
    plan.combine(1.0, [], 1.0, 1.0, 0, evaluate=False, commit=True, noise=Noise(0.3, 2.0, 1.0))
    x = torch.arange(8.0, dtype=torch.float64).reshape(2, 4)
    kept = x.clone()
    got = run_plan(lambda y, sigma: y, x, plan, disable=True, noise=SeededNoise(5, x, VE))
    assert torch.equal(x, kept)
    z = SeededNoise(5, x, VE).increment(2.0, 1.0)
    torch.testing.assert_close(got, kept + 0.3 * z, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_nan_in_x_is_named_as_the_input_before_any_model_call(name: str) -> None:
    """A NaN latent (an fp16 VAE encode, an earlier sampler) is the input's fault, not the model's."""
    x = start()
    x[2, 1, 0, 1] = float("nan")
    model = gaussian_model()
    with pytest.raises(NonFiniteInput, match=r"the latent given to the sampler, holds NaN or inf \(sample\(s\) \[2\]"):
        SAMPLERS[name](model, x, grids.karras(4, 0.03, 14.6), disable=True)
    assert model.calls == 0


def test_deferred_finite_guard_names_the_input_then_the_calls_then_the_result() -> None:
    """One host read at the end, and the first culprit in the order the run met them."""
    def guard_with(x: float, calls: list[float], result: float) -> _FiniteGuard:
        guard = _FiniteGuard(torch.device("cuda"), lambda call: f"call {call}")
        guard.check_input(torch.full((2, 3), x, dtype=torch.float16))
        for call, value in enumerate(calls):
            guard.check(torch.full((2, 3), value), call, torch.ones(2, 3))
        guard.check_result(torch.full((2, 3), result))
        return guard

    guard_with(1.0, [1.0, 2.0], 3.0).finish()
    guard_with(6e4, [1.0], 1.0).finish()  # a half latent whose half-precision sum would overflow is finite
    with pytest.raises(NonFiniteInput, match=r"sample\(s\) \[0, 1\]"):
        guard_with(float("inf"), [float("nan")], float("nan")).finish()
    with pytest.raises(NonFiniteModelOutput, match="call 1"):
        guard_with(1.0, [1.0, float("nan")], float("nan")).finish()
    with pytest.raises(NonFiniteModelOutput, match="call 0"):  # the first call, right after a finite input
        guard_with(1.0, [float("nan"), float("nan")], float("nan")).finish()
    with pytest.raises(NonFiniteResult, match="although x and every model output were finite"):
        guard_with(1.0, [1.0, 2.0], float("-inf")).finish()


@pytest.mark.parametrize("name", NAMES)
def test_model_output_of_another_shape_or_type_is_refused_at_its_call(name: str) -> None:
    """Batch-1 or CFG-doubled outputs, or no tensor at all: noise-prediction samplers once broadcast these silently."""
    inner = gaussian_model()
    bad = {"batch 1": lambda out: out[:1], "doubled batch": lambda out: torch.cat([out, out]),
           "squeezed": lambda out: out[:, 0], "tuple": lambda out: (out,)}
    for label, spoil in bad.items():
        def model(x: torch.Tensor, sigma: torch.Tensor, spoil=spoil) -> torch.Tensor:
            out = inner(x, sigma)
            return spoil(out) if inner.calls == 2 else out

        inner.calls = 0
        with pytest.raises(ModelOutputError, match=r"the model returned .* at model call 1 \(step \d, sigma=[0-9.]+\); "
                           r"expected a tensor of x's shape \(4, 3, 2, 2\)"):
            SAMPLERS[name](model, start(), grids.karras(4, 0.03, 14.6), disable=True)
        assert inner.calls == 2, label


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_is_returned_without_a_model_call(name: str) -> None:
    x = start()[:0]
    model = gaussian_model()
    assert SAMPLERS[name](model, x, grids.karras(4, 0.03, 14.6), disable=True) is x and model.calls == 0
    with pytest.raises(ValueError, match="non-increasing"):  # checked as for a real batch (they went through)
        SAMPLERS[name](model, x, torch.tensor([1.0, 2.0]), disable=True)
    with pytest.raises(TypeError, match="bogus"):
        SAMPLERS[name](model, x, grids.karras(4, 0.03, 14.6), disable=True, bogus=1)


@pytest.mark.parametrize(
    ("x", "message"),
    [([[1.0, 2.0]], "x must be a torch.Tensor .* got list"), (torch.tensor(1.0), "batch dimension"),
     (torch.ones(2, 3, dtype=torch.int64), "floating-point tensor, got torch.int64"),
     (torch.ones(2, 3, dtype=torch.bool), "floating-point tensor, got torch.bool")],
)
def test_x_that_is_no_floating_point_batch_is_refused(x: object, message: str) -> None:
    model = gaussian_model()
    for name in NAMES:
        with pytest.raises(TypeError, match=message):
            SAMPLERS[name](model, x, grids.karras(4, 0.03, 14.6), disable=True)
    assert model.calls == 0


@pytest.mark.parametrize("name", PLANNED)
def test_a_batch_of_scalars_is_a_batch(name: str) -> None:
    """x of shape (B,) has its batch dimension and nothing else: sampled like (B, 1), not refused."""
    x, sigmas = start()[:, 0, 0, 0], grids.karras(4, 0.03, 14.6)
    out = SAMPLERS[name](gaussian_model(), x.clone(), sigmas, disable=True)
    assert out.shape == x.shape
    column = SAMPLERS[name](gaussian_model(), x[:, None], sigmas, disable=True)
    torch.testing.assert_close(out, column[:, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("sigmas", "error", "message"),
    [(None, TypeError, "sigmas must be a 1-D tensor or a sequence of numbers, got NoneType"),
     (5.0, TypeError, "got float"), ("14.6,5,0", TypeError, "got str"),
     ([14.6, "five", 0.0], ValueError, r"sigmas\[1\] = 'five'"),
     (torch.tensor([14.6, 1.0], dtype=torch.complex64), ValueError, r"sigmas\[0\] = \(14.6")],
)
def test_sigmas_that_are_no_real_numbers_are_named(sigmas: object, error: type, message: str) -> None:
    model = gaussian_model()
    for name in NAMES:
        with pytest.raises(error, match=message):
            SAMPLERS[name](model, start(), sigmas, disable=True)
    assert model.calls == 0


def test_sigmas_as_a_list_or_numpy_array_are_read_like_the_tensor() -> None:
    """The same grid (the model gets float32 sigmas from a list or array, float64 ones from a float64 tensor)."""
    grid = grids.karras(4, 0.03, 14.6)
    want = SAMPLERS["dpm_solver_pp_2m"](gaussian_model(), start(), grid, disable=True)
    for same in (grid.tolist(), grid.numpy(), tuple(grid.tolist())):
        torch.testing.assert_close(SAMPLERS["dpm_solver_pp_2m"](gaussian_model(), start(), same, disable=True), want,
                                   rtol=1e-6, atol=1e-7)


def test_extra_args_must_be_a_mapping_and_its_seed_an_integer() -> None:
    sigmas = grids.karras(4, 0.03, 14.6)
    for name in NAMES:
        with pytest.raises(TypeError, match=r"extra_args must be a mapping .* got list"):
            SAMPLERS[name](gaussian_model(), start(), sigmas, extra_args=[1, 2], disable=True)
    for name in [n for n in NAMES if SAMPLERS[n].stochastic]:
        same = SAMPLERS[name](gaussian_model(), start(), sigmas, extra_args={"seed": 5}, disable=True)
        for seed in (np.int64(5), torch.tensor(5)):
            torch.testing.assert_close(SAMPLERS[name](gaussian_model(), start(), sigmas, extra_args={"seed": seed},
                                                      disable=True), same, rtol=0, atol=0)
        for seed in ("abc", 1.7, True, torch.tensor(5.0)):
            with pytest.raises(ValueError, match=r"extra_args\['seed'\] must be an integer"):
                SAMPLERS[name](gaussian_model(), start(), sigmas, extra_args={"seed": seed}, disable=True)


@pytest.mark.parametrize("name", NAMES)
def test_grid_ending_at_zero_returns_the_last_denoised(name: str) -> None:
    sigmas = grids.karras(5, 0.03, 14.6)
    seen: list[dict] = []
    out = SAMPLERS[name](gaussian_model(), start(), sigmas, callback=seen.append, disable=True)
    assert seen[-1]["sigma"].item() == pytest.approx(0.03)
    torch.testing.assert_close(out, seen[-1]["denoised"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ODE_NAMES)
@pytest.mark.parametrize("schedule", ["ve", "flow"])
def test_grid_ending_above_zero_is_close_to_the_exact_solution(name: str, schedule: str) -> None:
    s0, s1 = (14.6, 0.5) if schedule == "ve" else (0.95, 0.3)
    sigmas = grids.uniform_lambda(12, s1, s0, schedule, append_zero=False)
    x = start(sigma=s0)
    out = SAMPLERS[name](gaussian_model(schedule), x, sigmas, schedule=schedule, disable=True)
    err = (out - exact(x, s0, s1, schedule)).abs().max().item()
    tolerance = 0.1 if order(name) == 1 else 0.03
    assert err < tolerance * exact(x, s0, s1, schedule).abs().max().item()


@pytest.mark.parametrize("name", [n for n in NAMES if structure(n) == "singlestep"])
def test_singlestep_split_sampling_equals_one_run(name: str) -> None:
    sigmas = grids.karras(9, 0.03, 14.6)
    opts = {"lower_order_final": False} if "lower_order_final" in SAMPLERS[name].defaults else {}
    x = start()
    full = SAMPLERS[name](gaussian_model(), x, sigmas, disable=True, **opts)
    half = SAMPLERS[name](gaussian_model(), x, sigmas[:5], disable=True, **opts)
    rest = SAMPLERS[name](gaussian_model(), half, sigmas[4:], disable=True, **opts)
    torch.testing.assert_close(rest, full, rtol=1e-12, atol=1e-12)


def uniform_t_flow_grid(n: int, shift: float = 3.0, t_min: float = 0.02) -> torch.Tensor:
    """Shifted flow grid uniform in t from t = 1 (sigma = 1 exactly) to t_min."""
    return torch.tensor([grids.flow_shift(1 - (1 - t_min) * k / n, shift) for k in range(n + 1)], dtype=torch.float64)


@pytest.mark.parametrize("name", [n for n in ODE_NAMES if n in PLANNED])
def test_flow_grid_from_sigma_one_is_finite_and_converges(name: str) -> None:
    x = start(sigma=1.0)
    errors = []
    for n in (20, 80):
        sigmas = uniform_t_flow_grid(n)
        model = gaussian_model("flow")
        out = SAMPLERS[name](model, x, sigmas, schedule="flow", disable=True)
        assert model.sigmas[0] == 1.0, "the first call must be at sigma = 1 exactly (no nudging)"
        assert torch.isfinite(out).all()
        errors.append((out - exact(x, 1.0, float(sigmas[-1]), "flow")).abs().max().item())
    assert errors[1] < (0.35 if order(name) == 1 else 0.15) * errors[0]
    assert errors[1] < (0.06 if order(name) == 1 else 0.02)


@pytest.mark.parametrize("name", NAMES)
def test_flow_grid_a_rounding_below_sigma_one_is_read_as_sigma_one(name: str) -> None:
    """float32 rounds 1 to 0.99999994 in some schedules: noise-prediction samplers then multiplied the model's error
    by alpha_t/alpha_s ~ 1e7 (DPM-Solver-fast: 4e9). Within 1e-6 of alpha = 0 the grid now starts at sigma = 1."""
    x = start(sigma=1.0, dtype=torch.float32)
    grid = torch.tensor([1.0, 0.9, 0.7, 0.5, 0.3, 0.1, 0.0])
    below = grid.clone()
    below[0] = 1.0 - 2.0**-24
    assert float(below[0]) < 1.0
    model = gaussian_model("flow")
    options = {"seed": 3} if SAMPLERS[name].stochastic else {}
    out = SAMPLERS[name](model, x, below, schedule="flow", disable=True, **options)
    assert model.sigmas[0] == 1.0
    assert torch.equal(out, SAMPLERS[name](gaussian_model("flow"), x, grid, schedule="flow", disable=True, **options))
    kept = grid.clone().double()
    kept[0] = 1.0 - 1e-5  # lambda -11.5: a real start, kept
    model = gaussian_model("flow")
    SAMPLERS[name](model, x.double(), kept, schedule="flow", disable=True, **options)
    assert model.sigmas[0] == 1.0 - 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_flow_grid_a_rounding_above_sigma_one_is_read_as_sigma_one(name: str) -> None:
    """float32 schedulers put a flow grid's top at 1 + 1.2e-7 (the ComfyUI nodes once snapped it themselves, the
    WebUI did not): up to 1e-5 above the top the grid reads as starting at sigma = 1, further up it is refused."""
    x = start(sigma=1.0, dtype=torch.float32)
    grid = torch.tensor([1.0, 0.9, 0.7, 0.5, 0.3, 0.1, 0.0], dtype=torch.float64)
    options = {"seed": 3} if SAMPLERS[name].stochastic else {}
    want = SAMPLERS[name](gaussian_model("flow"), x, grid, schedule="flow", disable=True, **options)
    for above in (1.0 + 2.0**-23, 1.0 + 1e-5):
        model = gaussian_model("flow")
        got = SAMPLERS[name](model, x, torch.cat([grid.new_tensor([above]), grid[1:]]), schedule="flow",
                             disable=True, **options)
        assert model.sigmas[0] == 1.0
        assert torch.equal(got, want)
    model = gaussian_model("flow")
    with pytest.raises(ValueError, match=r"sigmas\[0\] = 1.0001 exceeds the largest sigma 1.0 of the 'flow'"):
        SAMPLERS[name](model, x, torch.cat([grid.new_tensor([1.0001]), grid[1:]]), schedule="flow", disable=True,
                       **options)
    assert model.calls == 0


def test_only_an_alpha_zero_end_absorbs_sigmas_near_it() -> None:
    """A custom schedule whose largest sigma still has alpha > 0 keeps its sigmas (1e8 would have replaced 2e6)."""
    class CappedVE(VarianceExploding):
        name, sigma_max = "capped_ve", 1e8

    assert no_signal_end([2e6, 1e6, 10.0, 0.0], CappedVE()) == [2e6, 1e6, 10.0, 0.0]
    assert no_signal_end([1.0 - 2.0**-24, 0.5, 0.0], FLOW) == [1.0, 0.5, 0.0]


def test_a_nan_the_model_makes_from_a_half_latent_is_the_models() -> None:
    """The input check sums in float32: an fp16 latent's own sum overflowed to inf, and the model's NaN was blamed on
    the state."""
    x = torch.full((1, 4, 128, 128), 10.0, dtype=torch.float16)

    def broken(x: torch.Tensor, sigma: torch.Tensor, **_: object) -> torch.Tensor:
        return torch.full_like(x, float("nan"))

    with pytest.raises(NonFiniteModelOutput, match="the model returned NaN or inf at model call 0"):
        SAMPLERS["dpm_solver_pp_2m"](broken, x, grids.karras(3, 0.03, 14.6), disable=True)


def test_integer_options_take_numpy_integers() -> None:
    sigmas = grids.karras(6, 0.03, 14.6)
    want = SAMPLERS["dpm_solver_pp_pc"](gaussian_model(), start(), sigmas, order=2, disable=True)
    got = SAMPLERS["dpm_solver_pp_pc"](gaussian_model(), start(), sigmas, order=np.int64(2), disable=True)
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match=r"order must be an integer between 2 and 3, got np\.float64"):
        SAMPLERS["dpm_solver_pp_pc"](gaussian_model(), start(), sigmas, order=np.float64(2.0), disable=True)


@pytest.mark.parametrize("name", ODE_NAMES)
def test_first_flow_step_from_sigma_one_is_the_exact_ddim_limit(name: str) -> None:
    x = start(sigma=1.0)
    model = gaussian_model("flow")
    out = SAMPLERS[name](model, x, torch.tensor([1.0, 0.6], dtype=torch.float64), schedule="flow", disable=True)
    d = gaussian_model("flow")(x, torch.ones(x.shape[0], dtype=torch.float64))
    torch.testing.assert_close(out, 0.6 * x + 0.4 * d, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", PLANNED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_integrated_in_float32_and_returned_in_its_dtype(name: str, dtype: torch.dtype) -> None:
    sigmas = grids.karras(8, 0.03, 14.6).to(torch.float32)
    x = start(dtype=torch.float32)
    model = gaussian_model()
    out = SAMPLERS[name](model, x.to(dtype), sigmas, disable=True)
    assert out.dtype == dtype and set(model.dtypes) == {dtype}
    ref = SAMPLERS[name](gaussian_model(), x.to(dtype).float(), sigmas, disable=True)
    tol = 1e-2 if dtype == torch.float16 else 6e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


def expected_calls(name: str, n_intervals: int, low: bool) -> int:
    """Model calls on a grid of n intervals ending at 0: the final interval is one denoise call."""
    if structure(name) in ("multistep", "fast", "sds"):
        return n_intervals
    top = order(name)
    orders = [min(top, n_intervals - i if low else top) for i in range(n_intervals - 1)]
    return sum(orders) + 1


@pytest.mark.parametrize("name", PLANNED)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 20])
def test_model_calls_are_counted_and_reported(name: str, n: int) -> None:
    sigmas = grids.karras(n, 0.03, 14.6)
    entry = SAMPLERS[name]
    low = structure(name) == "multistep" and n < LOWER_ORDER_FINAL_BELOW
    seen: list[dict] = []
    model = gaussian_model()
    SAMPLERS[name](model, start(), sigmas, callback=seen.append, disable=True, extra_args={"token": 7})
    assert model.calls == expected_calls(name, n, low) == entry.count_model_calls(sigmas) == len(seen)
    assert [d["i"] for d in seen] == list(range(model.calls))
    assert all({"x", "i", "sigma", "sigma_hat", "denoised"} <= set(d) for d in seen)
    assert [d["sigma"].item() for d in seen] == pytest.approx(model.sigmas)
    assert all(extra == {"token": 7} for extra in model.extra)


def test_repeated_sigmas_are_no_ops() -> None:
    """Equal neighbours, and neighbours a float32 or float64 rounding apart (which once made h zero, a division by
    zero, or multistep weights of 1/h that blew the image up), are one point."""
    next_down = math.nextafter(1.0, 0.0)
    sigmas = torch.tensor([14.6, 5.0, 5.0, float(torch.tensor(4.9999995, dtype=torch.float32)), 1.0, next_down,
                           0.3, 0.3, 0.0], dtype=torch.float64)
    dedup = torch.tensor([14.6, 5.0, 1.0, 0.3, 0.0], dtype=torch.float64)
    assert float(torch.tensor(4.9999995, dtype=torch.float32)) < 5.0 and next_down < 1.0
    for name in NAMES:
        x = start()
        torch.testing.assert_close(SAMPLERS[name](gaussian_model(), x, sigmas, disable=True),
                                   SAMPLERS[name](gaussian_model(), x, dedup, disable=True), rtol=0, atol=0)
    assert distinct([2.0, 2.0 * (1 - 2e-6), 2.0 * (1 - 4e-6)], VE) == [2.0, 2.0 * (1 - 2e-6), 2.0 * (1 - 4e-6)]
    assert distinct([2.0, 2.0 * (1 - 5e-7), 2.0 * (1 - 9e-7), 2.0 * (1 - 2e-6), 0.0, 0.0], VE) == [
        2.0, 2.0 * (1 - 2e-6), 0.0]
    # the closeness is in lambda, the solvers' step: near flow sigma = 1 a relative 1e-8 in sigma is a real step
    near_one = [1.0, 1 - 1e-7, 1 - 1.1e-7, 1 - 1e-6, 0.5, 0.0]
    assert distinct(near_one, FLOW) == near_one
    assert distinct([0.5, 0.5 * (1 + 1e-7) - 1e-7, 0.0], FLOW) == [0.5, 0.0]


def test_dpm_solver_fast_order_schedule() -> None:
    from samplers.plan import fast_orders

    assert fast_orders(6) == [3, 2, 1]
    assert fast_orders(7) == [3, 3, 1]
    assert fast_orders(8) == [3, 3, 2]
    assert fast_orders(9) == [3, 3, 2, 1]
    for n in range(1, 40):
        assert sum(fast_orders(n)) == n


class ScheduleWithout:
    """The VE schedule with one of the NoiseSchedule members missing: a user's incomplete family object."""

    def __init__(self, missing: str) -> None:
        self._missing = missing

    def __getattr__(self, name: str) -> object:
        if name == self._missing or name.startswith("__"):
            raise AttributeError(name)
        return getattr(VE, name)

    def __repr__(self) -> str:
        return f"ScheduleWithout({self._missing!r})"


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        ("dpm_solver_pp_2m", {"bogus": 1}, TypeError, "bogus"),
        ("dpm_solver_pp_2m", {"r1": 0.5}, TypeError, "r1"),
        ("dpm_solver_1", {"solver_type": "taylor"}, TypeError, "solver_type"),
        ("dpm_solver_pp_2m", {"solver_type": "heun"}, ValueError, "solver_type"),
        ("dpm_solver_pp_3m", {"third_order": "exact"}, ValueError, "third_order"),
        ("dpm_solver_2", {"r1": 1.5}, ValueError, "r1"),
        ("dpm_solver_2", {"r1": "0.5"}, ValueError, "r1 must be a number, got '0.5'"),  # was read as 0.5
        ("dpm_solver_2", {"r1": True}, ValueError, "r1 must be a number, got True"),  # was "got 1.0"
        ("dpm_solver_3", {"r1": 0.7, "r2": 0.4}, ValueError, "r1 < r2"),
        ("dpm_solver_3", {"r1": 0.5, "r2": 0.5}, ValueError, "r1 < r2"),
        ("dpm_solver_pp_2m", {"schedule": "vp"}, ValueError, "schedule"),
        ("dpm_solver_pp_2m", {"schedule": object()}, ValueError, "alpha"),
        ("dpm_solver_pp_2m", {"schedule": ScheduleWithout("sigma_max")}, ValueError, "lacks sigma_max"),
        ("dpm_solver_pp_2m", {"schedule": ScheduleWithout("sigma_at")}, ValueError, "lacks sigma_at"),
        ("dpm_solver_pp_2m", {"lower_order_final": "yes"}, ValueError, "lower_order_final"),
        ("dpm_solver_pp_2m", {"thresholding": True, "threshold_quantile": 0.0}, ValueError, "threshold_quantile"),
        ("dpm_solver_pp_2m", {"thresholding": True, "threshold_max": 0.5}, ValueError, "threshold_max"),
        # checked with thresholding off too: a value that could never run is an error wherever it is set
        ("dpm_solver_pp_2m", {"threshold_quantile": 1.5}, ValueError, "dpm_solver_pp_2m: option threshold_quantile"),
        ("dpm_solver_pp_adaptive", {"threshold_max": 0.5}, ValueError, "option threshold_max must be >= 1"),
        ("dpm_solver_sds", {"threshold_quantile": float("nan")}, ValueError, "option threshold_quantile"),
        ("dpm_solver_pp_sde", {"threshold_max": "2"}, ValueError, "threshold_max must be a number"),
    ],
)
def test_impossible_options_name_the_option(name: str, options: dict, error: type, message: str) -> None:
    model = gaussian_model()
    with pytest.raises(error, match=message):
        SAMPLERS[name](model, start(), grids.karras(4, 0.03, 14.6), disable=True, **options)
    assert model.calls == 0


@pytest.mark.parametrize(("name", "steps", "lowered"),
                         [("dpm_solver_pp_3m", 4, True), ("dpm_solver_pp_3m", 5, False), ("dpm_solver_3", 4, False)])
def test_lower_order_final_auto_is_on_below_five_multistep_steps(name: str, steps: int, lowered: bool) -> None:
    """The default (auto) is what the README says: lower orders on the last steps for multistep samplers on grids of
    fewer than 5 steps, never for singlestep ones; on those grids on and off give different results."""
    sigmas = grids.karras(steps, 0.03, 14.6)
    run = {setting: SAMPLERS[name](gaussian_model(), start(), sigmas, disable=True, lower_order_final=setting)
           for setting in (True, False)}
    default = SAMPLERS[name](gaussian_model(), start(), sigmas, disable=True)
    assert not torch.equal(run[True], run[False])
    assert torch.equal(default, run[lowered])


@pytest.mark.parametrize(("name", "defaults", "other"),
                         [("dpm_solver_2", {"r1": 0.5}, {"r1": 0.4}),
                          ("dpm_solver_3", {"r1": 1 / 3, "r2": 2 / 3}, {"r1": 0.3, "r2": 2 / 3}),
                          ("dpm_solver_3", {"r1": 1 / 3, "r2": 2 / 3}, {"r1": 1 / 3, "r2": 0.7})])
def test_singlestep_intermediate_points_default_to_the_documented_fractions(name: str, defaults: dict,
                                                                             other: dict) -> None:
    """r1 and r2 unset are 1/2 (second order) and 1/3, 2/3 (third order), as the README's option table says."""
    sigmas = grids.karras(4, 0.03, 14.6)
    default = SAMPLERS[name](gaussian_model(), start(), sigmas, disable=True)
    assert torch.equal(default, SAMPLERS[name](gaussian_model(), start(), sigmas, disable=True, **defaults))
    assert not torch.equal(default, SAMPLERS[name](gaussian_model(), start(), sigmas, disable=True, **other))


@pytest.mark.parametrize("name", ["dpm_solver_2", "dpm_solver_pp_2s", "dpm_solver_3"])
def test_lower_order_final_on_lowers_second_and_third_order_singlestep_samplers(name: str) -> None:
    """Set on, the last step of a singlestep sampler of order 2 or 3 is first order: fewer model calls (on a grid
    that stops above 0, where the last step is not the one-call denoise anyway)."""
    sigmas = grids.karras(4, 0.03, 14.6, append_zero=False)
    on, off = gaussian_model(), gaussian_model()
    SAMPLERS[name](on, start(), sigmas, disable=True, lower_order_final=True)
    SAMPLERS[name](off, start(), sigmas, disable=True, lower_order_final=False)
    assert on.calls < off.calls


def test_sigmas_are_read_once_per_call() -> None:
    class CountingTensor(torch.Tensor):
        reads = 0

        def tolist(self):  # type: ignore[override]
            CountingTensor.reads += 1
            return super().tolist()

    for name in NAMES:
        CountingTensor.reads = 0
        sigmas = grids.karras(6, 0.03, 14.6).as_subclass(CountingTensor)
        SAMPLERS[name](gaussian_model(), start(), sigmas, disable=True)
        assert CountingTensor.reads == 1, name


def test_progress_bar_unless_disabled(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm", reason="tqdm is the optional progress bar")
    SAMPLERS["dpm_solver_pp_2m"](gaussian_model(), start(), grids.karras(5, 0.03, 14.6))
    assert "5/5" in capsys.readouterr().err
    SAMPLERS["dpm_solver_pp_2m"](gaussian_model(), start(), grids.karras(5, 0.03, 14.6), disable=True)
    assert capsys.readouterr().err == ""


def test_exception_in_callback_stops_at_once() -> None:
    model = gaussian_model()

    def interrupt(payload: dict) -> None:
        if payload["i"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SAMPLERS["dpm_solver_3"](model, start(), grids.karras(10, 0.03, 14.6), callback=interrupt, disable=True)
    assert model.calls == 2


@pytest.mark.parametrize("name", PLANNED)
def test_runs_under_inference_mode_deterministically_and_batch_independently(name: str) -> None:
    sigmas = grids.karras(7, 0.03, 14.6)
    x = start(n=5)
    with torch.inference_mode():
        a = SAMPLERS[name](gaussian_model(), x, sigmas, disable=True, thresholding=True, threshold_max=2.0)
        b = SAMPLERS[name](gaussian_model(), x[:1], sigmas, disable=True, thresholding=True, threshold_max=2.0)
    torch.testing.assert_close(a[:1], b, rtol=1e-12, atol=1e-12)


def test_thresholding_bounds_the_data_prediction() -> None:
    def wild(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return 5.0 * torch.sign(x)

    out = SAMPLERS["dpm_solver_pp_2m"](wild, start(), grids.karras(6, 0.03, 14.6), disable=True,
                                        thresholding=True, threshold_quantile=0.9, threshold_max=1.0)
    assert out.abs().max().item() <= 1.0 + 1e-12
    free = SAMPLERS["dpm_solver_pp_2m"](wild, start(), grids.karras(6, 0.03, 14.6), disable=True)
    assert free.abs().max().item() == pytest.approx(5.0)


def test_threshold_quantile_has_no_size_limit() -> None:
    """torch.quantile refuses rows of more than 2^24 values (one 3x2400x2400 image failed inside the loop): longer
    rows take two order statistics, interpolated as torch.quantile does."""
    g = torch.Generator().manual_seed(0)
    n = (1 << 24) + 1  # the shortest row torch.quantile refuses
    flat = torch.randperm(n, generator=g).double().reshape(1, n)  # 0..n-1 shuffled: the q-quantile is q (n - 1)
    for q in (0.001, 0.5, 0.995, 1.0):
        assert row_quantile(flat, q).item() == pytest.approx(q * (n - 1), rel=0, abs=1e-9)
    small = torch.rand(3, 1000, generator=g)
    assert torch.equal(row_quantile(small, 0.995), torch.quantile(small, 0.995, dim=1))
    image = torch.full((1, 3, 2400, 2400), 0.5)
    image[0, 0, 0, :200] = 4.0
    out = DynamicThreshold(0.99999, 8.0)(image)
    assert float(out.max()) == 1.0 and float(out[0, 1, 0, 0]) == 0.125  # s = 4: x0 / 4


@pytest.mark.parametrize(("quantile", "max_value", "message"), [
    (0.0, 1.0, "option threshold_quantile must be in \\(0, 1\\]"), (1.5, 1.0, "threshold_quantile must be in"),
    (0.5, 0.9, "option threshold_max must be >= 1"), (float("nan"), 1.0, "threshold_quantile"),
    ("0.9", 1.0, "threshold_quantile must be a number")])
def test_dynamic_threshold_built_directly_checks_its_values_as_the_samplers_do(
        quantile: object, max_value: object, message: str) -> None:
    """The class is checked by the samplers' option rules, so a direct user gets the same error (naming the option)."""
    with pytest.raises(ValueError, match=message):
        DynamicThreshold(quantile, max_value)  # type: ignore[arg-type]
    assert DynamicThreshold(1.0, 1.0).quantile == 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dynamic_threshold_keeps_the_dtype_and_the_precision_of_its_input(dtype: torch.dtype) -> None:
    """Half inputs (which torch.quantile refuses) are thresholded in float32; float64 keeps its precision."""
    x0 = torch.linspace(-3.0, 3.0, 1001, dtype=torch.float64).reshape(1, 1, 7, 143)
    s = torch.quantile(x0.abs().flatten(), 0.9).clamp(1.0, 4.0)
    want = x0.clamp(-s, s) / s
    got = DynamicThreshold(0.9, 4.0)(x0.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=0, atol=0 if dtype == torch.float64 else 1e-2)


def test_dynamic_threshold_cannot_be_changed_after_its_checks() -> None:
    with pytest.raises(AttributeError):
        DynamicThreshold().quantile = 5.0  # type: ignore[misc]


def test_dynamic_threshold_defaults_are_the_samplers_defaults() -> None:
    """DynamicThreshold() thresholds as a sampler run with thresholding=True and no other option does."""
    assert (DynamicThreshold().quantile, DynamicThreshold().max_value) == (0.995, 1.0)
    wild = torch.linspace(-5.0, 5.0, 4001).reshape(1, 1, 1, 4001)
    assert torch.equal(DynamicThreshold()(wild), wild.clamp(-1.0, 1.0))  # s = min(quantile, 1) = 1


class ScaledVP:
    """VP in its own scaling: alpha = sqrt(1 - sigma^2), a family given as an object."""

    name = "vp"
    sigma_max = 1.0

    def alpha(self, sigma: float) -> float:
        return math.sqrt(1.0 - sigma * sigma)

    def lambda_(self, sigma: float) -> float:
        return math.inf if sigma == 0 else (-math.inf if sigma == 1 else math.log(self.alpha(sigma) / sigma))

    def sigma_at(self, lam: float) -> float:
        return 1.0 / math.sqrt(1.0 + math.exp(2.0 * lam))


@pytest.mark.parametrize("name", NAMES)
def test_schedule_object_gives_the_ve_result_rescaled(name: str) -> None:
    """A VP model in VP scaling is the VE solver on sigma/alpha, times alpha: the updates are scale invariant."""
    vp = ScaledVP()

    def vp_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = float(sigma[0])
        a = vp.alpha(s)
        return MU + a * STD**2 / (a * a * STD**2 + s * s) * (x - a * MU)

    sigmas_vp = grids.uniform_lambda(9, 0.05, 0.999, vp, append_zero=True)
    alphas = [vp.alpha(float(s)) for s in sigmas_vp]
    sigmas_ve = torch.tensor([float(s) / a for s, a in zip(sigmas_vp, alphas, strict=True)], dtype=torch.float64)
    x_vp = start(sigma=1.0)
    out_vp = SAMPLERS[name](vp_model, x_vp, sigmas_vp, schedule=vp, disable=True)
    out_ve = SAMPLERS[name](gaussian_model(), x_vp / alphas[0], sigmas_ve, disable=True)
    torch.testing.assert_close(out_vp, out_ve * alphas[-1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_sampling_records_no_autograd_graph(name: str) -> None:
    """Like k-diffusion's samplers: a model with trainable weights, called outside no_grad, must not make the run
    keep every step's activations for a backward pass that never comes."""
    weight = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    inner = gaussian_model()

    def model(x: torch.Tensor, sigma: torch.Tensor, **extra: object) -> torch.Tensor:
        out = inner(x, sigma) * weight
        assert not out.requires_grad, "the model ran with autograd recording"
        return out

    out = SAMPLERS[name](model, start(), grids.karras(5, 0.03, 14.6), disable=True)
    assert not out.requires_grad and torch.isfinite(out).all()
