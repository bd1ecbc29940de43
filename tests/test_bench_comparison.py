"""The ComfyUI comparison of the benchmark: selection logic on synthetic numbers, our candidate registry, the
section without ComfyUI, and (with COMFYUI_PATH) the wrapping of ComfyUI's samplers checked against ours.

The ComfyUI checks run in a subprocess: importing ComfyUI puts its `comfy` package (and CPU settings) into the
process, which the adapter tests' stand-in `comfy` modules must not meet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from samplers import SAMPLERS
from samplers.bench import comparison
from samplers.bench.cases import all_cases
from samplers.bench.cli import main
from samplers.bench.comparison import Candidate, at_budget, best_within, compare, our_runs
from samplers.bench.measure import CaseRunner

ROOT = Path(__file__).resolve().parents[1]
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")


def cell(n: int, nfe: int, rmse: float | None, median: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"n_steps": n, "nfe": nfe, "rmse": rmse, "median_err": rmse if median is None else median, **extra}


# --- selection on synthetic numbers ------------------------------------------------------------------------------

def test_at_budget_takes_the_largest_grid_that_fits_not_the_smallest_error() -> None:
    cells = [cell(2, 3, 1e-9), cell(4, 7, 1e-2), cell(5, 9, 2e-2), cell(6, 11, 1e-3)]
    assert at_budget(cells, 10)["n_steps"] == 5
    assert at_budget(cells, 7)["n_steps"] == 4
    assert at_budget(cells, 2) is None


def test_at_budget_adaptive_takes_most_calls_then_smaller_error() -> None:
    cells = [cell(5, 12, 3e-3, rtol=0.1), cell(6, 15, 2e-3, rtol=0.05), cell(6, 15, 1e-3, rtol=0.03),
             cell(9, 25, 1e-5, rtol=0.001)]
    chosen = at_budget(cells, 20)
    assert (chosen["nfe"], chosen["rtol"]) == (15, 0.03)


def test_at_budget_counts_a_failed_grid_run_but_never_a_failed_adaptive_run() -> None:
    """A grid run that failed is still the cell at its budget (the table shows the failure); a failed adaptive run
    gives way to the tolerance with the most calls that succeeded (as CaseRunner.at_budget picks)."""
    assert at_budget([cell(4, 7, 1e-2), cell(5, 9, None)], 9)["n_steps"] == 5
    adaptive = [cell(5, 12, 3e-3, rtol=0.1), cell(7, 16, None, rtol=0.02)]
    assert at_budget(adaptive, 16)["rtol"] == 0.1
    assert at_budget([cell(7, 16, None, rtol=0.02)], 16) is None


def test_budget_rank_is_the_one_rule_of_both_tables() -> None:
    from samplers.bench.measure import budget_rank

    assert budget_rank(5, 10, 1e-3, False, 9) is None
    assert budget_rank(5, 10, 1e-3, False, 10) == (5, 10, -1e-3)
    assert budget_rank(5, 10, None, False, 10) == (5, 10, -math.inf)
    assert budget_rank(5, 10, math.nan, False, 10) == (5, 10, -math.inf)
    assert budget_rank(5, 10, 1e-3, True, 10) == (10, 10, -1e-3)
    assert budget_rank(5, 10, math.inf, True, 10) is None
    assert budget_rank(5, 10, None, True, 10) is None


def test_best_within_skips_failures_and_names_the_winner() -> None:
    rows = {"a": [cell(10, 10, None)], "b": [cell(10, 10, 4e-3, 1e-3)], "c": [cell(5, 10, 5e-3, 5e-4)]}
    best = best_within(rows, 10, "rmse")
    assert (best["label"], best["rmse"]) == ("b", 4e-3)
    assert best_within(rows, 10, "median_err")["label"] == "c"
    assert best_within(rows, 4, "rmse") is None
    tie = {"first": [cell(10, 10, 4e-3)], "second": [cell(10, 10, 4e-3)]}
    assert best_within(tie, 10, "rmse")["label"] == "first"  # a tie goes to the first in order


def test_compare_ratio_and_goal() -> None:
    ours = {"x": [cell(5, 5, 8e-3), cell(10, 10, 2e-3, 4e-3)], "y": [cell(9, 10, 3e-3, 1e-3)]}
    theirs = {"p": [cell(10, 10, 1e-2), cell(20, 20, 4e-3, 2e-3)], "q": [cell(20, 20, 5e-3, 5e-4)]}
    out = compare(ours, theirs, 10, 20)
    assert out["rmse"]["ours"]["label"] == "x" and out["rmse"]["theirs"]["label"] == "p"
    assert out["rmse"]["ratio"] == pytest.approx(0.5) and out["rmse"]["met"] is True
    assert out["median_err"]["ours"]["label"] == "y" and out["median_err"]["theirs"]["label"] == "q"
    assert out["median_err"]["ratio"] == pytest.approx(2.0) and out["median_err"]["met"] is False
    none = compare({"x": [cell(20, 20, 1e-3)]}, theirs, 10, 20)
    assert none["rmse"]["ratio"] is None and none["rmse"]["met"] is False
    assert compare(ours, {}, 10, 20)["rmse"]["met"] is None
    level = compare({"x": [cell(10, 10, 4e-3)]}, {"p": [cell(20, 20, 4e-3)]}, 10, 20)["rmse"]
    assert level["ratio"] == 1.0 and level["met"] is True  # reaching their error is the goal
    exact = compare(ours, {"p": [cell(20, 20, 0.0)]}, 10, 20)["rmse"]  # their error 0: no ratio, not beaten
    assert exact["ratio"] is None and exact["met"] is False


def test_compare_gives_the_ratio_a_paired_interval_and_the_report_flags_one_spanning_1() -> None:
    theirs_errors = [1e-3] * 32
    steady = [0.5e-3] * 32  # better on every noise: a tight interval below 1
    one_bad = [0.5e-3] * 31 + [4.5e-3]  # better on 31 noises, far worse on one: the RMSE interval spans 1
    theirs = {"p": [cell(20, 20, 1e-3, 1e-3, sample_errors=theirs_errors)]}
    rmse = lambda e: math.sqrt(sum(v * v for v in e) / len(e))  # noqa: E731
    for ours_errors, spans in ((steady, False), (one_bad, True)):
        ours = {"x": [cell(10, 10, rmse(ours_errors), 0.5e-3, sample_errors=ours_errors)]}
        s = compare(ours, theirs, 10, 20)["rmse"]
        lo, hi = s["interval"]
        assert s["met"] is True and lo <= s["ratio"] <= hi and (lo <= 1.0 <= hi) == spans
        cmp = {"our_budget": 10, "their_budget": 20, "samples": {"c": 32},
               "cases": {"c": {"data_std": 1.0, "summary": compare(ours, theirs, 10, 20)}}}
        row = next(line for line in comparison.summary_table(cmp).splitlines() if "| RMSE |" in line)
        assert f"({lo:.2f}–{hi:.2f})" in row and ("interval spans 1" in row) == spans
        assert "32 (c)" in comparison._samples_text(cmp)
    assert compare({"x": [cell(10, 10, 1e-3)]}, theirs, 10, 20)["rmse"]["interval"] is None  # no per-sample errors


def test_per_sample_errors_match_the_cell_and_leave_the_json() -> None:
    runner = CaseRunner(all_cases()[0], 8)
    cells = our_runs(runner, Candidate("2M", "dpm_solver_pp_2m"), 6)
    for c in cells:
        e = c["sample_errors"]
        assert len(e) == 8
        assert math.sqrt(sum(v * v for v in e) / 8) == pytest.approx(c["rmse"], rel=1e-12)
        assert sorted(e)[3] == pytest.approx(c["median_err"], rel=1e-12)  # torch's median: the lower middle
        assert c["rel_rmse"] == c["rmse"] / runner.data_std
    stripped = comparison.without_sample_errors({"cases": {"c": {"ours_runs": {"2M": cells}}}})
    assert all("sample_errors" not in c for c in stripped["cases"]["c"]["ours_runs"]["2M"])
    assert "sample_errors" in cells[0]  # a copy: the input keeps them


def test_compare_refuses_a_win_on_a_shorter_ode() -> None:
    """Flow 'simple' grids end at shift(1/n): 10 intervals stop the ODE earlier than 20, which is no win, on
    either side."""
    ours = {"x": [cell(8, 8, 1e-4, sigma_last=0.3), cell(10, 10, 1e-3, sigma_last=0.25)],
            "y": [cell(10, 10, 3e-3, sigma_last=0.136)]}
    theirs = {"p": [cell(20, 20, 2e-3, sigma_last=0.136)], "q": [cell(10, 19, 1e-5, sigma_last=0.25)]}
    out = compare(ours, theirs, 10, 20, end=0.136)["rmse"]
    assert out["theirs"]["label"] == "p"
    assert out["ours_any"]["label"] == "x" and out["ratio_any"] == pytest.approx(0.5)
    assert out["ours"]["label"] == "y" and out["ratio"] == pytest.approx(1.5) and out["met"] is False
    assert compare(ours, theirs, 10, 20)["rmse"]["theirs"]["label"] == "q"  # no end given: everything counts
    del ours["y"]
    out = compare(ours, theirs, 10, 20, end=0.136)["rmse"]
    assert out["ours"] is None and out["ratio"] is None and out["met"] is False
    ours["x"][1]["sigma_last"] = 0.136
    assert compare(ours, theirs, 10, 20, end=0.136)["rmse"]["met"] is True
    theirs["q"][0]["stop"] = 0.001  # uni_pc: its grid ends high but it integrates down to 0.001
    assert compare(ours, theirs, 10, 20, end=0.136)["rmse"]["theirs"]["label"] == "q"
    assert comparison.envelope(theirs, [19, 20], "rmse", {19: 0.01, 20: 0.136}) == [(19, 1e-5), (20, 1e-5)]
    del theirs["q"][0]["stop"]
    assert comparison.envelope(theirs, [19, 20], "rmse", {19: 0.01, 20: 0.136}) == [(20, 2e-3)]


def test_budget_rows_and_envelope() -> None:
    rows = {"a": [cell(4, 4, 1e-1), cell(8, 8, 1e-2)], "b": [cell(3, 6, 5e-2)]}
    table = comparison.budget_rows(rows, [5, 10])
    assert [c["budget"] for c in table["a"]] == [5, 10] and [c["budget"] for c in table["b"]] == [10]
    assert comparison.envelope(rows, [4, 6, 8], "rmse") == [(4, 1e-1), (6, 5e-2), (8, 1e-2)]


# --- our side: candidates ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runner() -> CaseRunner:
    return CaseRunner(all_cases()[0], 8)


def test_candidate_with_the_case_grid_as_callable_equals_the_default(runner: CaseRunner) -> None:
    default = our_runs(runner, Candidate("2M", "dpm_solver_pp_2m"), 8)
    own = our_runs(runner, Candidate("2M own grid", "dpm_solver_pp_2m", grid=lambda case, n: case.grid(n)), 8)
    assert [c["nfe"] for c in default] == list(range(2, 9))
    assert [(c["nfe"], c["rmse"]) for c in own] == [(c["nfe"], c["rmse"]) for c in default]


def test_candidate_with_fixed_grids_and_options(runner: CaseRunner) -> None:
    case = runner.case
    grids = {case.name: [case.grid(4), case.grid(12)], "other/case": [case.grid(3)]}
    cells = our_runs(runner, Candidate("3S fixed", "dpm_solver_pp_3s", grid=grids, options={"solver_type": "taylor"}),
                     20)
    expected = SAMPLERS["dpm_solver_pp_3s"].count_model_calls(case.grid(4), schedule="ve", solver_type="taylor")
    assert [c["n_steps"] for c in cells] == [4] and cells[0]["nfe"] == expected <= 20
    m = runner.run(SAMPLERS["dpm_solver_pp_3s"], 4, {"solver_type": "taylor"})
    assert cells[0]["rmse"] == pytest.approx(m.rmse, rel=1e-12)
    assert cells[0]["sample_errors"] == pytest.approx(m.sample_errors, rel=1e-12) and len(m.sample_errors) == 8


def test_our_runs_keep_grids_of_two_intervals_or_more_and_adaptive_runs_within_the_budget(
        runner: CaseRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """One interval has no ODE to solve (a singlestep 3S fits one at 2 and 3 calls): the sizes start at 2. An
    adaptive run that used exactly the largest budget counts."""
    from samplers.bench.measure import Measurement

    assert [c["n_steps"] for c in our_runs(runner, Candidate("3S", "dpm_solver_pp_3s"), 4)] == [2]
    ladder = [Measurement(4, 5, 1e-2, 1e-2, rtol=0.1), Measurement(6, 8, 1e-3, 1e-3, rtol=0.01),
              Measurement(7, 9, 1e-4, 1e-4, rtol=0.001)]
    monkeypatch.setattr(runner, "ladder", lambda entry, options=None: ladder)
    cells = our_runs(runner, Candidate("adaptive", "dpm_solver_pp_adaptive"), 8)
    assert [(c["nfe"], c["rtol"]) for c in cells] == [(5, 0.1), (8, 0.01)]


def test_a_candidate_is_frozen() -> None:
    candidate = Candidate("2M", "dpm_solver_pp_2m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidate.label = "other"  # type: ignore[misc]


def test_a_candidate_grid_function_is_scanned_until_overshoot_grids_in_a_row_are_over_budget(
        runner: CaseRunner) -> None:
    """A grid function's grids (n = 2 .. budget) are run in order until OVERSHOOT consecutive ones are over the
    budget (a grid that fits starts the count again); fixed grids are all tried."""
    from samplers.bench.measure import OVERSHOOT

    case, fits = runner.case, (4, 7, 11)
    cells = our_runs(runner, Candidate("2M scan", "dpm_solver_pp_2m",
                                       grid=lambda _, n: case.grid(n if n in fits else 12)), 11)
    assert OVERSHOOT == 3 and [c["n_steps"] for c in cells] == [4, 7]  # n = 8, 9, 10 over: 11 is never run
    fixed = {case.name: [case.grid(n) for n in (12, 12, 2, 12, 12, 12, 4)]}
    cells = our_runs(runner, Candidate("2M fixed", "dpm_solver_pp_2m", grid=fixed), 11)
    assert [c["n_steps"] for c in cells] == [2, 4]
    assert [c["sigma_last"] for c in cells] == [float(case.grid(n)[-2]) for n in (2, 4)]  # last nonzero sigma


def test_register_candidate_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comparison, "_REGISTERED", {})
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        comparison.register_candidate(Candidate("x", "nope"))
    comparison.register_candidate(Candidate("x", "dpm_solver_pp_2m"))
    comparison.register_candidate(Candidate("x", "dpm_solver_pp_2m"))  # the same again is fine
    with pytest.raises(ValueError, match="registered already"):
        comparison.register_candidate(Candidate("x", "dpm_solver_pp_3m"))
    assert [c.label for c in comparison.registered_candidates()] == ["x"]


def test_load_candidates_from_a_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(comparison, "_REGISTERED", {})
    (tmp_path / "my_calibrated_grids.py").write_text(textwrap.dedent("""
        from samplers.bench.comparison import Candidate
        CANDIDATES = [Candidate("3M calibrated", "dpm_solver_pp_3m", grid=lambda case, n: case.grid(n))]
        def more():
            return [Candidate("2M calibrated", "dpm_solver_pp_2m")]
        WRONG = [1]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [c.label for c in comparison.load_candidates("my_calibrated_grids")] == ["3M calibrated"]
    assert [c.label for c in comparison.load_candidates("my_calibrated_grids:more")] == ["3M calibrated",
                                                                                         "2M calibrated"]
    with pytest.raises(TypeError, match="expected Candidate"):
        comparison.load_candidates("my_calibrated_grids:WRONG")
    with pytest.raises(ValueError, match="no attribute MISSING"):
        comparison.load_candidates("my_calibrated_grids:MISSING")


