"""Calibrated grids (samplers/calibrate.py): the search improves the error, also on noises it never saw, the grid
parametrisation is monotone with fixed ends, files round-trip with their metadata, and bad inputs fail clearly."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from signatures import keyword_defaults

from samplers import grids
from samplers.bench.problems import SEED, ve_mixture
from samplers.bench.problems import reference_solution as exact_solution
from samplers.calibrate import (
    FORMAT,
    CalibratedGrid,
    CalibrationError,
    calibrate_grid,
    grid_from_theta,
    intervals_for_nfe,
    load_grid,
    model_calls,
    nelder_mead,
    reference_solution,
    save_grid,
    theta_from_grid,
)
from samplers.registry import SAMPLERS

SIGMA_MIN, SIGMA_MAX = 0.029, 14.6


def _exact_target(model: object, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """DOP853 to the last nonzero sigma, then the final denoise (what an exact solver returns on `sigmas`)."""
    last = float(sigmas[-2])
    state = exact_solution(model, x, SIGMA_MAX, last)
    return model(state, torch.full((x.shape[0],), last, dtype=x.dtype))


def _rmse(sampler: str, model: object, x: torch.Tensor, sigmas: torch.Tensor, target: torch.Tensor) -> float:
    out = SAMPLERS[sampler](model, x.clone(), sigmas, disable=True, schedule="ve")
    return float(((out - target) ** 2).mean().sqrt())


@pytest.fixture(scope="module")
def calibrated() -> dict[str, object]:
    """DPM-Solver 2M with 5 model calls on the VE mixture, calibrated on 32 noises, checked on 32 others."""
    problem = ve_mixture()
    model = problem.model
    train = problem.prior_noise(32, torch.Generator().manual_seed(11))
    held_out = problem.prior_noise(32, torch.Generator().manual_seed(12))
    initial = grids.karras(5, SIGMA_MIN, SIGMA_MAX)
    result = calibrate_grid(model, "dpm_solver_2m", 5, initial, train, "ve",
                            reference=_exact_target(model, train, initial), max_evals=150)
    return {"model": model, "train": train, "held_out": held_out, "initial": initial, "result": result}


def test_calibration_strictly_improves_the_objective(calibrated: dict[str, object]) -> None:
    result = calibrated["result"]
    assert isinstance(result, CalibratedGrid)
    assert result.objective_after < 0.8 * result.objective_before
    model, train = calibrated["model"], calibrated["train"]
    target = _exact_target(model, train, calibrated["initial"])
    assert _rmse("dpm_solver_2m", model, train, result.sigmas, target) == pytest.approx(result.objective_after,
                                                                                         rel=1e-9)


def test_calibrated_grid_keeps_its_ends_and_budget(calibrated: dict[str, object]) -> None:
    result, initial = calibrated["result"], calibrated["initial"]
    values = result.sigmas.tolist()
    assert len(values) == len(initial)
    assert values[0] == pytest.approx(SIGMA_MAX) and values[-2] == pytest.approx(SIGMA_MIN) and values[-1] == 0.0
    assert all(a > b for a, b in pairwise(values))
    assert model_calls("dpm_solver_2m", result.sigmas, "ve") == 5


def test_calibrated_grid_improves_held_out_noises(calibrated: dict[str, object]) -> None:
    model, held_out, initial = calibrated["model"], calibrated["held_out"], calibrated["initial"]
    target = _exact_target(model, held_out, initial)
    before = _rmse("dpm_solver_2m", model, held_out, initial, target)
    after = _rmse("dpm_solver_2m", model, held_out, calibrated["result"].sigmas, target)
    assert after < 0.9 * before


def test_theta_parametrisation_is_monotone_with_fixed_ends() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        theta = (torch.randn(6, generator=g, dtype=torch.float64) * 3).tolist()
        values = grid_from_theta(theta, 1.0, 0.05, 7, True)
        assert values[0] == 1.0 and values[-2] == 0.05 and values[-1] == 0.0 and len(values) == 9
        assert all(a > b for a, b in pairwise(values))
    initial = grids.karras(8, SIGMA_MIN, SIGMA_MAX).tolist()[:-1]
    again = grid_from_theta(theta_from_grid(initial), initial[0], initial[-1], len(initial) - 1, False)
    assert again == pytest.approx(initial, rel=1e-12)
    far = grid_from_theta([800.0, 790.0], 1.0, 0.05, 3, False)  # where a search may wander: no overflow
    assert far[0] == far[1] == 1.0 and far[-1] == 0.05 and 0.05 < far[2] < 0.0501  # gaps e^-800 : 1 : e^-10


def test_nelder_mead_finds_the_minimum_of_a_quadratic() -> None:
    x, value, evals = nelder_mead(lambda v: (v[0] - 1.0) ** 2 + 3.0 * (v[1] + 2.0) ** 2 + 0.5, [0.0, 0.0],
                                  max_evals=500, tol=1e-12)
    assert x == pytest.approx([1.0, -2.0], abs=1e-3) and value == pytest.approx(0.5, abs=1e-6) and evals <= 500


def test_nelder_mead_counts_its_evaluations_and_keeps_to_the_budget() -> None:
    """The evaluations returned are the calls made; a budget of the start simplex (dim + 1) makes no step, and a
    search that cannot converge (tol 0 on a function without a floor) stops at max_evals, overrunning it by at most
    a shrink's dim calls. Defaults as released: step 0.5, 400 evaluations, tolerance 1e-4."""
    calls: list[list[float]] = []

    def counted(v: list[float]) -> float:
        calls.append(list(v))
        return v[0] + 2.0 * v[1]

    x, value, evals = nelder_mead(counted, [0.0, 0.0], max_evals=3)
    assert evals == len(calls) == 3 and calls == [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]
    assert x == [0.0, 0.0] and value == 0.0
    calls.clear()
    _, _, evals = nelder_mead(counted, [0.0, 0.0], max_evals=40, tol=0.0)
    assert evals == len(calls) and 40 <= evals <= 42
    assert nelder_mead(lambda v: 0.0, [0.0, 0.0], max_evals=50)[2] == 3  # values that agree stop it, at 0 too
    def line(v: list[float]) -> float:
        return 1.0 + v[0]  # start values 1 and 1.5

    assert nelder_mead(line, [0.0], tol=0.5)[2] == 2  # spread 0.5 <= tol x the best value: stop
    assert nelder_mead(line, [0.0], max_evals=20, tol=0.4)[2] >= 20  # 0.5 > 0.4 x the best 1 (not x the worst 1.5)
    assert nelder_mead(lambda v: math.inf, [0.0, 0.0], max_evals=9)[2] >= 9  # infinite values never agree
    calls.clear()
    nelder_mead(lambda v: counted([max(v[0], 0.0), 0.0]), [0.0], max_evals=4)  # flat for v <= 0
    assert [c[0] for c in calls] == [0.0, 0.5, 0.0, 0.25]  # a reflection no better than the best is not expanded
    defaults = keyword_defaults(nelder_mead)
    assert defaults == {"step": 0.5, "max_evals": 400, "tol": 1e-4}


