"""Learned plans (samplers/learned.py): they lower the held-out error, survive a file round trip, change nothing
when their corrections are zero, and refuse calls they do not fit."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from signatures import keyword_defaults

from samplers import grids
from samplers.bench.problems import ve_mixture
from samplers.calibrate import reference_solution
from samplers.learned import (
    GRID_RTOL,
    GridParameters,
    LearnedPlan,
    LearnedPlanError,
    _corrected,
    learn_plan,
    load_learned,
    plan_objective,
    plan_vector,
    save_learned,
    widen,
    zero_corrections,
)
from samplers.plan import Plan
from samplers.registry import SAMPLERS

PROBLEM = ve_mixture(7.5)
GRID = grids.karras(6, PROBLEM.sigma_min, PROBLEM.sigma_max)


def _noise(n: int, seed: int) -> torch.Tensor:
    return PROBLEM.data.prior_noise(n, PROBLEM.sigma_max, torch.Generator().manual_seed(seed))


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


@pytest.fixture(scope="module")
def calibration() -> tuple[torch.Tensor, torch.Tensor]:
    """The calibration noises and their exact solutions on GRID (read only)."""
    x = _noise(128, 1)
    return x, reference_solution(PROBLEM.model, x, GRID, "ve", steps=200)


@pytest.fixture(scope="module")
def learned(calibration: tuple[torch.Tensor, torch.Tensor]) -> LearnedPlan:
    x, reference = calibration
    return learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", reference, steps=40, info={"test": "yes"})


def _zero(sampler: str, **options: object) -> LearnedPlan:
    plan = SAMPLERS[sampler].plan(GRID, schedule="ve", **options)
    assert plan is not None
    corrections, shifts = zero_corrections(plan)
    return LearnedPlan(tuple(GRID.tolist()), sampler, "ve", tuple(sorted(options.items())),
                       tuple(len(s.terms) for s in plan.stages), corrections, shifts, 0.0, 0.0)


def test_learned_plan_lowers_the_error_on_held_out_noises(learned: LearnedPlan,
                                                          calibration: tuple[torch.Tensor, torch.Tensor]) -> None:
    assert learned.objective_after < 0.8 * learned.objective_before
    x, reference = calibration  # the error before learning is the plain sampler's on the calibration noises
    plain = _rms(SAMPLERS["dpm_solver_3m"](PROBLEM.model, x.clone(), GRID, disable=True), reference)
    assert learned.objective_before == pytest.approx(plain, rel=1e-9)
    x = _noise(256, 2)
    reference = reference_solution(PROBLEM.model, x, GRID, "ve", steps=200)
    entry = SAMPLERS["dpm_solver_3m"]
    plain = _rms(entry(PROBLEM.model, x.clone(), GRID, disable=True), reference)
    corrected = _rms(entry(PROBLEM.model, x.clone(), learned.grid, disable=True, learned_plan=learned), reference)
    assert corrected < 0.85 * plain
    assert entry.count_model_calls(GRID, learned_plan=learned) == entry.count_model_calls(GRID) == 6


def test_corrections_keep_constant_predictions_exact(learned: LearnedPlan) -> None:
    plan = SAMPLERS["dpm_solver_3m"].plan(GRID, schedule="ve", learned_plan=learned)
    plain = SAMPLERS["dpm_solver_3m"].plan(GRID, schedule="ve")
    assert plan is not None and plain is not None
    assert any(abs(c) > 0 for c in learned.corrections) and any(abs(t) > 0 for t in learned.shifts)
    for new, old in zip(plan.stages, plain.stages, strict=True):
        for kind in ("D", "eps"):
            assert sum(t.coef for t in new.terms if t.kind == kind) == pytest.approx(
                sum(t.coef for t in old.terms if t.kind == kind), abs=1e-12)
            if sum(t.kind == kind for t in old.terms) >= 2:  # two terms of a kind already take a correction
                assert any(a.coef != b.coef for a, b in zip(new.terms, old.terms, strict=True) if a.kind == kind)


def test_round_trip(learned: LearnedPlan, tmp_path: Path) -> None:
    path = save_learned(tmp_path / "plan", learned)
    assert path.name == "plan.safetensors"
    again = load_learned(path, sampler="dpm_solver_3m")
    assert again == learned
    assert dict(again.info) == {"test": "yes"}
    x = _noise(8, 3)
    entry = SAMPLERS["dpm_solver_3m"]
    assert torch.equal(entry(PROBLEM.model, x.clone(), again.grid, disable=True, learned_plan=again),
                       entry(PROBLEM.model, x.clone(), learned.grid, disable=True, learned_plan=learned))


@pytest.mark.parametrize(("sampler", "options"), [("dpm_solver_3m", {}), ("dpm_solver_pp_pc", {}),
                                                  ("dpm_solver_pp_3m", {"third_order": "consistent"})])
def test_zero_corrections_are_bit_identical(sampler: str, options: dict) -> None:
    x = _noise(16, 4)
    entry = SAMPLERS[sampler]
    plain = entry(PROBLEM.model, x.clone(), GRID, disable=True, **options)
    zero = entry(PROBLEM.model, x.clone(), GRID, disable=True, learned_plan=_zero(sampler, **options), **options)
    assert torch.equal(plain, zero)


def test_plan_cache_keeps_learned_and_plain_apart(learned: LearnedPlan) -> None:
    entry = SAMPLERS["dpm_solver_3m"]
    with_learned = entry.plan(GRID, learned_plan=learned)
    plain = entry.plan(GRID)
    assert with_learned is not None and plain is not None
    assert with_learned.stages != plain.stages
    assert entry.plan(GRID, learned_plan=learned) is with_learned


def test_clear_errors(learned: LearnedPlan, tmp_path: Path) -> None:
    with pytest.raises(LearnedPlanError, match="learned for dpm_solver_3m, not dpm_solver_2m"):
        SAMPLERS["dpm_solver_2m"].plan(GRID, learned_plan=learned)
    with pytest.raises(LearnedPlanError, match="only deterministic multistep"):
        SAMPLERS["dpm_solver_3"].plan(GRID, learned_plan=learned)
    with pytest.raises(LearnedPlanError, match=r"must be a samplers\.learned\.LearnedPlan"):
        SAMPLERS["dpm_solver_3m"].plan(GRID, learned_plan="plan.safetensors")
    with pytest.raises(LearnedPlanError, match="learned on the grid"):
        SAMPLERS["dpm_solver_3m"].plan(grids.karras(6, 0.03, 14.6), learned_plan=learned)
    with pytest.raises(LearnedPlanError, match="third_order='consistent'"):
        SAMPLERS["dpm_solver_3m"].plan(GRID, learned_plan=learned, third_order="consistent")
    with pytest.raises(LearnedPlanError, match="schedule 've'"):
        SAMPLERS["dpm_solver_3m"].plan(torch.tensor([0.9, 0.5, 0.2, 0.0]), learned_plan=learned, schedule="flow")
    with pytest.raises(LearnedPlanError, match="does not exist"):
        load_learned(tmp_path / "missing.safetensors")
    path = save_learned(tmp_path / "plan", learned)
    with pytest.raises(LearnedPlanError, match="learned for dpm_solver_3m, not dpm_solver_pp_pc"):
        load_learned(path, sampler="dpm_solver_pp_pc")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(LearnedPlanError, match="not a safetensors file"):
        load_learned(tmp_path / "junk.safetensors")
    x = _noise(4, 5)
    with pytest.raises(LearnedPlanError, match="only deterministic multistep"):
        learn_plan(PROBLEM.model, "dpm_solver_pp_3m_sde", GRID, x, "ve", x)
    with pytest.raises(LearnedPlanError, match="reference has shape"):
        learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", x[:2], steps=1)
    with pytest.raises(LearnedPlanError, match="steps must be"):
        learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", x, steps=-1)


def test_run_only_options_are_not_recorded() -> None:
    x = _noise(4, 6)
    zero = learn_plan(PROBLEM.model, "dpm_solver_pp_pc", GRID, x, "ve", x, options={"seed": 7}, steps=0)
    assert "seed" not in dict(zero.options) and dict(zero.options)["corrector"] == "unic"
    plain = SAMPLERS["dpm_solver_pp_pc"](PROBLEM.model, x.clone(), GRID, disable=True, seed=3)
    assert torch.equal(SAMPLERS["dpm_solver_pp_pc"](PROBLEM.model, x.clone(), GRID, disable=True, seed=3,
                                                    learned_plan=zero), plain)


def test_a_call_moved_beyond_sigma_max_is_refused() -> None:
    grid = torch.tensor([0.9, 0.5, 0.2, 0.0], dtype=torch.float64)
    plan = SAMPLERS["dpm_solver_3m"].plan(grid, schedule="flow")
    assert plan is not None
    corrections, shifts = zero_corrections(plan)
    moved = LearnedPlan(tuple(grid.tolist()), "dpm_solver_3m", "flow", (), tuple(len(s.terms) for s in plan.stages),
                        corrections, (0.2, *shifts[1:]), 0.0, 0.0)
    with pytest.raises(LearnedPlanError, match="beyond the schedule's sigma_max"):
        SAMPLERS["dpm_solver_3m"].plan(grid, schedule="flow", learned_plan=moved)


def test_max_sigma_caps_every_call() -> None:
    """A flow model sampled in the VE form is defined up to sigma 1: with max_sigma no call moves above it, and a
    positive max_sigma is required."""
    from samplers.bench.problems import flow_mixture

    flow = flow_mixture()
    grid = torch.tensor([1.0, 0.7, 0.45, 0.3, 0.2, 0.136], dtype=torch.float64)
    x = flow.data.prior_noise(64, 1.0, torch.Generator().manual_seed(3))
    reference = reference_solution(flow.model, x, grid, "ve", steps=200)
    capped = learn_plan(flow.model, "dpm_solver_3m", grid, x, "ve", reference, steps=30, max_sigma=1.0)
    calls = [s.sigma for s in SAMPLERS["dpm_solver_3m"].plan(grid, schedule="ve", learned_plan=capped).stages
             if s.evaluate]
    assert max(calls) <= 1.0 + 1e-12 and capped.objective_after < capped.objective_before
    free = learn_plan(flow.model, "dpm_solver_3m", grid, x, "ve", reference, steps=30)
    assert free.shifts[0] > 0.0, "without the cap the first call moves up (else the test shows nothing)"
    with pytest.raises(LearnedPlanError, match="max_sigma must be positive"):
        learn_plan(flow.model, "dpm_solver_3m", grid, x, "ve", reference, steps=0, max_sigma=0.0)


def test_max_sigma_below_the_top_of_a_ve_grid() -> None:
    """Calls above max_sigma may only move down, a call below it moves up to it at most (VE, calls above 1)."""
    grid = torch.tensor([14.6, 8.0, 1.3, 0.2, 0.029, 0.0], dtype=torch.float64)
    x = _noise(64, 1)
    reference = reference_solution(PROBLEM.model, x, grid, "ve", steps=200)
    cap = 1.35
    free = learn_plan(PROBLEM.model, "dpm_solver_3m", grid, x, "ve", reference, steps=30)
    assert free.shifts[2] > 1.5 * math.log(cap / 1.3), "uncapped, the call at 1.3 moves past the cap"
    capped = learn_plan(PROBLEM.model, "dpm_solver_3m", grid, x, "ve", reference, steps=30, max_sigma=cap)
    assert capped.shifts[0] <= 0.0 and capped.shifts[1] <= 0.0
    assert 1.3 < 1.3 * math.exp(capped.shifts[2]) <= cap * (1 + 1e-12)
    assert capped.objective_after < capped.objective_before


def test_grid_parameters_keep_the_ends_and_the_order() -> None:
    params = GridParameters(GRID.tolist())
    assert params.sigmas(params.w) == pytest.approx(GRID.tolist(), rel=1e-12)
    for seed in range(5):
        moved = params.sigmas(3.0 * torch.randn(params.w.shape, generator=torch.Generator().manual_seed(seed),
                                                dtype=torch.float64))
        assert (moved[0], moved[-2], moved[-1]) == (GRID[0].item(), GRID[-2].item(), 0.0)
        assert all(a > b for a, b in itertools.pairwise(moved))
        assert moved[1:-2] != pytest.approx(GRID[1:-2].tolist(), rel=1e-3)


@pytest.mark.parametrize("sampler", ["dpm_solver_3m", "dpm_solver_pp_pc"])
def test_grid_jacobian_matches_central_differences_of_the_plan(sampler: str) -> None:
    """The linearised plan has the plan's exact values and, along a random direction, the derivative that central
    differences of the plan builder give."""
    entry = SAMPLERS[sampler]

    def build(points: object) -> Plan:
        plan = entry.plan(torch.tensor(points, dtype=torch.float64), schedule="ve")
        assert plan is not None
        return plan

    params = GridParameters(GRID.tolist())
    with torch.no_grad():
        params.w += 0.3 * torch.randn(params.w.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    points, plan, vector = params.linearized(build)
    assert points == params.sigmas(params.w)
    assert vector.tolist() == plan_vector(plan) == plan_vector(build(params.sigmas(params.w)))
    direction = torch.randn(params.w.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    weights = torch.randn(vector.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (vector @ weights).backward()
    assert params.w.grad is not None
    step = 1e-4
    ahead, behind = (torch.tensor(plan_vector(build(params.sigmas(params.w + sign * step * direction))),
                                  dtype=torch.float64) for sign in (1.0, -1.0))
    expected = float(((ahead - behind) / (2 * step)) @ weights)
    assert float(params.w.grad @ direction) == pytest.approx(expected, rel=1e-4)
    assert abs(expected) > 1e-3, "the plan must depend on the grid (else the test shows nothing)"


def test_learned_grid_beats_the_fixed_grid_and_sampling_reproduces_its_objective(
        learned: LearnedPlan, calibration: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, reference = calibration
    moved = learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", reference, steps=40, learn_grid=True)
    assert (moved.sigmas[0], moved.sigmas[-2], moved.sigmas[-1]) == tuple(GRID[[0, -2, -1]].tolist())
    assert list(moved.sigmas[1:-2]) != pytest.approx(GRID[1:-2].tolist(), rel=1e-3)
    assert moved.objective_after < learned.objective_after
    entry = SAMPLERS["dpm_solver_3m"]
    sample = entry(PROBLEM.model, x.clone(), moved.grid, disable=True, learned_plan=moved)
    assert _rms(sample, reference) == pytest.approx(moved.objective_after, rel=1e-9)
    with pytest.raises(LearnedPlanError, match="learned on the grid"):
        entry.plan(GRID, learned_plan=moved)


def test_the_mean_objective_fits_the_typical_noise_and_is_recorded(
        learned: LearnedPlan, calibration: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    """objective="mean" minimises the mean of the per-noise RMS errors: from the same start and with as many steps,
    its plan has a lower mean error on the calibration noises than the RMSE plan; sampling reproduces its objective,
    and the file says which objective it was fitted to (an RMSE plan says nothing and reads as "rmse")."""
    x, reference = calibration
    mean = learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", reference, steps=40, objective="mean")
    entry = SAMPLERS["dpm_solver_3m"]

    def per_noise(plan: LearnedPlan) -> torch.Tensor:
        sample = entry(PROBLEM.model, x.clone(), plan.grid, disable=True, learned_plan=plan)
        return ((sample - reference) ** 2).reshape(x.shape[0], -1).mean(1).sqrt()

    mean_errors, rmse_errors = per_noise(mean), per_noise(learned)
    assert float(mean_errors.mean()) == pytest.approx(mean.objective_after, rel=1e-9)
    assert float(mean_errors.mean()) < float(rmse_errors.mean())
    assert plan_objective(mean) == "mean" and plan_objective(learned) == "rmse"
    assert "objective" not in dict(learned.info)
    assert plan_objective(load_learned(save_learned(tmp_path / "mean", mean))) == "mean"
    with pytest.raises(LearnedPlanError, match="objective must be one of"):
        learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x[:4], "ve", reference[:4], steps=1, objective="median")


@pytest.fixture(scope="module")
def wide(calibration: tuple[torch.Tensor, torch.Tensor]) -> LearnedPlan:
    """DPM-Solver 3M whose every committed stage also reads the D and eps of the 4 newest calls."""
    x, reference = calibration
    return learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", reference, steps=40, history=4)


def test_widen_adds_both_kinds_of_the_newest_calls_at_zero() -> None:
    plan = SAMPLERS["dpm_solver_pp_pc"].plan(GRID, schedule="ve")
    assert plan is not None
    assert widen(plan, 0) is plan
    wider = widen(plan, 3)
    calls = 0
    for old, new in zip(plan.stages, wider.stages, strict=True):
        assert new.terms[:len(old.terms)] == old.terms and all(t.coef == 0.0 for t in new.terms[len(old.terms):])
        read = {(t.index, t.kind) for t in new.terms}
        if old.commit and calls > 1:
            recent = range(max(0, calls - 3), calls)
            assert {(j, kind) for j in recent for kind in ("D", "eps")} <= read
        else:
            assert new == old, "no extra terms before two calls exist, nor in evaluation-only stages"
        assert all(j < calls for j, _ in read), "a stage reads only calls made before it"
        calls += int(old.evaluate)
    for j in range(wider.nfe):
        readers = [i for i, st in enumerate(wider.stages) if any(t.index == j for t in st.terms)]
        assert wider.last_use[j] == max(readers)
        assert wider.kinds[j] == {"D"} | {t.kind for st in wider.stages for t in st.terms if t.index == j}
    with pytest.raises(LearnedPlanError, match="only deterministic plans"):
        widen(SAMPLERS["dpm_solver_pp_2m_sde"].plan(GRID, schedule="ve"), 3)


@pytest.mark.parametrize("sampler", ["dpm_solver_3m", "dpm_solver_pp_pc"])
def test_a_widened_plan_with_zero_corrections_is_the_plain_sampler(sampler: str) -> None:
    """Extra terms at 0 change nothing but the work: the result is the plain sampler's, bit for bit."""
    x = _noise(16, 4)
    zero = learn_plan(PROBLEM.model, sampler, GRID, x, "ve", x, steps=0, history=4)
    assert zero.history == 4 and sum(zero.terms) > sum(len(s.terms) for s in SAMPLERS[sampler].plan(GRID).stages)
    entry = SAMPLERS[sampler]
    plain = entry(PROBLEM.model, x.clone(), GRID, disable=True)
    assert torch.equal(entry(PROBLEM.model, x.clone(), GRID, disable=True, learned_plan=zero), plain)


