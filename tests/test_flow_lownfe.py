"""Flow low-NFE study (samplers/bench/flowgrids.py): its grids, its comparison candidates, and the measured fact
the study rests on (the VE form on a log-sigma grid beats the flow form on the flow mixture)."""

import json
import math

import pytest
import torch

from samplers import SAMPLERS, grids
from samplers.bench import flowgrids
from samplers.bench.cases import all_cases
from samplers.bench.comparison import Candidate, our_runs
from samplers.bench.measure import CaseRunner
from samplers.plan import fast_orders


def _case(name: str):
    return next(c for c in all_cases() if c.name == name)


def test_ode_end_is_shift_of_one_twentieth():
    assert flowgrids.ode_end(_case("flow_mixture/simple")) == pytest.approx(3 * 0.05 / (1 + 2 * 0.05))


@pytest.mark.parametrize("final", [False, True])
def test_log_sigma_grid_is_uniform_in_log_sigma(final):
    g = flowgrids.log_sigma_grid(7, 1.0, 0.136, final)
    assert len(g) == 8 + final
    if final:
        assert g[-1] == 0.0
        g = g[:-1]
    assert g[0] == pytest.approx(1.0) and g[-1] == pytest.approx(0.136)
    gaps = torch.diff(torch.log(g))
    assert torch.allclose(gaps, gaps[0].expand_as(gaps))


@pytest.mark.parametrize("nfe", [1, 9, 10, 20])
@pytest.mark.parametrize("top", [1.0, 14.6])
def test_fast_step_grid_has_one_interval_per_call_and_equal_steps(nfe, top):
    g = flowgrids.fast_step_grid(nfe, top, 0.136)
    assert len(g) == nfe + 1 and g[0] == top and g[-1] == pytest.approx(0.136)
    assert bool((torch.diff(g) < 0).all())
    ends = torch.log(g[[0, *torch.cumsum(torch.tensor(fast_orders(nfe)), 0).tolist()]])
    assert torch.allclose(torch.diff(ends), torch.full((len(ends) - 1,), math.log(0.136 / top) / len(ends[1:]),
                                                       dtype=ends.dtype))
    assert SAMPLERS["dpm_solver_fast"].count_model_calls(g, schedule="ve") == nfe


@pytest.mark.parametrize("bad", [(0, 1.0, 0.1), (3, 1.0, 1.5), (3, 1.0, 0.0)])
def test_grids_reject_bad_input(bad):
    with pytest.raises(ValueError, match="sigma_last"):
        flowgrids.log_sigma_grid(bad[0], bad[1], bad[2], False)
    with pytest.raises(ValueError, match="sigma_last"):
        flowgrids.fast_step_grid(*bad)


def test_candidates_only_apply_to_flow_cases():
    cands = flowgrids.candidates()
    assert cands and all(isinstance(c, Candidate) and c.sampler in SAMPLERS for c in cands)
    assert len({c.label for c in cands}) == len(cands)
    ve, flow = _case("ve_mixture/karras"), _case("flow_mixture/simple")
    end = flowgrids.ode_end(flow)
    for c in cands:
        if isinstance(c.grid, dict):
            assert c.grid and all(name.endswith("/simple") and "flow" in name for name in c.grid)
            continue
        assert c.grid(ve, 10) is None
        g = c.grid(flow, 10)
        last = [v for v in g.tolist() if v > 0][-1]
        assert last == pytest.approx(end)


def test_calibrated_candidates_read_the_results_file(tmp_path):
    assert flowgrids.calibrated_candidates(tmp_path / "missing.json") == []
    path = tmp_path / "r.json"
    path.write_text('{"cases": {"flow_mixture/simple": {"calibrated": [{"sampler": "dpm_solver_pp_pc", '
                    '"schedule": "ve", "sigmas": [1.0, 0.5, 0.136]}]}}}')
    (c,) = flowgrids.calibrated_candidates(path)
    assert c.sampler == "dpm_solver_pp_pc" and c.options == {"schedule": "ve"}
    assert c.grid == {"flow_mixture/simple": [[1.0, 0.5, 0.136]]}


