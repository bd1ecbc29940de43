"""The learned-plan benchmark glue (samplers/bench/learned.py): calibrated grids found in both result layouts,
saved plans turned into comparison candidates, and a candidate's per-case learned plan reaching the sampler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from samplers.bench.calibrated import CALIBRATION_SEED, EVALUATION_SAMPLES, case_named, evaluation_runner
from samplers.bench.cases import select_cases
from samplers.bench.comparison import our_runs
from samplers.bench.learned import (
    LEARN_SAMPLES,
    NETWORK_LEARN_SAMPLES,
    RUNS,
    comfyui_best,
    comparison_candidates,
    grid_rows,
    merged_cases,
    plan_file,
)
from samplers.bench.measure import CaseRunner
from samplers.bench.networks import is_network
from samplers.bench.problems import SEED
from samplers.calibrate import reference_solution
from samplers.learned import LearnedPlan, learn_plan, load_learned, plan_objective, save_learned
from samplers.registry import SAMPLERS

VE_GRID = [14.6, 3.0, 1.0, 0.3, 0.1, 0.029, 0.0]
FLOW_GRID = [1.0, 0.7, 0.45, 0.3, 0.2, 0.136]


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


def test_grid_rows_reads_both_layouts(tmp_path: Path) -> None:
    _write(tmp_path / "calibrated.json", {"cases": {"ve_mixture/karras": {"schedule": "ve", "nfes": {"10": {
        "dpm_solver_3m;third_order=consistent": {"label": "DPM-Solver 3M", "sampler": "dpm_solver_3m",
                                                 "options": {"third_order": "consistent"}, "sigmas": VE_GRID}}}}}})
    _write(tmp_path / "flow_lownfe.json", {"cases": {"flow_mixture/simple": {"calibrated": [
        {"sampler": "dpm_solver_pp_pc", "schedule": "ve", "nfe": 10, "sigmas": FLOW_GRID},
        {"sampler": "dpm_solver_pp_pc", "schedule": "flow", "nfe": 20, "sigmas": FLOW_GRID}]}}})
    ve = grid_rows("ve_mixture/karras", tmp_path)
    assert list(ve) == ["dpm_solver_3m;third_order=consistent"]
    assert ve["dpm_solver_3m;third_order=consistent"]["options"] == {"third_order": "consistent"}
    flow = grid_rows("flow_mixture/simple", tmp_path)
    assert list(flow) == ["dpm_solver_pp_pc@ve"], "only 10-call grids are read"
    assert flow["dpm_solver_pp_pc@ve"]["schedule"] == "ve" and "VE form" in flow["dpm_solver_pp_pc@ve"]["label"]
    assert grid_rows("digits_eps/karras", tmp_path) == {}
    assert plan_file("flow_mixture/simple", "dpm_solver_3m;third_order=consistent") == \
        "flow_mixture_simple_dpm_solver_3m_third_order-consistent_10"
    assert plan_file("flow_mixture/simple", "dpm_solver_pp_pc@ve") == "flow_mixture_simple_dpm_solver_pp_pc_ve_10"


def _learn(case_name: str, schedule: str, grid: list[float], steps: int = 15) -> LearnedPlan:
    case = select_cases([case_name])[0]
    sigmas = torch.tensor(grid, dtype=torch.float64)
    x = case.problem.prior_noise(32, dtype=torch.float64)
    reference = reference_solution(case.problem.model, x, sigmas, schedule, steps=200)
    return learn_plan(case.problem.model, "dpm_solver_3m", sigmas, x, schedule, reference, steps=steps,
                      info={"problem": case_name, "problem_schedule": case.schedule})


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plans")
    save_learned(folder / "ve", _learn("ve_mixture/karras", "ve", VE_GRID))
    save_learned(folder / "flow_ve_form", _learn("flow_mixture/simple", "ve", FLOW_GRID))
    return folder


def test_saved_plans_become_candidates(plans: Path) -> None:
    found = {c.label: c for c in comparison_candidates(plans)}
    assert set(found) == {"DPM-Solver 3M [learned plan]", "DPM-Solver 3M [learned plan, VE form]"}
    ve = found["DPM-Solver 3M [learned plan]"]
    assert list(ve.grid) == ["ve_mixture/karras"] and ve.options["schedule"] == "ve"
    assert isinstance(ve.case_options["ve_mixture/karras"]["learned_plan"], LearnedPlan)
    flow = found["DPM-Solver 3M [learned plan, VE form]"]
    assert list(flow.grid) == ["flow_mixture/simple"] and flow.options["schedule"] == "ve"
    assert comparison_candidates(plans / "missing") == []


def test_candidates_with_other_options_get_their_own_label(tmp_path: Path) -> None:
    case = select_cases(["ve_mixture/karras"])[0]
    sigmas = torch.tensor(VE_GRID, dtype=torch.float64)
    x = case.problem.prior_noise(8, dtype=torch.float64)
    for name, options in (("plain", {}), ("consistent", {"third_order": "consistent"})):
        save_learned(tmp_path / name, learn_plan(case.problem.model, "dpm_solver_3m", sigmas, x, "ve", x,
                                                 options, steps=0, info={"problem": "ve_mixture/karras"}))
    labels = sorted(c.label for c in comparison_candidates(tmp_path))
    assert labels == ["DPM-Solver 3M (third_order=consistent) [learned plan]", "DPM-Solver 3M [learned plan]"]


def test_two_plans_for_one_case_are_refused(plans: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.safetensors").write_bytes((plans / "ve.safetensors").read_bytes())
    with pytest.raises(ValueError, match="two learned plans of dpm_solver_3m"):
        comparison_candidates(tmp_path)


def test_the_learned_plan_reaches_the_sampler(plans: Path) -> None:
    candidate = next(c for c in comparison_candidates(plans) if c.label == "DPM-Solver 3M [learned plan]")
    runner = CaseRunner(select_cases(["ve_mixture/karras"])[0], 16)
    cells = our_runs(runner, candidate, 10)
    assert len(cells) == 1 and cells[0]["nfe"] == 6
    learned = candidate.case_options["ve_mixture/karras"]["learned_plan"]
    entry, reference = SAMPLERS["dpm_solver_3m"], runner.refs.target(learned.grid)
    rmse = {}
    for name, extra in (("plain", {}), ("learned", {"learned_plan": learned})):
        out = entry(runner.case.problem.model, runner.x0.clone(), learned.grid, disable=True, schedule="ve", **extra)
        rmse[name] = float(((out - reference) ** 2).mean().sqrt())
    assert cells[0]["rmse"] == pytest.approx(rmse["learned"], rel=1e-12)
    assert abs(rmse["learned"] - rmse["plain"]) > 1e-3 * rmse["plain"], "corrections must change the result"


def test_calibrated_candidates_read_the_analytic_and_network_results(tmp_path: Path) -> None:
    from samplers.bench.calibrated import comparison_candidates as calibrated_candidates

    row = {"label": "DPM-Solver 3M", "sampler": "dpm_solver_3m", "options": {}, "sigmas": VE_GRID}
    _write(tmp_path / "a.json", {"cases": {"ve_mixture/karras": {"nfes": {"10": {"dpm_solver_3m": row}}}}})
    _write(tmp_path / "b.json", {"cases": {"digits_eps/karras": {"nfes": {"10": {"dpm_solver_3m": row}}}}})
    (found,) = calibrated_candidates((tmp_path / "a.json", tmp_path / "b.json", tmp_path / "absent.json"))
    assert found.label == "DPM-Solver 3M, calibrated grid"
    assert sorted(found.grid) == ["digits_eps/karras", "ve_mixture/karras"]


def test_command_learns_saves_and_merges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m samplers.bench.learned`: one case on a few noises writes the plan, the JSON and the table;
    --update keeps the other cases of an earlier result; unknown cases are refused by name."""
    from samplers.bench.learned import main

    out = tmp_path / "learned"
    kept = {"evaluation_samples": 128, "candidates": {}, "comfyui": None}
    out.with_suffix(".json").write_text(json.dumps({"cases": {"ve_mixture/karras": kept, "not_a_run": kept}}))
    main(["--problems", "ve_mixture/exponential", "--samples", "16", "--steps", "2", "--plans",
          str(tmp_path / "plans"), "--out", str(out), "--update", "--evaluation-samples", "128"])
    result = json.loads(out.with_suffix(".json").read_text())
    assert list(result["cases"]) == ["ve_mixture/karras", "ve_mixture/exponential"]
    row = result["cases"]["ve_mixture/exponential"]["candidates"]["dpm_solver_pp_pc"]
    assert row["calibration_samples"] == 16 and row["steps"] == 2 and row["nfe"] == 10
    assert row["learned_rmse"] <= row["calibrated_rmse"] * (1 + 1e-12)
    assert (tmp_path / "plans" / "ve_mixture_exponential_dpm_solver_pp_pc_10.safetensors").is_file()
    table = out.with_suffix(".md").read_text()
    assert "| ve_mixture/exponential | DPM-Solver++ PC, grid learned | 10 | 16 / 128 / 2 (0.02) |" in table
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--problems", "ve_mixture/nowhere", "--out", str(out)])
    err = capsys.readouterr().err
    assert "argument --problems: unknown case(s) ve_mixture/nowhere; choose from ve_mixture/karras," in err
    for argv in (["--problems", ""], ["--samples", "0"]):
        with pytest.raises(SystemExit):
            main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert "expected comma-separated case names, got ''" in err and "expected an integer >= 1, got 0" in err