def test_section_without_comfyui_says_how_to_enable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    buf = io.StringIO()
    out = tmp_path / "res.json"
    with contextlib.redirect_stdout(buf):
        rc = main(["--quick", "--skip", "accuracy,study,overhead,adaptive,distribution,noise", "--problems",
                   "ve_mixture/karras", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["comparison"] == {"enabled": False, "how_to_enable": comparison.ENABLE_HINT}
    assert not {"accuracy", "study", "overhead", "adaptive", "distribution", "noise_cost"} & set(res)  # skipped
    text = buf.getvalue()
    assert "## Comparison with ComfyUI's built-in samplers" in text and "COMFYUI_PATH=" in text


def test_the_comparison_figure_needs_the_comparison(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    figure = tmp_path / "comparison.png"
    rc = main(["--quick", "--skip", "accuracy,study,overhead,adaptive,distribution,noise", "--problems",
               "ve_mixture/karras", "--plot-comparison", str(figure)])
    assert rc == 0 and not figure.exists()
    assert "--plot-comparison needs the comparison section (ComfyUI); no figure written" in capsys.readouterr().err


def test_a_report_without_a_comparison_or_with_its_own_hint_says_how_to_enable() -> None:
    """A result with no comparison record (an older JSON) gets the standard hint; a disabled one its own."""
    assert comparison.ENABLE_HINT in comparison.comparison_markdown({})
    text = comparison.comparison_markdown({"comparison": {"enabled": False, "how_to_enable": "set it, then run"}})
    assert text.endswith("set it, then run\n") and comparison.ENABLE_HINT not in text


# --- with a real ComfyUI (subprocess) ----------------------------------------------------------------------------

COMFY_SCRIPT = r"""
import json, math, os, sys
import torch
torch.set_num_threads(1)
from samplers import SAMPLERS
from samplers.bench.cases import all_cases
from samplers.bench.measure import CaseRunner
from samplers.bench.comfy_builtin import BUILTIN, EXTRA, ComfyCaseRunner, load_comfy, sampler_grid
from samplers.bench import comparison

comfy = load_comfy(os.environ["COMFYUI_PATH"])
import comfy.k_diffusion.sampling as ks
import comfy.model_sampling as ms
out = {"euler": {}, "nfe": {}, "family": {}}
cases = {c.name: c for c in all_cases()}
for name in ("ve_mixture/karras", "ve_mixture_cfg7.5/exponential", "flow_mixture/simple"):
    case = cases[name]
    runner = CaseRunner(case, 16)
    cr = ComfyCaseRunner(comfy, runner)
    sigmas = case.grid(8)
    theirs = cr.call(BUILTIN[0], sigmas.clone())
    with torch.no_grad():
        ours = SAMPLERS["dpm_solver_1"](case.problem.model, runner.x0.clone(), sigmas, disable=True,
                                         schedule=case.schedule)
    out["euler"][name] = [float((theirs - ours).abs().max()), float(ours.abs().max()), str(theirs.dtype)]
    m = cr.model_sampling
    out["family"][name] = [isinstance(m, ms.CONST), isinstance(m, ms.EPS), float(m.sigma_min), float(m.sigma_max),
                           case.problem.sigma_min, case.problem.sigma_max]
case = cases["ve_mixture/karras"]
runner = CaseRunner(case, 24)  # not the problem's dimension (16)
cr = ComfyCaseRunner(comfy, runner)
for s in BUILTIN + EXTRA:
    if not s.adaptive:
        out["nfe"][s.label] = [cr.run(s, sampler_grid(case, s, n), n).nfe for n in (2, 3, 6, 9)]
model = cr.model()
sig = case.grid(20)
with torch.no_grad():
    _, info = ks.sample_dpm_adaptive(model, runner.x0.clone(), sig[-2], sig[0], disable=True, return_info=True)
out["adaptive"] = [model.calls, info["nfe"]]
grid = case.grid(7)
before = grid.clone()
cr.run([s for s in BUILTIN if s.name == "uni_pc"][0], grid, 7)
out["uni_pc_grid_untouched"] = bool(torch.equal(grid, before))
res = comparison.run_comparison([runner], {n: SAMPLERS[n] for n in ("dpm_solver_pp_2m", "dpm_solver_pp_adaptive")},
                                comfy, [5, 10], comfy_samplers=[s for s in BUILTIN if s.name in ("euler", "dpm_fast",
                                                                                              "dpm_adaptive")])
out["comparison"] = res
print("RESULT" + json.dumps(out, allow_nan=False))
"""


@pytest.fixture(scope="module")
def comfy_result() -> dict[str, Any]:
    if not COMFYUI_PATH:
        pytest.skip("COMFYUI_PATH is not set: these checks import a real ComfyUI checkout")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", COMFY_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_comfy_euler_equals_our_dpm_solver_1(comfy_result: dict[str, Any]) -> None:
    for case, (diff, scale, dtype) in comfy_result["euler"].items():
        assert dtype == "torch.float64", case
        assert diff <= 1e-12 * max(1.0, scale), (case, diff)


def test_comfy_model_sampling_family_covers_the_problem(comfy_result: dict[str, Any]) -> None:
    for case, (is_const, is_eps, lo, hi, p_lo, p_hi) in comfy_result["family"].items():
        assert is_const == case.startswith("flow") and is_eps == (not is_const), case
        assert lo <= p_lo * (1 + 1e-6) and hi >= p_hi * (1 - 1e-6), case


def test_comfy_model_calls_counted_exactly(comfy_result: dict[str, Any]) -> None:
    """Each sampler's calls on n = 2, 3, 6, 9 intervals, from its algorithm: one per interval (multistep, dpm_fast
    and uni_pc), two per interval but one on the last step to 0 (Heun-type and singlestep 2S), 3n - 3 for
    heunpp2; dpm_adaptive: the counter agrees with the sampler's own info['nfe']."""
    ns = (2, 3, 6, 9)
    two_per_step = {"heun", "dpmpp_2s_ancestral eta 0", "dpmpp_sde eta 0", "dpm_2"}
    for label, counts in comfy_result["nfe"].items():
        if label in two_per_step:
            expected = [2 * n - 1 for n in ns]
        elif label == "heunpp2":
            expected = [3 * n - 3 for n in ns]
        else:
            expected = list(ns)
        assert counts == expected, label
    calls, info_nfe = comfy_result["adaptive"]
    assert calls == info_nfe > 0


def test_comfy_uni_pc_leaves_the_grid_alone(comfy_result: dict[str, Any]) -> None:
    assert comfy_result["uni_pc_grid_untouched"]


def test_comfy_comparison_end_to_end(comfy_result: dict[str, Any]) -> None:
    res = comfy_result["comparison"]
    case = res["cases"]["ve_mixture/karras"]
    euler = {c["n_steps"]: c for c in case["theirs_runs"]["euler"]}
    assert sorted(euler) == list(range(2, 21)) and all(c["nfe"] == n for n, c in euler.items())
    fast = case["theirs_runs"]["dpm_fast"]
    assert all(c["stop"] == c["sigma_last"] for c in fast)  # no final denoise: measured where it stops
    assert all(c["rmse_grid_ref"] != c["rmse"] for c in fast)  # the grid's target includes the final denoise
    assert all("stop" not in c and c["rmse_grid_ref"] == c["rmse"] for c in case["theirs_runs"]["euler"])
    for stat in comparison.STATS:
        s = case["summary"][stat]
        assert s["ours"]["nfe"] <= 10 and s["theirs"]["nfe"] <= 20
        assert s["ratio"] == pytest.approx(s["ours"][stat] / s["theirs"][stat])
        assert math.isfinite(s["ratio"])
        lo, hi = s["interval"]  # both sides' per-sample errors reached the summary, then left the JSON
        assert lo <= s["ratio"] <= hi and lo < hi
    tail = case["summary"]["rmse"]["tail"]  # ... and where the RMSE sits
    assert 0 < tail["ours_worst_share"] <= tail["ours_top_share"] <= 1 and tail["ratio_without_ours_worst"] > 0
    assert res["samples"] == {"ve_mixture/karras": 24} and res["enabled"] is True
    assert {label: d["grid"] for label, d in res["ours"].items()} == {SAMPLERS["dpm_solver_pp_2m"].label: "case",
                                                                      SAMPLERS["dpm_solver_pp_adaptive"].label: "case"}
    for side in ("ours", "theirs"):  # the curves cover every budget from 2 to their budget (20)
        assert [b for b, _ in case["envelope"][side]["rmse"]] == list(range(2, 21)), side
    text = comparison.comparison_markdown({"comparison": res})
    assert f"ComfyUI {res['comfyui']['version']} imported in-process from `{COMFYUI_PATH}`" in text
    assert "Also run beyond the issue's list: none." in text and "### ve_mixture/karras: ComfyUI samplers" in text
    assert "sample_errors" not in json.dumps(res)
    assert [c["budget"] for c in case["theirs_table"]["euler"]] == [5, 10]


@pytest.mark.parametrize(("document", "median"), [("comparison_lownfe.json", False),
                                                  ("comparison_lownfe.json", True),
                                                  ("comparison_lownfe_131072/flow_mixture_simple.json", False)])
def test_the_comparison_figure_draws_each_side_s_best_per_budget_and_the_two_compared_points(
        document: str, median: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A committed comparison drawn again (five cases, and one): per case, both sides' best-per-budget curves
    (error / data std), their level at their budget, the two compared points, and the ratio in the title."""
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: no figure is written")
    import matplotlib.pyplot as plt

    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)
    cmp = json.loads((ROOT / "docs" / document).read_text())["comparison"]
    path = tmp_path / "figure.png"
    if median:
        comparison.write_plot(str(path), cmp, median=True)
    else:
        comparison.write_plot(str(path), cmp)  # the default draws the RMSE
    assert path.read_bytes().startswith(b"\x89PNG")
    stat = "median_err" if median else "rmse"
    (figure,) = figures
    for ax, (case, c) in zip(figure.axes, cmp["cases"].items(), strict=False):
        std, s = c["data_std"], c["summary"][stat]
        ours, theirs, level, our_star, their_star = ax.get_lines()
        for line, side in ((ours, "ours"), (theirs, "theirs")):
            points = c["envelope"][side][stat]
            assert list(line.get_xdata()) == [p[0] for p in points]
            assert list(line.get_ydata()) == pytest.approx([p[1] / std for p in points], rel=1e-12)
        assert list(level.get_ydata()) == pytest.approx([s["theirs"][stat] / std] * 2, rel=1e-12)
        for star, side in ((our_star, "ours"), (their_star, "theirs")):
            assert (list(star.get_xdata()), list(star.get_ydata())) == ([s[side]["nfe"]], [s[side][stat] / std])
        assert ax.get_title() == f"{case}\nratio {comparison.fmt_ratio(s['ratio'])}"
        assert ax.get_ylabel() == ("median sample error" if median else "RMSE") + " / data std"
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert max(cmp["budgets"]) in ax.get_xticks()
    columns = min(3, len(cmp["cases"]))  # three per row, spare panels switched off
    assert len(figure.axes) == columns * math.ceil(len(cmp["cases"]) / columns)
    spare = len(figure.axes) - len(cmp["cases"])
    assert [ax.axison for ax in figure.axes] == [True] * len(cmp["cases"]) + [False] * spare