def test_a_wider_history_fits_better_keeps_first_order_and_round_trips(wide: LearnedPlan, learned: LearnedPlan,
                                                                       tmp_path: Path) -> None:
    """From the same start with as many steps, reading the 4 newest calls in both forms fits the calibration noises
    better than the sampler's own terms, does better on held-out noises than the plain sampler, keeps each stage's
    sum per kind (first order), and the file keeps the history."""
    assert wide.objective_after < 0.9 * learned.objective_after
    x = _noise(256, 2)
    reference = reference_solution(PROBLEM.model, x, GRID, "ve", steps=200)
    entry = SAMPLERS["dpm_solver_3m"]
    sample = entry(PROBLEM.model, x.clone(), wide.grid, disable=True, learned_plan=wide)
    assert _rms(sample, reference) < 0.85 * _rms(entry(PROBLEM.model, x.clone(), GRID, disable=True), reference)
    plan = entry.plan(GRID, learned_plan=wide)
    plain = widen(entry.plan(GRID), 4)
    assert plan is not None
    for kind in ("D", "eps"):  # terms widen added at 0 move: a D term in an eps sampler, eps beside its final D
        assert any(a.coef != 0.0 for new, old in zip(plan.stages, plain.stages, strict=True)
                   for a, b in zip(new.terms, old.terms, strict=True) if a.kind == kind and b.coef == 0.0), kind
    for new, old in zip(plan.stages, plain.stages, strict=True):
        for kind in ("D", "eps"):
            assert sum(t.coef for t in new.terms if t.kind == kind) == pytest.approx(
                sum(t.coef for t in old.terms if t.kind == kind), abs=1e-12)
    again = load_learned(save_learned(tmp_path / "wide", wide))
    assert again == wide and again.history == 4
    assert load_learned(save_learned(tmp_path / "narrow", learned)).history == 0