def test_a_run_with_a_learned_grid_records_and_saves_the_grid_it_reached(tmp_path: Path) -> None:
    """learn_grid runs: the plain sampler is measured on the calibrated grid, the learned plan on the grid it
    reached (same ends), which is the one saved, recorded and marked in the table."""
    from samplers.bench.learned import LearnRun, grid_rows, plan_file, report, run_learned

    run = LearnRun("ve_mixture_cfg7.5/exponential", "dpm_solver_3m;third_order=consistent", 10, 0.02, True)
    results = run_learned([run], samples=16, plans_dir=tmp_path, evaluation=(128, 32))
    assert {k: v for k, v in results.items() if k != "cases"} == {
        "calibration_seed": CALIBRATION_SEED, "calibration_samples": 16, "evaluation_seed": SEED + 1,
        "evaluation_samples": 128}
    row = results["cases"][run.case]["candidates"][run.key]
    assert 0 < row["seconds"] < 600
    calibrated = grid_rows(run.case)[run.key]["sigmas"]
    assert row["learn_grid"] is True
    assert (row["sigmas"][0], row["sigmas"][-2:]) == (calibrated[0], calibrated[-2:])
    assert row["sigmas"][1:-2] != pytest.approx(calibrated[1:-2], rel=1e-6)
    saved = load_learned(tmp_path / f"{plan_file(run.case, run.key)}.safetensors")
    assert list(saved.sigmas) == row["sigmas"]
    assert row["learned_rmse"] < row["calibrated_rmse"]
    assert "| ve_mixture_cfg7.5/exponential | DPM-Solver 3M (third_order=consistent), grid learned | 10 |" in report(
        results)