def test_ve_form_on_log_sigma_grid_beats_flow_form_on_flow_mixture():
    """The measured premise of docs/flow_lownfe.md, at 10 calls on 32 noises: the candidate in VE form is more
    accurate than the same sampler and grid in the flow form, and than the flow-form sampler on the case's own
    grid family restricted to the same ends (the 'simple (t to 1/20)' grid)."""
    case = _case("flow_mixture/simple")
    runner = CaseRunner(case, 32)
    ve, flow = (next(c for c in flowgrids.candidates() if c.label.startswith(f"DPM-Solver++ PC [{form} form, log σ")
                     and "final" not in c.label) for form in ("VE", "flow"))
    at10 = [[c for c in our_runs(runner, cand, 10) if c["nfe"] == 10][-1]["rmse"] for cand in (ve, flow)]
    simple = flowgrids.GRID_FAMILIES["simple (t to 1/20)"](case, 10, False)
    with torch.no_grad():
        out = SAMPLERS["dpm_solver_pp_pc"](case.problem.model, runner.x0.clone(), simple, disable=True,
                                           schedule="flow")
    simple_rmse = float(((out - runner.refs.target(simple)) ** 2).mean().sqrt())
    assert at10[0] * 3 < at10[1]
    assert at10[0] * 3 < simple_rmse


TWIN_SCRIPT = r"""
import json, os
import torch
torch.set_num_threads(1)
from samplers import SAMPLERS
from samplers.bench import flowgrids
from samplers.bench.cases import all_cases
from samplers.bench.measure import CaseRunner
from samplers.bench.comfy_builtin import BUILTIN, ComfyCaseRunner, load_comfy

comfy = load_comfy(os.environ["COMFYUI_PATH"])
case = next(c for c in all_cases() if c.name == "flow_mixture/simple")
runner = CaseRunner(case, 16)
fast = next(s for s in BUILTIN if s.name == "dpm_fast")
out = {}
for nfe in (10, 20):
    theirs = ComfyCaseRunner(comfy, runner).call(fast, case.grid(nfe) if nfe == 20 else flowgrids.log_sigma_grid(
        nfe - 1, 1.0, flowgrids.ode_end(case), True))
    grid = flowgrids.fast_step_grid(nfe, 1.0, flowgrids.ode_end(case))
    with torch.no_grad():
        ours = SAMPLERS["dpm_solver_fast"](case.problem.model, runner.x0.clone(), grid, disable=True, schedule="ve")
    out[nfe] = [float((theirs.double() - ours).abs().max()), float(ours.abs().max())]
print("RESULT" + json.dumps(out))
"""