def test_nelder_mead_takes_the_steps_it_took_when_released() -> None:
    """Same model and noises, same calibrated grid across releases: the search's every point is pinned, on a
    function that makes it reflect, expand (taken and not), contract and shrink (a ring-shaped valley)."""
    calls: list[list[float]] = []

    def ring(v: list[float]) -> float:
        return abs((v[0] - 0.2) ** 2 + (v[1] - 0.1) ** 2 - 0.3) + 0.05 * v[1]

    def recorded(v: list[float]) -> float:
        calls.append(list(v))
        return ring(v)

    x, value, evals = nelder_mead(recorded, [0.0, 0.0], max_evals=80, tol=1e-12)
    assert evals == len(calls) == 80
    assert calls[:8] == [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5], [0.75, 0.75], [0.0, 1.0], [0.375, 0.25],
                         [0.25, 0.5]]
    assert x == pytest.approx([0.4823099239470139, 0.5693216435711292], rel=1e-12)
    assert value == pytest.approx(0.028504383895281607, rel=1e-12) and value == min(ring(c) for c in calls)
    checksum = sum((k + 1) * (p[0] + 3 * p[1]) for k, p in enumerate(calls))
    assert checksum == pytest.approx(7128.970282087019, rel=1e-12)


def test_calibration_defaults_as_released(capsys: pytest.CaptureFixture[str]) -> None:
    """calibrate_grid's search budget (400 evaluations, 2 restarts) and the reference's 400 log-sigma steps of
    DPM-Solver++ 3M (400 model calls, plus the final denoise on a grid ending at 0)."""
    defaults = keyword_defaults(calibrate_grid)
    assert defaults["max_evals"] == 400 and defaults["restarts"] == 2 and defaults["schedule"] == "ve"
    problem = ve_mixture()
    calls = []
    reference_solution(problem.model, problem.prior_noise(2, torch.Generator().manual_seed(3)),
                       grids.karras(4, SIGMA_MIN, SIGMA_MAX), "ve", callback=calls.append)
    assert len(calls) == 401 and calls[-1]["sigma"].item() == pytest.approx(SIGMA_MIN, rel=1e-6)
    assert capsys.readouterr().err == ""  # no progress bar of its own
    metadata = CalibratedGrid(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), "dpm_solver_2m", 2, "ve", 1.0, 0.5,
                              options={"b": 1, "a": 2}, info={"seed": "3", "model": "m"}).metadata()
    assert metadata["options"] == '{"a": 2, "b": 1}' and metadata["info"] == '{"model": "m", "seed": "3"}'
    grid = CalibratedGrid(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), "dpm_solver_2m", 2, "ve", 1.0, 0.5)
    assert grid.evaluations == 0 and grid.options == {} and grid.info == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.nfe = 3  # type: ignore[misc]