def test_history_errors(wide: LearnedPlan) -> None:
    x = _noise(4, 5)
    for bad in (-1, 2.5, True):
        with pytest.raises(LearnedPlanError, match="history must be an integer >= 0"):
            learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", x, steps=0, history=bad)
    narrowed = LearnedPlan(wide.sigmas, wide.sampler, wide.schedule, wide.options, wide.terms, wide.corrections,
                           wide.shifts, wide.objective_before, wide.objective_after, wide.info, 0)
    with pytest.raises(LearnedPlanError, match="does not match the sampler's plan"):
        SAMPLERS["dpm_solver_3m"].plan(GRID, learned_plan=narrowed)


def test_a_file_with_a_bad_history_is_refused(wide: LearnedPlan, tmp_path: Path) -> None:
    from samplers.learned import FORMAT, FORMAT_VERSION
    from samplers.tensorfile import read_tensors, write_tensors

    path = save_learned(tmp_path / "wide", wide)
    tensors, meta = read_tensors(path, kind="learned plan", fmt=FORMAT, version=FORMAT_VERSION, required=(),
                                 error=LearnedPlanError)
    for bad in ("-1", "four", ""):
        write_tensors(tmp_path / "bad", tensors, {**meta, "history": bad})
        with pytest.raises(LearnedPlanError, match=f"history must be an integer >= 0, got '{bad}'"):
            load_learned(tmp_path / "bad.safetensors")