def test_a_run_may_start_from_the_grid_of_another_case_of_the_same_ode() -> None:
    from samplers.bench.learned import DOCS, LearnRun, grid_rows, start_row

    row = start_row(LearnRun("ve_mixture_cfg7.5/exponential", "dpm_solver_pp_pc", 1, 0.02, True,
                              "ve_mixture_cfg7.5/karras"), DOCS)
    assert row["sigmas"] == grid_rows("ve_mixture_cfg7.5/karras")["dpm_solver_pp_pc"]["sigmas"]
    assert row["sigmas"] != grid_rows("ve_mixture_cfg7.5/exponential")["dpm_solver_pp_pc"]["sigmas"]
    with pytest.raises(ValueError, match="does not have the case's ends"):
        start_row(LearnRun("ve_mixture_cfg7.5/exponential", "dpm_solver_pp_pc@ve", 1, 0.02, True,
                            "flow_mixture/simple"), DOCS)
    with pytest.raises(KeyError, match="no calibrated 10-call grid 'nope'"):
        start_row(LearnRun("ve_mixture/karras", "nope", 1, 0.02), DOCS)


def test_a_run_repeating_an_earlier_one_takes_its_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A case that starts from another case's grid with the same settings learns nothing new: the earlier plan is
    taken (learn_plan runs once), saved under the case's own name and measured on the case's own runner; a
    different setting (here the noise count) learns again."""
    from samplers.bench import learned as bench

    calls = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["info"]["problem"])
        return learn_plan(*args, **kwargs)

    monkeypatch.setattr(bench, "learn_plan", counting)
    karras = bench.LearnRun("ve_mixture_cfg7.5/karras", "dpm_solver_pp_pc", 2, 0.02, True, samples=16)
    exponential = bench.LearnRun("ve_mixture_cfg7.5/exponential", "dpm_solver_pp_pc", 2, 0.02, True,
                                 "ve_mixture_cfg7.5/karras", 16)
    results = bench.run_learned([karras, exponential], plans_dir=tmp_path, evaluation=(64, 8))
    assert calls == ["ve_mixture_cfg7.5/karras"]
    rows = [results["cases"][r.case]["candidates"][r.key] for r in (karras, exponential)]
    assert [r["learned_with"] for r in rows] == ["ve_mixture_cfg7.5/karras"] * 2
    assert rows[0]["sigmas"] == rows[1]["sigmas"]
    assert rows[0]["learned_rmse"] == pytest.approx(rows[1]["learned_rmse"], rel=1e-9)
    saved = load_learned(tmp_path / f"{bench.plan_file(exponential.case, exponential.key)}.safetensors")
    assert dict(saved.info)["problem"] == "ve_mixture_cfg7.5/exponential"
    bench.run_learned([karras, exponential._replace(samples=8)], plans_dir=tmp_path, evaluation=(64, 8))
    assert calls[1:] == ["ve_mixture_cfg7.5/karras", "ve_mixture_cfg7.5/exponential"]


def test_a_mean_objective_run_has_its_own_row_file_and_candidate(tmp_path: Path) -> None:
    from samplers.bench.learned import LearnRun, report, run_learned

    rmse = LearnRun("ve_mixture/karras", "dpm_solver_3m", 2, 0.02, samples=8)
    mean = rmse._replace(objective="mean")
    assert (rmse.row, mean.row) == ("dpm_solver_3m", "dpm_solver_3m;objective=mean")
    results = run_learned([rmse, mean], plans_dir=tmp_path, evaluation=(64, 8))
    rows = results["cases"]["ve_mixture/karras"]["candidates"]
    assert set(rows) == {rmse.row, mean.row} and rows[mean.row]["objective"] == "mean"
    assert rows[mean.row]["objective_after"] != rows[rmse.row]["objective_after"]  # learned, not reused
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{plan_file(rmse.case, r.row)}.safetensors" for r in (rmse, mean))
    labels = sorted(c.label for c in comparison_candidates(tmp_path))
    assert labels == ["DPM-Solver 3M [learned plan, mean objective]", "DPM-Solver 3M [learned plan]"]
    assert "| ve_mixture/karras | DPM-Solver 3M, mean objective | 10 |" in report(results)


def test_a_wider_history_run_has_its_own_row_file_and_candidate(tmp_path: Path) -> None:
    from samplers.bench.learned import LearnRun, report, run_learned

    run = LearnRun("ve_mixture/karras", "dpm_solver_3m", 2, 0.02, samples=8, objective="mean", history=3)
    assert run.row == "dpm_solver_3m;objective=mean;history=3"
    results = run_learned([run], plans_dir=tmp_path, evaluation=(64, 8))
    assert results["cases"]["ve_mixture/karras"]["candidates"][run.row]["history"] == 3
    saved = load_learned(tmp_path / f"{plan_file(run.case, run.row)}.safetensors")
    assert saved.history == 3
    assert [c.label for c in comparison_candidates(tmp_path)] == [
        "DPM-Solver 3M [learned plan, mean objective, history 3]"]
    assert "| ve_mixture/karras | DPM-Solver 3M, mean objective, history 3 | 10 |" in report(results)


def test_runs_picks_runs_and_update_keeps_the_case_s_other_rows(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--runs learns only the named rows; with --update the case's other rows stay (in the order of RUNS), and a
    selection that leaves nothing, or an unknown row, is refused."""
    from samplers.bench.learned import main

    out, plans = tmp_path / "new" / "results" / "learned", tmp_path / "saved" / "plans" / "here"
    common = ["--problems", "ve_mixture/exponential", "--samples", "8", "--steps", "1", "--plans",
              str(plans), "--out", str(out), "--update", "--evaluation-samples", "64"]
    main([*common, "--runs", "dpm_solver_pp_pc;objective=mean"])
    text = out.with_suffix(".json").read_text()
    first = json.loads(text)["cases"]["ve_mixture/exponential"]["candidates"]
    assert text == json.dumps(json.loads(text), indent=1) + "\n"
    (plans / "ve_mixture_exponential_dpm_solver_pp_pc_objective-mean_10.safetensors").unlink()
    main([*common, "--runs", "dpm_solver_pp_pc"])
    rows = json.loads(out.with_suffix(".json").read_text())["cases"]["ve_mixture/exponential"]["candidates"]
    assert list(first) == ["dpm_solver_pp_pc;objective=mean"]
    assert list(rows) == ["dpm_solver_pp_pc", "dpm_solver_pp_pc;objective=mean"]
    assert rows["dpm_solver_pp_pc;objective=mean"] == first["dpm_solver_pp_pc;objective=mean"]
    saved = [p.name for p in plans.iterdir()]
    assert saved == ["ve_mixture_exponential_dpm_solver_pp_pc_10.safetensors"]
    capsys.readouterr()
    for runs in ("dpm_solver_pp_pc;third_order=consistent", "no_such_run"):
        with pytest.raises(SystemExit):
            main(["--problems", "ve_mixture/exponential", "--runs", runs, "--out", str(out)])
    err = capsys.readouterr().err
    assert "--problems and --runs leave no run to do" in err and "unknown run(s) no_such_run" in err