def test_one_interior_point_and_one_noise_are_calibrated(capsys: pytest.CaptureFixture[str]) -> None:
    """The smallest search: one interior sigma (2 gaps, 1 parameter), calibrated on a single noise."""
    problem = ve_mixture()
    x = problem.prior_noise(1, torch.Generator().manual_seed(7))
    initial = torch.tensor([SIGMA_MAX, 3.0, SIGMA_MIN, 0.0], dtype=torch.float64)
    reference, calls, seen = _exact_target(problem.model, x, initial), [], []

    def model(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(float(sigma[0]))
        return problem.model(y, sigma)

    result = calibrate_grid(model, "dpm_solver_2m", 3, initial, x, reference=reference, max_evals=40, restarts=1,
                            progress=lambda runs, best: seen.append((runs, best)))
    assert capsys.readouterr().err == ""  # no progress bar per run of the sampler
    once = calibrate_grid(problem.model, "dpm_solver_2m", 3, initial, x, reference=reference, max_evals=40,
                          restarts=0)  # at least one search
    assert once.evaluations == result.evaluations and torch.equal(once.sigmas, result.sigmas)
    twice = calibrate_grid(problem.model, "dpm_solver_2m", 3, initial, x, reference=reference, max_evals=40,
                           restarts=2)  # the second search starts from the first one's best: a new simplex
    assert twice.evaluations >= result.evaluations + 2 and twice.objective_after <= result.objective_after
    assert [r for r, _ in seen] == list(range(1, result.evaluations + 1)) and len(calls) == 3 * result.evaluations
    assert seen[0][1] == result.objective_before and seen[-1][1] == result.objective_after
    assert all(b <= a for (_, a), (_, b) in pairwise(seen))
    assert result.evaluations > 10 and result.objective_after < 0.7 * result.objective_before
    assert result.sigmas[0] == SIGMA_MAX and result.sigmas[2] == SIGMA_MIN and result.sigmas[1] != 3.0


def test_a_grid_ending_above_zero_stays_above_zero() -> None:
    """An img2img-style grid without the final 0 is calibrated as given: no 0 is appended, its last sigma stays."""
    problem = ve_mixture()
    x = problem.prior_noise(4, torch.Generator().manual_seed(8))
    initial = grids.karras(4, SIGMA_MIN, SIGMA_MAX)[:-1]
    result = calibrate_grid(problem.model, "dpm_solver_2m", 3, initial, x, max_evals=20, restarts=1)
    assert len(result.sigmas) == 4 and result.sigmas[-1] == initial[-1] and float(result.sigmas.min()) > 0.0
    assert result.objective_after < result.objective_before


def test_default_reference_matches_the_exact_solution() -> None:
    problem = ve_mixture()
    x = problem.prior_noise(8, torch.Generator().manual_seed(3))
    initial = grids.karras(6, SIGMA_MIN, SIGMA_MAX)
    ours = reference_solution(problem.model, x, initial, "ve")
    exact = _exact_target(problem.model, x, initial)
    assert float((ours - exact).abs().max()) < 2e-3


def test_intervals_for_nfe_fits_the_budget() -> None:
    def make(n: int) -> torch.Tensor:
        return grids.karras(n, SIGMA_MIN, SIGMA_MAX)

    assert intervals_for_nfe("dpm_solver_3m", 10, make, "ve") == 10
    n = intervals_for_nfe("dpm_solver_3", 10, make, "ve")
    assert model_calls("dpm_solver_3", make(n), "ve") <= 10 < model_calls("dpm_solver_3", make(n + 1), "ve")
    with pytest.raises(CalibrationError, match="nfe must be an integer"):
        intervals_for_nfe("dpm_solver_3m", 0, make, "ve")

    def nan_at_one_step(n: int) -> torch.Tensor:  # ComfyUI's kl_optimal cannot make a 1-step grid
        return torch.tensor([math.nan, 0.0]) if n == 1 else make(n)

    assert intervals_for_nfe("dpm_solver_3m", 10, nan_at_one_step, "ve") == 10

    def two_too_long(n: int) -> torch.Tensor:  # a scheduler whose 5- and 6-step grids cost more than its 7-step one
        return make(10 if n in (5, 6) else n)

    assert intervals_for_nfe("dpm_solver_2m", 1, make, "ve") == 1
    assert intervals_for_nfe("dpm_solver_2m", 9, two_too_long, "ve") == 9  # two overshoots in a row: go on
    assert intervals_for_nfe("dpm_solver_2m", 9, lambda n: make(12 if n < 3 else n), "ve") == 9  # at the start too
    assert intervals_for_nfe("dpm_solver_2m", 9, lambda n: make(12 if n in (5, 6, 7) else n), "ve") == 4  # 3: stop
    with pytest.raises(CalibrationError, match="needs more than nfe=1"):
        intervals_for_nfe("dpm_solver_3m", 1, nan_at_one_step, "ve")


def test_save_load_round_trip_keeps_grid_and_metadata(calibrated: dict[str, object], tmp_path: Path) -> None:
    result = calibrated["result"]
    path = save_grid(tmp_path / "sub" / "grid", result)
    assert path.name == "grid.safetensors" and path.is_file()
    loaded = load_grid(path, sampler="dpm_solver_2m", nfe=5)
    assert torch.equal(loaded.sigmas, result.sigmas)
    assert (loaded.sampler, loaded.nfe, loaded.schedule) == ("dpm_solver_2m", 5, "ve")
    assert loaded.objective_before == result.objective_before and loaded.objective_after == result.objective_after
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == FORMAT and meta["version"] == "1"
    assert float(meta["sigma_max"]) == pytest.approx(SIGMA_MAX)
    assert float(meta["sigma_last"]) == pytest.approx(SIGMA_MIN)


def test_load_refuses_another_sampler_or_budget(calibrated: dict[str, object], tmp_path: Path) -> None:
    path = save_grid(tmp_path / "grid.safetensors", calibrated["result"])
    with pytest.raises(CalibrationError, match="calibrated for sampler 'dpm_solver_2m', not 'dpm_solver_3m'"):
        load_grid(path, sampler="dpm_solver_3m")
    with pytest.raises(CalibrationError, match="calibrated for nfe=5, not 10"):
        load_grid(path, nfe=10)


def _write(path: Path, sigmas: list[float], **meta: str) -> Path:
    from safetensors.torch import save_file

    base = {"format": FORMAT, "version": "1", "sampler": "dpm_solver_2m", "nfe": "5", "schedule": "ve",
            "objective_before": "1.0", "objective_after": "0.5", "evaluations": "3", "options": "{}", "info": "{}"}
    save_file({"sigmas": torch.tensor(sigmas, dtype=torch.float64)}, str(path), metadata={**base, **meta})
    return path


def test_load_reports_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        load_grid(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CalibrationError, match="is not a safetensors file"):
        load_grid(junk)
    from safetensors.torch import save_file

    save_file({"weights": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CalibrationError, match="is not a calibrated grid file"):
        load_grid(tmp_path / "other.safetensors")
    with pytest.raises(CalibrationError, match="must be non-increasing"):
        load_grid(_write(tmp_path / "up.safetensors", [14.6, 1.0, 2.0, 0.1, 0.0]))
    with pytest.raises(CalibrationError, match="strictly decreasing"):
        load_grid(_write(tmp_path / "flat.safetensors", [14.6, 1.0, 1.0, 0.1, 0.0]))
    with pytest.raises(CalibrationError, match="more than its nfe=5"):
        load_grid(_write(tmp_path / "long.safetensors", grids.karras(8, SIGMA_MIN, SIGMA_MAX).tolist()))
    with pytest.raises(CalibrationError, match="version '9'"):
        load_grid(_write(tmp_path / "future.safetensors", [14.6, 1.0, 0.0], version="9"))
    with pytest.raises(CalibrationError, match="incomplete metadata"):
        load_grid(_write(tmp_path / "broken.safetensors", [14.6, 1.0, 0.0], nfe="five"))


def test_calibrate_reports_bad_inputs() -> None:
    problem = ve_mixture()
    x = problem.prior_noise(4, torch.Generator().manual_seed(5))
    initial = grids.karras(5, SIGMA_MIN, SIGMA_MAX)
    with pytest.raises(CalibrationError, match="'dpm_solver_pp_2m_sde' cannot be calibrated"):
        calibrate_grid(problem.model, "dpm_solver_pp_2m_sde", 5, initial, x, reference=x)
    with pytest.raises(CalibrationError, match="'nope' cannot be calibrated") as refused:
        calibrate_grid(problem.model, "nope", 5, initial, x, reference=x)
    usable = str(refused.value).split("one of ")[1].split(", ")
    assert usable == ["dpm_solver_1", "dpm_solver_2", "dpm_solver_3", "dpm_solver_2m", "dpm_solver_3m",
                      "dpm_solver_pp_2s", "dpm_solver_pp_3s", "dpm_solver_pp_2m", "dpm_solver_pp_3m",
                      "dpm_solver_fast", "dpm_solver_pp_pc"]
    with pytest.raises(CalibrationError, match="costs dpm_solver_2m 5 model calls, more than nfe=4"):
        calibrate_grid(problem.model, "dpm_solver_2m", 4, initial, x, reference=x)
    with pytest.raises(CalibrationError, match="initial: sigmas must be non-increasing"):
        calibrate_grid(problem.model, "dpm_solver_2m", 5, torch.tensor([14.6, 1.0, 3.0, 0.0]), x, reference=x)
    with pytest.raises(CalibrationError, match="x must hold at least one initial noise"):
        calibrate_grid(problem.model, "dpm_solver_2m", 5, initial, x[:0], reference=x[:0])
    with pytest.raises(CalibrationError, match="reference has shape"):
        calibrate_grid(problem.model, "dpm_solver_2m", 5, initial, x, reference=x[:2])


def test_a_grid_nothing_improves_is_returned_unchanged() -> None:
    problem = ve_mixture()
    x = problem.prior_noise(4, torch.Generator().manual_seed(6))
    initial = torch.tensor([SIGMA_MAX, SIGMA_MIN, 0.0], dtype=torch.float64)  # no interior point to move
    result = calibrate_grid(problem.model, "dpm_solver_2m", 2, initial, x, reference=torch.zeros_like(x))
    assert torch.equal(result.sigmas, initial) and result.objective_after == result.objective_before
    assert math.isfinite(result.objective_before)


@pytest.fixture(scope="module")
def calibrated_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    """samplers.bench.calibrated on one case and candidate: 16 calibration noises, 12 evaluation noises (not the
    mixture's 16 dimensions)."""
    from samplers.bench import calibrated as bench
    from samplers.bench.cases import select_cases

    folder = tmp_path_factory.mktemp("calibrated")
    case = select_cases(["ve_mixture/karras"])[0]
    results = bench.run_calibrated([case], [5], [bench.Candidate("dpm_solver_2m")], samples=16, max_evals=30,
                                   grids_dir=folder, evaluation=(12, 4))
    return results, folder


def test_calibrated_benchmark_runs_and_reports(calibrated_bench: tuple[dict[str, object], Path]) -> None:
    from samplers.bench import calibrated as bench

    results, folder = calibrated_bench
    case = results["cases"]["ve_mixture/karras"]
    row = case["nfes"]["5"]["dpm_solver_2m"]
    assert case["evaluation_samples"] == results["evaluation_samples"] == 12 and case["calibration_samples"] == 16
    assert (results["calibration_seed"], results["evaluation_seed"]) == (bench.CALIBRATION_SEED, SEED + 1)
    assert row["nfe"] == 5 and row["calibration_after"] < row["calibration_before"]
    assert row["n_steps"] == 5 and len(row["sigmas"]) == 6 and 0 < row["seconds"] < 600
    assert math.isfinite(row["standard_rmse"]) and math.isfinite(row["calibrated_rmse"])
    assert load_grid(folder / "ve_mixture_karras_dpm_solver_2m_5.safetensors", "dpm_solver_2m", 5).nfe == 5
    text = bench.report(results)
    assert "## ve_mixture/karras at NFE 5" in text and "DPM-Solver 2M" in text
    assert "`python -m samplers.bench.calibrated` (`--evaluate-only`" in text
    command = "python -m samplers.bench.calibrated --networks"
    assert f"`{command}`" in bench.report({**results, "command": command})


def test_evaluate_only_measures_the_saved_grids_again(calibrated_bench: tuple[dict[str, object], Path]) -> None:
    from samplers.bench import calibrated as bench

    results, _ = calibrated_bench
    row = results["cases"]["ve_mixture/karras"]["nfes"]["5"]["dpm_solver_2m"]
    again = bench.evaluate_calibrated(results, (12, 4))
    assert again["evaluation_seed"] == SEED + 1
    same = again["cases"]["ve_mixture/karras"]
    for field in ("standard_rmse", "standard_median", "calibrated_rmse", "calibrated_median"):
        assert same["nfes"]["5"]["dpm_solver_2m"][field] == pytest.approx(row[field], rel=1e-12), field
    other = bench.evaluate_calibrated(results, (40, 4))
    case = other["cases"]["ve_mixture/karras"]
    new = case["nfes"]["5"]["dpm_solver_2m"]
    assert other["evaluation_samples"] == case["evaluation_samples"] == 40
    assert {k: new[k] for k in ("calibration_before", "calibration_after", "sigmas", "evaluations")} == {
        k: row[k] for k in ("calibration_before", "calibration_after", "sigmas", "evaluations")}
    runner = bench.evaluation_runner(bench.case_named("ve_mixture/karras"), (40, 4))
    assert runner.x0.shape[0] == 40
    sigmas = torch.tensor(row["sigmas"], dtype=torch.float64)
    with torch.no_grad():
        out = SAMPLERS["dpm_solver_2m"](runner.case.problem.model, runner.x0.clone(), sigmas, disable=True,
                                        schedule="ve")
    direct = float(((out - runner.refs.target(sigmas)) ** 2).mean().sqrt())
    assert new["calibrated_rmse"] == pytest.approx(direct, rel=1e-12)
    assert new["calibrated_rmse"] != pytest.approx(row["calibrated_rmse"], rel=1e-6)  # other noises


def test_case_named_finds_benchmark_long_flow_and_network_cases() -> None:
    from samplers.bench.calibrated import case_named

    assert case_named("ve_mixture/karras").name == "ve_mixture/karras"
    long = case_named("flow_mixture/simple@20")
    assert long.name == "flow_mixture/simple@20" and long.grid(10).tolist()[-2] == case_named(
        "flow_mixture/simple").grid(20).tolist()[-2]
    assert case_named("digits_eps/karras", 7).problem.samples == 7
    for bad in ("nope/karras", "ve_mixture/karras@x", "ve_mixture/karras@20", "ve_mixture"):
        with pytest.raises(KeyError, match="no benchmark case named"):
            case_named(bad)


def test_evaluation_runner_takes_a_results_key() -> None:
    """A name is resolved by case_named: the long flow case by its key, on the analytic count of noises."""
    from samplers.bench.calibrated import evaluation_runner

    runner = evaluation_runner("flow_mixture/simple@20", (24, 4))
    assert runner.case.name == "flow_mixture/simple@20" and runner.x0.shape[0] == 24
    with pytest.raises(KeyError, match="no benchmark case named"):
        evaluation_runner("nope/karras", (24, 4))


def test_evaluate_only_cli_refuses_missing_results_and_bad_counts(tmp_path: Path) -> None:
    from samplers.bench.calibrated import main

    with pytest.raises(SystemExit):
        main(["--evaluate-only", "--out", str(tmp_path / "absent")])
    with pytest.raises(SystemExit):
        main(["--evaluate-only", "--evaluation-samples", "0", "--out", str(tmp_path / "absent")])


def test_calibrated_command_refuses_bad_selections_before_any_work(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A sampler that is not a calibration candidate (or a typo) once calibrated nothing and overwrote OUT with an
    empty table; now it is a usage error naming the candidates, like a bad NFE list or count."""
    from samplers.bench.calibrated import main

    out = tmp_path / "calibrated"
    wrong = {("--samplers", "dpm_solver_2"): "argument --samplers: unknown sampler(s) dpm_solver_2; choose from "
             "dpm_solver_2m, dpm_solver_3m, dpm_solver_pp_3m, dpm_solver_pp_pc, dpm_solver_3",
             ("--samplers", ","): "argument --samplers: expected comma-separated sampler names, got ','",
             ("--nfe", "ten"): "argument --nfe: expected comma-separated integers, got 'ten'",
             ("--samples", "0"): "argument --samples: expected an integer >= 1, got 0"}
    for (option, value), message in wrong.items():
        with pytest.raises(SystemExit) as exc:
            main([option, value, "--out", str(out)])
        assert exc.value.code == 2 and message in capsys.readouterr().err, (option, value)
    assert not out.with_suffix(".json").exists() and not out.with_suffix(".md").exists()


def test_long_flow_grids_end_where_the_twenty_step_grid_ends() -> None:
    from samplers.bench.calibrated import base_case_name, long_flow_case
    from samplers.bench.cases import select_cases

    flow = select_cases(["flow_mixture/simple"])[0]
    long = long_flow_case(flow)
    assert base_case_name(long.name) == flow.name
    for n in (2, 4, 10):
        values = long.grid(n).tolist()
        assert len(values) == n + 1 and values[0] == 1.0 and values[-1] == 0.0
        assert values[-2] == flow.grid(20).tolist()[-2]
        assert all(a > b for a, b in pairwise(values))