def test_learn_plan_defaults_as_released() -> None:
    """Same model and noises, same plan across releases: the fitting defaults, the grid Jacobian's step, the grid
    tolerance, and a plan's metadata (history 0 unless widened; options and info as sorted JSON)."""
    defaults = keyword_defaults(learn_plan)
    assert {k: defaults[k] for k in ("schedule", "steps", "lr", "learn_grid", "objective", "history")} == {
        "schedule": "ve", "steps": 600, "lr": 2e-2, "learn_grid": False, "objective": "rmse", "history": 0}
    assert GridParameters.STEP == 1e-6 and GRID_RTOL == 1e-5
    plan = LearnedPlan((2.0, 1.0, 0.0), "dpm_solver_2m", "ve", (("b", 1), ("a", 2)), (0, 1), (0.0,), (0.0, 0.0),
                       1.0, 0.5, (("seed", "3"), ("model", "m")))
    assert plan.history == 0
    metadata = plan.metadata()
    assert metadata["history"] == "0" and metadata["nfe"] == "2"
    assert metadata["options"] == '{"a": 2, "b": 1}' and metadata["info"] == '{"model": "m", "seed": "3"}'


def test_the_grid_tolerance_is_relative(learned: LearnedPlan) -> None:
    """A host's sigmas may differ from the learned grid by GRID_RTOL relatively (float32 sigmas do), not more."""
    entry = SAMPLERS["dpm_solver_3m"]
    for close in (learned.grid.to(torch.float32), learned.grid * (1 + 0.8 * GRID_RTOL)):
        assert entry.plan(close, learned_plan=learned) is not None
    with pytest.raises(LearnedPlanError, match="learned on the grid"):
        entry.plan(learned.grid * (1 + 1.2 * GRID_RTOL), learned_plan=learned)


