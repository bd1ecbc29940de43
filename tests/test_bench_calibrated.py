"""samplers/bench/calibrated.py: its recorded commands still make the committed results' settings, the long flow
grid, the rows it measures, the metadata it saves, and the report's cells."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from samplers import grids
from samplers.bench import calibrated as bench
from samplers.bench.cases import select_cases
from samplers.bench.measure import CaseRunner, errors
from samplers.bench.problems import SEED
from samplers.registry import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("committed", ["calibrated.json", "calibrated_networks.json"])
def test_the_recorded_command_makes_the_committed_settings(committed: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/<committed> records its command; run through main today (the calibration stubbed), that command selects
    the same cases, budgets, candidates, counts and seeds, and writes both files where --out says."""
    record = json.loads((ROOT / "docs" / committed).read_text())
    seen: dict[str, Any] = {}

    def fake_run(cases: list[Any], nfes: list[int], candidates: list[bench.Candidate], samples: int,
                 max_evals: int, grids_dir: Path | None, evaluation: tuple[int, int]) -> dict[str, Any]:
        seen.update(cases=cases, nfes=nfes, candidates=candidates, samples=samples, max_evals=max_evals,
                    grids_dir=grids_dir, evaluation=evaluation)
        return {"calibration_seed": bench.CALIBRATION_SEED, "evaluation_seed": SEED + 1,
                "evaluation_samples": evaluation[0], "max_evals": max_evals, "cases": {}}

    monkeypatch.setattr(bench, "run_calibrated", fake_run)
    out = tmp_path / "new" / "folder" / "results"
    argv = [*shlex.split(record["command"])[3:], "--out", str(out)]
    bench.main(argv)
    monkeypatch.setattr(sys, "argv", ["calibrated.py", *argv])
    bench.main()  # from the command line, writing over the first run's files

    assert [case.name for case in seen["cases"]] == list(record["cases"])
    assert all(seen["nfes"] == [int(nfe) for nfe in case["nfes"]] for case in record["cases"].values())
    assert seen["max_evals"] == record["max_evals"] and seen["grids_dir"] is None
    assert (record["calibration_seed"], record["evaluation_seed"]) == (bench.CALIBRATION_SEED, SEED + 1)
    assert seen["evaluation"][0] == record["evaluation_samples"]
    for case in seen["cases"]:
        stored = record["cases"][case.name]
        network = bench.is_network(case)
        counts = (min(seen["samples"], bench.NETWORK_CALIBRATION_SAMPLES), seen["evaluation"][1]) if network \
            else (seen["samples"], seen["evaluation"][0])
        assert counts == (stored["calibration_samples"], stored["evaluation_samples"]), case.name
        for rows in stored["nfes"].values():
            assert [c.key for c in seen["candidates"]] == list(rows), case.name
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["command"] == shlex.join(["python", "-m", "samplers.bench.calibrated", *argv])
    assert out.with_suffix(".json").read_text() == json.dumps(written, indent=1) + "\n"
    assert out.with_suffix(".md").read_text() == bench.report(written) + "\n"


def test_long_flow_grids_are_shifted_uniform_times_down_to_the_twenty_step_end() -> None:
    """sigma_i = shift(1 + (1/20 - 1) i / (n - 1)) for i < n, then 0; one interval goes from sigma_max to 0."""
    flow = select_cases(["flow_mixture/simple"])[0]
    long = bench.long_flow_case(flow)
    assert long.grid(1).tolist() == [flow.problem.sigma_max, 0.0]
    for n in (2, 5):
        expected = [grids.flow_shift(1.0 + (1.0 / 20 - 1.0) * i / (n - 1), 3.0) for i in range(n)] + [0.0]
        assert long.grid(n).tolist() == pytest.approx(expected, rel=1e-15, abs=0.0)
    assert long.grid_name == "shift(t), t from 1 to 1/20" and long.grid(2) is long.grid(2)
    assert flow.name == "flow_mixture/simple" and not flow._grids.keys() & {1, 5}  # the case's own cache is not shared


def test_candidates_are_immutable_and_keyed_by_their_options() -> None:
    candidate = bench.Candidate("dpm_solver_3m", {"third_order": "consistent"})
    assert candidate.key == "dpm_solver_3m;third_order=consistent"
    assert candidate.label == f"{SAMPLERS['dpm_solver_3m'].label} (third_order=consistent)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidate.sampler = "dpm_solver_2m"  # type: ignore[misc]