def test_the_committed_plans_and_results_are_those_of_runs() -> None:
    """docs/learned_plans holds exactly one plan per LearnRun, fitted as the run says (case, sampler, objective,
    noises), and docs/learned.json has the run's row; a run added without its plan, or a stale file, fails here."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    expected = {plan_file(run.case, run.row): run for run in RUNS}
    found = {path.stem for path in (docs / "learned_plans").glob("*.safetensors")}
    assert found == set(expected)
    results = json.loads((docs / "learned.json").read_text())["cases"]
    for stem, run in expected.items():
        learned = load_learned(docs / "learned_plans" / f"{stem}.safetensors")
        info = dict(learned.info)
        assert (info["problem"], plan_objective(learned)) == (run.case, run.objective), stem
        assert learned.sampler == run.key.split(";")[0].split("@")[0] and learned.history == run.history, stem
        row = results[run.case]["candidates"][run.row]
        assert row["objective_after"] == pytest.approx(learned.objective_after, rel=1e-12), stem
        assert row["calibration_samples"] == int(info["calibration_samples"]), stem
        default = NETWORK_LEARN_SAMPLES if is_network(run.case) else LEARN_SAMPLES
        assert (row["steps"], row["lr"], row["learn_grid"], row.get("start"), row["calibration_samples"]) == (
            run.steps, run.lr, run.learn_grid, run.start, run.samples or default), stem
        assert (row.get("objective", "rmse"), row.get("history", 0)) == (run.objective, run.history), stem
    record = json.loads((docs / "learned.json").read_text())
    assert {k: v for k, v in record.items() if k != "cases"} == {
        "calibration_seed": CALIBRATION_SEED, "calibration_samples": LEARN_SAMPLES, "evaluation_seed": SEED + 1,
        "evaluation_samples": EVALUATION_SAMPLES}


def test_a_starting_grid_has_the_same_figures_in_the_learned_and_calibrated_results() -> None:
    """docs/learned.json measures each run's starting grid, docs/calibrated*.json and docs/flow_lownfe.json (the
    flow runs' 'sampler@form' grids) each calibrated grid, all on the comparison's evaluation noises: the same grid
    on the same problem must give the same figures: exactly on the analytic problems, and on the demo networks
    (float32, whose kernels differ between CPUs) to 1e-4 relative, as rows measured on different CPUs are (the demo
    eps network's DPM-Solver 3M grid: 5e-6 between an AMD EPYC and an Intel Xeon)."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    calibrated = {name: case for source in ("calibrated.json", "calibrated_networks.json")
                  for name, case in json.loads((docs / source).read_text())["cases"].items()}
    flow = json.loads((docs / "flow_lownfe.json").read_text())["cases"]
    learned = json.loads((docs / "learned.json").read_text())["cases"]
    for run in RUNS:
        case, source = learned[run.case], run.start or run.case
        row = case["candidates"][run.row]
        if "@" in run.key:
            sampler, form = run.key.split("@")
            grid = next(r for r in flow[source]["calibrated"] if (r["sampler"], r["schedule"]) == (sampler, form))
            counted, figures = flow[source]["evaluation_samples"], (grid["calibrated"]["rmse"],
                                                                    grid["calibrated"]["median_err"])
        else:
            grid = calibrated[source]["nfes"]["10"][run.key]
            counted, figures = calibrated[source]["evaluation_samples"], (grid["calibrated_rmse"],
                                                                          grid["calibrated_median"])
        assert row["sigmas"][0] == grid["sigmas"][0] and counted == case["evaluation_samples"], run
        tolerance = 1e-4 if is_network(run.case) else 1e-12
        assert (row["calibrated_rmse"], row["calibrated_median"]) == pytest.approx(figures, rel=tolerance), run