def test_learn_plan_refuses_bad_arguments() -> None:
    x = _noise(4, 5)
    for sampler in ("nope", "dpm_solver_sds"):  # not a sampler; a sampler without a plan
        with pytest.raises(LearnedPlanError, match=f"unknown sampler {sampler!r}"):
            learn_plan(PROBLEM.model, sampler, GRID, x, "ve", x, steps=0)
    for lr in (0.0, -0.5, "fast"):
        with pytest.raises(LearnedPlanError, match="lr must be a positive number"):
            learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", x, steps=0, lr=lr)
    for bad in (torch.tensor(1.0), x[:0]):
        with pytest.raises(LearnedPlanError, match="at least one initial noise"):
            learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, bad, "ve", steps=0)


def test_one_noise_and_scalar_noises_are_learned_from() -> None:
    """A batch of one noise, and noises without feature dimensions (shape (B,)): the batch comes first, whatever
    follows. The scalar model is a Gaussian's exact denoiser, D = y s^2 / (s^2 + sigma^2)."""
    one = _noise(1, 5)
    reference = reference_solution(PROBLEM.model, one, GRID, "ve", steps=50)
    single = learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, one, "ve", reference, steps=5)
    assert single.objective_after < single.objective_before

    def gaussian(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return y * 0.25 / (0.25 + sigma**2)

    scalars = 14.6 * torch.randn(8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = scalars * math.sqrt(0.25 + 0.029**2) / math.sqrt(0.25 + 14.6**2)  # x(sigma) ~ sqrt(s^2 + sigma^2)
    grid = torch.tensor([14.6, 2.0, 0.4, 0.029], dtype=torch.float64)
    fitted = learn_plan(gaussian, "dpm_solver_3m", grid, scalars, "ve", exact, steps=5)
    assert fitted.objective_after < fitted.objective_before


def test_corrections_are_zero_sum_per_kind_and_scaled_by_the_largest_coefficient() -> None:
    """c = s_k (raw - mean of raw over kind k); s_k the largest |b| of kind k, or, where a kind's coefficients are all
    0, the other kind's converted by the newest call's sigma (eps coefficient = sigma x D coefficient); a kind with
    one term takes no correction."""
    raw = torch.tensor([0.1, 0.3, 0.2, -0.4], dtype=torch.float64)
    kinds = torch.tensor([0, 0, 1, 1])
    d_only = _corrected(torch.tensor([2.0, -3.0, 0.0, 0.0], dtype=torch.float64), kinds, raw, 2.0)
    assert d_only.tolist() == pytest.approx([3.0 * -0.1, 3.0 * 0.1, 6.0 * 0.3, 6.0 * -0.3], rel=1e-12)
    eps_only = _corrected(torch.tensor([0.0, 0.0, 1.5, -0.5], dtype=torch.float64), kinds, raw, 2.0)
    assert eps_only.tolist() == pytest.approx([0.75 * -0.1, 0.75 * 0.1, 1.5 * 0.3, 1.5 * -0.3], rel=1e-12)
    one_eps = _corrected(torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64), torch.tensor([0, 0, 1]), raw[:3], 2.0)
    assert one_eps.tolist() == pytest.approx([2.0 * -0.1, 2.0 * 0.1, 0.0], rel=1e-12)
    assert _corrected(torch.ones(3, dtype=torch.float64), torch.tensor([0, 0, 1]), None, 2.0).tolist() == [0.0] * 3


def test_a_learned_plan_is_what_it_was_when_released() -> None:
    """Same model, noises and steps, same widened plan across releases (every correction and shift pinned)."""
    x = _noise(16, 9)
    reference = reference_solution(PROBLEM.model, x, GRID, "ve", steps=50)
    plan = learn_plan(PROBLEM.model, "dpm_solver_3m", GRID, x, "ve", reference, steps=3, history=2)
    assert len(plan.corrections) == 24 and len(plan.shifts) == 6
    assert plan.corrections[:3] == pytest.approx((0.0, 0.12089019239280412, -0.12089019239280412), rel=1e-9)
    checksum = sum((k + 1) * c for k, c in enumerate(plan.corrections))
    assert checksum == pytest.approx(-0.36216363242596067, rel=1e-9)
    assert sum((k + 1) * t for k, t in enumerate(plan.shifts)) == pytest.approx(0.05999895462521233, rel=1e-9)
    assert plan.objective_before == pytest.approx(0.2923359469937322, rel=1e-9)
    assert plan.objective_after == pytest.approx(0.13966742898794698, rel=1e-9)


def test_a_flow_grid_from_sigma_1_keeps_its_first_call_there() -> None:
    """At sigma = 1 a flow model sees pure noise (alpha = 0): that call is not shifted, the others are, and sampling
    with the plan reproduces its objective."""
    from samplers.bench.problems import flow_mixture

    flow = flow_mixture()
    grid = torch.tensor([1.0, 0.75, 0.5, 0.3, 0.15, 0.05, 0.0], dtype=torch.float64)
    x = flow.data.prior_noise(64, 1.0, torch.Generator().manual_seed(3))
    reference = reference_solution(flow.model, x, grid, "flow", steps=200)
    fitted = learn_plan(flow.model, "dpm_solver_pp_3m", grid, x, "flow", reference, steps=20)
    assert fitted.shifts[0] == 0.0 and all(t != 0.0 for t in fitted.shifts[1:])
    assert fitted.objective_after < fitted.objective_before
    sample = SAMPLERS["dpm_solver_pp_3m"](flow.model, x.clone(), fitted.grid, disable=True, schedule="flow",
                                          learned_plan=fitted)
    assert _rms(sample, reference) == pytest.approx(fitted.objective_after, rel=1e-9)


def test_learn_grid_on_a_grid_without_interior_points() -> None:
    """Nothing to move: the grid stays, the corrections and shifts are still learned."""
    grid = torch.tensor([14.6, 0.029, 0.0], dtype=torch.float64)
    x = _noise(16, 3)
    reference = reference_solution(PROBLEM.model, x, grid, "ve", steps=100)
    fitted = learn_plan(PROBLEM.model, "dpm_solver_3m", grid, x, "ve", reference, steps=5, learn_grid=True)
    assert fitted.sigmas == tuple(grid.tolist()) and fitted.objective_after < fitted.objective_before