def test_dpm_solver_fast_in_ve_form_on_fast_step_grid_is_comfyui_dpm_fast():
    """ComfyUI's dpm_fast on a flow model from sigma 1 to the grid's last nonzero sigma (it reads only the ends and
    the step count) gives our dpm_solver_fast with schedule='ve' on fast_step_grid, to rounding."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not os.environ.get("COMFYUI_PATH"):
        pytest.skip("COMFYUI_PATH is not set: this check imports a real ComfyUI checkout")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", TWIN_SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))[len("RESULT"):])
    assert sorted(res) == ["10", "20"]
    for diff, scale in res.values():
        assert diff <= 1e-9 * scale


def test_study_rows_and_report():
    case = _case("flow_mixture/simple")
    rows = flowgrids.grid_form_study(case, CaseRunner(case, 8), samplers=("dpm_solver_pp_pc", "dpm_solver_fast"),
                                     nfes=(10, 20))
    assert {(r["grid"], r["schedule"], r["final_denoise"]) for r in rows if r["sampler"] == "dpm_solver_fast"} == {
        (g, f, d) for g in [*flowgrids.GRID_FAMILIES, "dpm_fast steps"] for f in flowgrids.FORMS for d in (False, True)}
    assert all(r["calls"] <= r["nfe"] and math.isfinite(r["rmse"]) for r in rows)
    assert all(r["rel_rmse"] == r["rmse"] / case.data_std for r in rows) and case.data_std != 1.0
    fast = [r for r in rows if r["grid"] == "dpm_fast steps"]
    assert {r["intervals"] for r in fast} == {10, 20} and all(r["intervals"] == r["calls"] for r in fast)
    assert {r["calls"] for r in rows if r["grid"] == "dpm_fast steps"} == {10, 20}
    text = flowgrids.report({"cases": {case.name: {"data_std": 1.0, "evaluation_samples": 8, "study": rows,
                                                   "calibrated": []}}})
    assert "dpm_fast@20" in text and "### NFE <= 10" in text and "DPM-Solver++ PC" in text
    assert "(data std 1, 8 evaluation noises)" in text


def test_evaluate_runs_the_study_again_and_measures_the_saved_grids(tmp_path):
    """--evaluate-only's core: on the same noises it repeats a run (study and calibrated rows), on others it equals a
    direct run of the saved grid and of the log σ grid it started from; it calibrates nothing."""
    case = _case("flow_mixture/simple")
    res = flowgrids.run([case], calibrate=False, evaluation=(8, 4))
    assert res["cases"]["flow_mixture/simple"]["evaluation_samples"] == 8
    committed = json.loads(flowgrids.RESULTS.read_text())["cases"]["flow_mixture/simple"]["calibrated"][0]
    res["cases"]["flow_mixture/simple"]["calibrated"] = [{**committed, "start": {}, "calibrated": {}}]
    again = flowgrids.evaluate(res, (8, 4))["cases"]["flow_mixture/simple"]
    assert again["evaluation_samples"] == 8 and again["study"] == res["cases"]["flow_mixture/simple"]["study"]
    other = flowgrids.evaluate(res, (12, 4))["cases"]["flow_mixture/simple"]
    (row,) = other["calibrated"]
    runner = CaseRunner(case, 12)
    sampler, form = committed["sampler"], committed["schedule"]
    start = flowgrids.log_sigma_grid(len(committed["sigmas"]) - 1, 1.0, flowgrids.ode_end(case), False)
    for key, sigmas in (("calibrated", torch.tensor(committed["sigmas"], dtype=torch.float64)), ("start", start)):
        with torch.no_grad():
            out = SAMPLERS[sampler](case.problem.model, runner.x0.clone(), sigmas, disable=True, schedule=form)
        direct = float(((out - runner.refs.target(sigmas)) ** 2).mean().sqrt())
        assert row[key]["rmse"] == pytest.approx(direct, rel=1e-12), key
    assert row["sigmas"] == committed["sigmas"] and other["evaluation_samples"] == 12
    with pytest.raises(SystemExit):
        flowgrids.main(["--evaluate-only", "--out", str(tmp_path / "absent.json")])
    with pytest.raises(SystemExit):
        flowgrids.main(["--evaluation-samples", "0", "--out", str(tmp_path / "absent.json")])


@pytest.mark.parametrize("networks", [False, True])
def test_the_comparison_command_is_a_valid_benchmark_command(networks):
    import shlex

    from samplers.bench.cli import parser

    words = shlex.split(flowgrids.comparison_command(networks))
    assert words[:4] == ["COMFYUI_PATH=/tmp/ComfyUI", "python", "-m", "samplers.bench"]
    args = parser().parse_args(words[4:])
    assert args.networks is networks and "samplers.bench.flowgrids" in args.candidates
    assert (args.network_samples if networks else args.samples) == (128 if networks else 4096)
    assert ("network_distribution" in args.skip) is networks


@pytest.mark.parametrize("final", [False, True])
def test_the_grid_families_have_the_intervals_asked_for(final):
    """n intervals from sigma_max to the 20-interval grid's end (the last one to 0 with the final denoise, and a
    single interval straight to 0); the log σ family needs one interval besides the final one."""
    flow = _case("flow_mixture/simple")
    end = flowgrids.ode_end(flow)
    log_sigma, simple = (flowgrids.GRID_FAMILIES[name] for name in ("log σ", "simple (t to 1/20)"))
    assert log_sigma(flow, 0, final) is None and log_sigma(flow, 1, True) is None
    for n in (1, 2, 7):
        for family in (log_sigma, simple):
            grid = family(flow, n, final)
            if grid is None:
                assert family is log_sigma and final and n == 1
                continue
            values = grid.tolist()
            assert len(values) == n + 1 and values[0] == 1.0, (family, n)
            if final and n == 1:  # one interval: straight to 0
                assert values == [1.0, 0.0]
            elif final:
                assert values[-2:] == pytest.approx([end, 0.0], rel=1e-12)
            else:
                assert values[-1] == pytest.approx(end, rel=1e-12)
    ts = [1.0 - 0.95 * i / (2 if final else 3) for i in range(3 if final else 4)]
    expected = [grids.flow_shift(t, 3.0) for t in ts] + ([0.0] if final else [])
    assert simple(flow, 3, final).tolist() == pytest.approx(expected, rel=1e-12)


def test_the_candidates_take_the_final_denoise_only_where_their_label_says():
    flow = _case("flow_mixture/simple")
    for candidate in flowgrids.candidates():
        if isinstance(candidate.grid, dict):
            continue
        grid = candidate.grid(flow, 10)
        assert (grid[-1].item() == 0.0) is ("final denoise" in candidate.label), candidate.label
        assert candidate.options["schedule"] == ("flow" if "flow form" in candidate.label else "ve"), candidate.label


def test_the_largest_grid_that_fits_starts_from_one_interval():
    flow = _case("flow_mixture/simple")
    make = lambda n: flowgrids.GRID_FAMILIES["log σ"](flow, n, False)  # noqa: E731
    assert len(flowgrids._largest("dpm_solver_pp_2m", "ve", make, 1)) == 2
    assert len(flowgrids._largest("dpm_solver_pp_2m", "ve", make, 10)) == 11
    assert flowgrids._largest("dpm_solver_pp_2m", "ve", lambda n: None, 10) is None


def test_measuring_a_cell_shows_no_progress_bar(capsys):
    flow = _case("flow_mixture/simple")
    runner = CaseRunner(flow, 4)
    capsys.readouterr()
    cell = flowgrids._error(flow, runner, runner.refs.target, "dpm_solver_pp_2m", flow.grid(4), "flow")
    assert capsys.readouterr().err == "" and cell["rel_rmse"] == cell["rmse"] / runner.data_std


def test_calibrated_study_defaults_and_pairs(monkeypatch):
    """Ten calls, calibrated.MAX_EVALS runs per restart, the calibration counts of samplers.bench.calibrated, every
    pair of CALIBRATED (the calibration itself stubbed: it is samplers/calibrate.py's, tested there)."""
    flow = _case("flow_mixture/simple")
    runner = CaseRunner(flow, 4)
    seen = []

    def fake_noise(case, n):
        seen.append(("noise", n))
        return runner.x0[:2]

    def fake_calibrate(model, sampler, calls, start, noise, form, reference, max_evals):
        seen.append((sampler, form, calls, max_evals))
        return type("Grid", (), {"sigmas": start})()

    monkeypatch.setattr(flowgrids, "calibration_noise", fake_noise)
    monkeypatch.setattr(flowgrids, "calibrate_grid", fake_calibrate)
    rows = flowgrids.calibrated_study(flow, runner)
    assert seen == [("noise", flowgrids.CALIBRATION_SAMPLES), *[(s, f, 10, flowgrids.MAX_EVALS)
                                                             for s, f in flowgrids.CALIBRATED]]
    assert [(r["sampler"], r["schedule"], r["nfe"]) for r in rows] == [(s, f, 10) for s, f in flowgrids.CALIBRATED]
    assert all(r["start"] == r["calibrated"] for r in rows)


def test_findings_without_a_twin_and_with_ties():
    row = {"nfe": 10, "grid": "log σ", "final_denoise": False, "sampler": "dpm_solver_pp_pc", "rel_rmse": 0.5}
    lines = flowgrids.findings({"study": [{**row, "schedule": "ve"}, {**row, "schedule": "flow"}]})
    assert lines[0].endswith("—.") and not any("dpm_fast@20" in line for line in lines)
    assert "- log σ: the VE form beats the flow form in 0 of 1 (sampler, NFE, final denoise) pairs; error ratio " \
           "flow / VE from 1.00 to 1.00." in lines


def test_comparison_section_needs_an_enabled_comparison():
    assert flowgrids.comparison_section({}) == []
    assert flowgrids.comparison_section({"comparison": None}) == []
    assert flowgrids.comparison_section({"comparison": {"enabled": False}}) == []
    assert flowgrids.comparison_command() == flowgrids.comparison_command(False)


def test_the_command_runs_renders_and_writes(tmp_path, monkeypatch, capsys):
    """The study itself stubbed: which cases, counts and calibration the command asks for, what it writes, and when
    it needs an earlier result."""
    seen = {}

    def fake_run(cases, calibrate, evaluation):
        seen.update(cases=[(c.name, getattr(c.problem, "samples", None)) for c in cases], calibrate=calibrate,
                    evaluation=evaluation)
        return {"cases": {}}

    monkeypatch.setattr(flowgrids, "run", fake_run)
    out = tmp_path / "flow.json"
    flowgrids.main(["--out", str(out), "--networks", "--network-evaluation-samples", "3"])
    names = [name for name, _ in seen["cases"]]
    assert "flow_mixture/simple" in names and ("digits_flow/simple", 3) in seen["cases"]
    assert seen["calibrate"] is True and seen["evaluation"] == (4096, 3)
    assert json.loads(out.read_text()) == {"cases": {}, "comparison_section": []}
    assert out.read_text() == json.dumps({"cases": {}, "comparison_section": []}, indent=1)
    flowgrids.main(["--out", str(out), "--no-calibrate"])
    assert seen["calibrate"] is False and not any(name.startswith("digits") for name, _ in seen["cases"])
    out.write_text(json.dumps({"cases": {}, "comparison_section": ["kept"]}))
    flowgrids.main(["--out", str(out), "--render"])
    assert json.loads(out.read_text())["comparison_section"] == ["kept"]
    assert out.with_suffix(".md").read_text().endswith("kept")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        flowgrids.main(["--help"])
    assert "Flow models at low NFE: is it the grid or the integrator?" in capsys.readouterr().out
