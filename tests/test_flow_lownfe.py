"""Flow low-NFE study (samplers/bench/flowgrids.py): its grids, its comparison candidates, and the measured fact
the study rests on (the VE form on a log-sigma grid beats the flow form on the flow mixture)."""

import json
import math

import pytest
import torch

from samplers import SAMPLERS
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
def test_fast_step_grid_has_one_interval_per_call_and_equal_steps(nfe):
    g = flowgrids.fast_step_grid(nfe, 1.0, 0.136)
    assert len(g) == nfe + 1 and g[0] == 1.0 and g[-1] == pytest.approx(0.136)
    assert bool((torch.diff(g) < 0).all())
    ends = torch.log(g[[0, *torch.cumsum(torch.tensor(fast_orders(nfe)), 0).tolist()]])
    assert torch.allclose(torch.diff(ends), torch.full((len(ends) - 1,), math.log(0.136) / len(ends[1:]),
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