def test_evaluate_only_measures_the_saved_plans_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--evaluate-only learns nothing: on the noises a run was measured on it repeats the run's figures, on others it
    measures the saved plan and starting grid there (as a direct run of the sampler does), keeps the other cases and
    the fitting record, and refuses rows that are not runs and a missing result file."""
    from samplers.bench import learned as bench

    run = next(r for r in RUNS if r.case == "ve_mixture/exponential" and r.objective == "rmse")
    results = bench.run_learned([run], samples=16, steps=2, plans_dir=tmp_path, evaluation=(48, 8))
    row = results["cases"][run.case]["candidates"][run.row]
    remeasured = bench.evaluate_learned(results, tmp_path, evaluation=(48, 8))
    assert (remeasured["evaluation_seed"], remeasured["evaluation_samples"]) == (SEED + 1, 48)
    again = remeasured["cases"][run.case]
    for field in ("calibrated_rmse", "calibrated_median", "learned_rmse", "learned_median"):
        assert again["candidates"][run.row][field] == pytest.approx(row[field], rel=1e-12), field

    out = tmp_path / "learned"
    kept = {"evaluation_samples": 128, "candidates": {}, "comfyui": None}
    out.with_suffix(".json").write_text(json.dumps({**results, "cases": {**results["cases"], "kept/case": kept}}))
    bench.main(["--evaluate-only", "--problems", run.case, "--evaluation-samples", "24", "--plans", str(tmp_path),
                "--out", str(out)])
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["cases"]["kept/case"] == kept
    fresh = written["cases"][run.case]
    assert fresh["evaluation_samples"] == 24
    new = fresh["candidates"][run.row]
    assert {k: new[k] for k in ("objective_after", "steps", "sigmas")} == {
        k: row[k] for k in ("objective_after", "steps", "sigmas")}
    runner = evaluation_runner(case_named(run.case), (24, 4))
    learned = load_learned(tmp_path / f"{plan_file(run.case, run.row)}.safetensors")
    with torch.no_grad():
        sample = SAMPLERS[learned.sampler](runner.case.problem.model, runner.x0.clone(), learned.grid, disable=True,
                                           schedule=learned.schedule, learned_plan=learned)
    direct = ((sample - runner.refs.target(learned.grid)) ** 2).mean().sqrt().item()
    assert new["learned_rmse"] == pytest.approx(direct, rel=1e-9)
    assert new["learned_rmse"] != pytest.approx(row["learned_rmse"], rel=1e-6)  # other noises, other figure
    assert "| 16 / 24 / 2 (0.02) |" in out.with_suffix(".md").read_text()

    stranger = {**results, "cases": {run.case: {**results["cases"][run.case],
                                                "candidates": {"dpm_solver_2m": row}}}}
    with pytest.raises(KeyError, match="'dpm_solver_2m' is not one of RUNS"):
        bench.evaluate_learned(stranger, tmp_path, evaluation=(24, 8))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        bench.main(["--evaluate-only", "--out", str(tmp_path / "missing")])
    assert "no results to measure again" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--evaluate-only", "--network-evaluation-samples", "0", "--out", str(out)])
    assert "must be >= 1, got (4096, 0)" in capsys.readouterr().err


def test_a_run_from_another_case_needs_its_last_nonzero_sigma_too(tmp_path: Path) -> None:
    """The ends compared are the first sigma, the last nonzero one and the last: grids that share only the first and
    the final 0 are not one ODE."""
    from samplers.bench.learned import LearnRun, start_row

    def cases(karras: list[float], own: list[float]) -> dict[str, Any]:
        return {"cases": {name: {"schedule": "ve", "nfes": {"10": {"dpm_solver_3m": {
            "label": "DPM-Solver 3M", "sampler": "dpm_solver_3m", "options": {}, "sigmas": grid}}}}
            for name, grid in (("a/karras", karras), ("a/exponential", own))}}

    _write(tmp_path / "calibrated.json", cases(VE_GRID, [*VE_GRID[:-2], 0.03, 0.0]))
    run = LearnRun("a/exponential", "dpm_solver_3m", 1, 0.02, start="a/karras")
    with pytest.raises(ValueError, match="a/exponential: the grid of a/karras"):
        start_row(run, tmp_path)
    _write(tmp_path / "calibrated.json", cases(VE_GRID, [14.6, 2.0, 0.5, 0.029, 0.0]))
    assert start_row(run, tmp_path)["sigmas"] == VE_GRID
    _write(tmp_path / "calibrated.json", cases(FLOW_GRID, [1.0, 0.5, 0.25, 0.136]))
    assert start_row(run, tmp_path)["sigmas"] == FLOW_GRID  # no final 0 on either: the same ends


def test_comfyui_best_reads_the_comparison_of_the_case_s_kind(tmp_path: Path) -> None:
    assert comfyui_best("ve_mixture/karras", tmp_path) is None
    best = {"label": "dpmpp_2m", "rmse": 0.5}
    for source, case in (("comparison.json", "ve_mixture/karras"), ("comparison_networks.json", "digits_eps/karras")):
        _write(tmp_path / source, {"comparison": {"cases": {case: {"summary": {"rmse": {"theirs": best}}}}}})
    assert comfyui_best("ve_mixture/karras", tmp_path) == best
    assert comfyui_best("digits_eps/karras", tmp_path) == best
    assert comfyui_best("ve_mixture/exponential", tmp_path) is None


def test_merged_cases_order_the_rows_as_runs_do() -> None:
    """A kept row and a fresh one of the same case come out in the order of RUNS, whichever was kept."""
    plain, mean = "dpm_solver_pp_pc;third_order=consistent", "dpm_solver_pp_pc;third_order=consistent;objective=mean"
    kept = {"ve_mixture/karras": {"evaluation_samples": 1, "candidates": {mean: {"kept": True}}},
            "not/a/run": {"candidates": {}}}
    fresh = {"ve_mixture/karras": {"evaluation_samples": 2, "candidates": {plain: {"kept": False}}}}
    merged = merged_cases(kept, fresh)
    assert list(merged) == ["ve_mixture/karras"]
    assert list(merged["ve_mixture/karras"]["candidates"]) == [plain, mean]
    assert merged["ve_mixture/karras"]["evaluation_samples"] == 2


@pytest.mark.parametrize(("case", "key", "cap"), [("flow_mixture/simple", "dpm_solver_pp_pc@ve", 1.0),
                                                  ("ve_mixture/karras", "dpm_solver_pp_pc;third_order=consistent",
                                                   None)])
def test_a_flow_case_learns_with_its_calls_capped_at_sigma_max(case: str, key: str, cap: float | None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow model sampled in the VE form is defined up to sigma = 1: its learned shifts may not call it above; a VE
    case has no cap but its schedule's."""
    from samplers.bench import learned as bench

    class Stop(Exception):
        pass

    def record(*args: Any, **kwargs: Any) -> Any:
        raise Stop(kwargs["max_sigma"])

    monkeypatch.setattr(bench, "learn_plan", record)
    with pytest.raises(Stop) as stopped:
        bench.run_learned([bench.LearnRun(case, key, 1, 0.02)], samples=2, evaluation=(4, 4))
    assert stopped.value.args == (cap,)


def test_measuring_a_plan_shows_no_progress_bar(plans: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from samplers.bench.learned import _evaluate

    learned = load_learned(plans / "ve.safetensors")
    runner = CaseRunner(select_cases(["ve_mixture/karras"])[0], 4)
    capsys.readouterr()
    plain, learnt = _evaluate(runner, learned, learned.grid, {})
    assert capsys.readouterr().err == "" and plain != learnt