def test_measured_row_is_both_grids_errors_without_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    """Each column is measure.errors of the sampler's output on that grid against that grid's reference."""
    runner = CaseRunner(select_cases(["ve_mixture/karras"])[0], 6)
    candidate = bench.Candidate("dpm_solver_2m")
    calibrated = runner.case.grid(4) * torch.tensor([1.0, 0.9, 0.8, 1.0, 1.0], dtype=torch.float64)
    row = bench.measured_row(runner, candidate, 4, calibrated)
    assert capsys.readouterr().err == ""
    for name, sigmas in (("standard", runner.case.grid(4)), ("calibrated", calibrated)):
        out = SAMPLERS["dpm_solver_2m"](runner.case.problem.model, runner.x0.clone(), sigmas, disable=True,
                                        schedule="ve")
        rmse, median = errors(out, runner.refs.target(sigmas))
        assert (row[f"{name}_rmse"], row[f"{name}_median"]) == (rmse, median), name
    assert row["standard_rmse"] != row["standard_median"]


def test_calibrate_case_records_the_case_and_its_noises_in_the_grid() -> None:
    case = select_cases(["ve_mixture/exponential"])[0]
    noises = bench.calibration_noise(case, 3)
    grid = bench.calibrate_case(case, 4, bench.Candidate("dpm_solver_2m"), noises,
                                bench.calibration_references(case, noises), max_evals=2)
    assert dict(grid.info) == {"problem": "ve_mixture/exponential", "initial_grid": case.grid_name,
                               "calibration_seed": str(bench.CALIBRATION_SEED), "calibration_samples": "3"}
    assert grid.sigmas[0] == case.grid(4)[0] and len(grid.sigmas) == 5


def test_evaluation_runner_counts_network_noises_apart() -> None:
    runner = bench.evaluation_runner("digits_eps/karras", (24, 3))
    assert runner.x0.shape[0] == 3 and bench.is_network(runner.case)


@pytest.mark.parametrize(("value", "best", "text"), [
    (None, False, "fail"), (math.nan, False, "fail"), (math.inf, True, "fail"),
    (1.5e-3, False, "1.50e-03"), (1.5e-3, True, "**1.50e-03**")])
def test_report_cells(value: float | None, best: bool, text: str) -> None:
    assert bench._cell(value, best) == text


def test_report_bolds_the_best_finite_calibrated_error() -> None:
    row = {"label": "L", "nfe": 4, "n_steps": 4, "standard_rmse": 1.0, "standard_median": 1.0,
           "calibration_before": 1.0, "calibration_after": 0.5}
    rows = {"a": {**row, "calibrated_rmse": None, "calibrated_median": None},
            "b": {**row, "calibrated_rmse": 0.5, "calibrated_median": 0.5},
            "c": {**row, "calibrated_rmse": 0.25, "calibrated_median": 0.25}}
    results = {"evaluation_seed": 1, "max_evals": 2, "calibration_seed": 3, "evaluation_samples": 4,
               "cases": {"x": {"grid": "g", "schedule": "ve", "data_std": 1.0, "calibration_samples": 2,
                               "nfes": {"4": rows}}}}
    text = bench.report(results)
    assert "**2.50e-01**" in text and "**5.00e-01**" not in text and "| fail |" in text
    assert "4.00x" in text and "—" in text


def test_the_committed_results_are_where_the_module_reads_them() -> None:
    assert bench.RESULTS == ROOT / "docs" / "calibrated.json" and bench.RESULTS.is_file()
    assert bench.NETWORK_RESULTS == ROOT / "docs" / "calibrated_networks.json" and bench.NETWORK_RESULTS.is_file()


def test_evaluation_counts_take_one_and_refuse_zero() -> None:
    parser = argparse.ArgumentParser()
    bench.add_evaluation_arguments(parser)
    assert bench.evaluation_counts(parser, parser.parse_args([])) == (4096, 128)
    ones = parser.parse_args(["--evaluation-samples", "1", "--network-evaluation-samples", "1"])
    assert bench.evaluation_counts(parser, ones) == (1, 1)
    with pytest.raises(SystemExit):
        bench.evaluation_counts(parser, parser.parse_args(["--network-evaluation-samples", "0"]))
