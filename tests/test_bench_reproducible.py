"""The committed benchmark documents regenerate from this code: every document's problems are the ones the code
builds, and one cell of the plain comparison comes out again to the last digits.

The problems' constants (the mixture's seed, component norms, stds and weights, the conditional weights of the CFG
problem, the flow grid's sigma_min) define every figure in docs/; a change to any of them leaves the README's
figures unrepeatable by its commands, so it must fail here first.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import torch

from samplers import SAMPLERS
from samplers.bench.cases import all_cases
from samplers.bench.measure import ADAPTIVE_GRID, ATOL_PER_RTOL, QUICK_LADDER, RTOL_LADDER, CaseRunner

DOCS = Path(__file__).resolve().parents[1] / "docs"
CASES = {case.name: case for case in all_cases()}


def _documented_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(document, case name, its recorded description) for every benchmark problem case in docs/ that records
    its data std."""
    found = []
    for path in sorted(DOCS.rglob("*.json")):
        cases = json.loads(path.read_text()).get("cases")
        if isinstance(cases, dict):
            found += [(str(path.relative_to(DOCS)), name, desc) for name, desc in cases.items()
                      if name.split("@")[0] in CASES and "data_std" in desc]
    return found


DOCUMENTED = _documented_cases()
ADAPTIVE_DOCUMENTS = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.json")
                            if isinstance(json.loads(path.read_text()).get("adaptive"), dict))


def test_the_documents_describe_every_problem() -> None:
    assert {name.split("@")[0] for _, name, _ in DOCUMENTED} == set(CASES)
    assert len(DOCUMENTED) >= 28
    assert ADAPTIVE_DOCUMENTS == ["bench.json", "bench_networks.json"]


@pytest.mark.parametrize(("document", "name", "desc"), DOCUMENTED, ids=[f"{d}:{n}" for d, n, _ in DOCUMENTED])
def test_a_documented_problem_is_the_one_the_code_builds(document: str, name: str, desc: dict[str, Any]) -> None:
    case = CASES[name.split("@")[0]]
    assert desc["data_std"] == pytest.approx(case.data_std, rel=1e-12)
    for key, now in (("sigma_max", case.problem.sigma_max), ("sigma_min", case.problem.sigma_min),
                     ("dim", case.problem.dim)):
        if key in desc:
            assert desc[key] == pytest.approx(now, rel=1e-12), key


def _flow_runner(document: dict[str, Any]) -> CaseRunner:
    """The flow mixture's runner on the document's noises, with its thread count (conftest runs tests on one)."""
    assert torch.get_num_threads() == document["config"]["accuracy_threads"]
    return CaseRunner(CASES["flow_mixture/simple"], document["config"]["samples"])


def test_a_committed_comparison_cell_comes_out_again() -> None:
    """DPM-Solver 3M at 10 calls on the flow mixture (the cheapest case: one reference solve of 4096 noises):
    the noises, the reference, the sampler and the error measures of docs/comparison.json, on this machine."""
    document = json.loads((DOCS / "comparison.json").read_text())
    (cell,) = [c for c in document["accuracy"]["flow_mixture/simple"]["dpm_solver_3m"] if c["budget"] == 10]
    runner = _flow_runner(document)
    again = runner.at_budget(SAMPLERS["dpm_solver_3m"], 10)
    assert again is not None and runner.refs.ode_solves == 1  # what the documents count as reference_ode_solves
    measured = again.as_dict()
    assert (measured["n_steps"], measured["nfe"]) == (cell["n_steps"], cell["nfe"])
    assert runner.sigma_last(again.n_steps) == pytest.approx(cell["sigma_last"], rel=1e-12)
    for key in ("rmse", "median_err"):
        assert measured[key] == pytest.approx(cell[key], rel=1e-9), key


def test_a_committed_adaptive_cell_comes_out_again() -> None:
    """DPM-Solver adaptive, order 2, standard controller, at rtol 0.5 on the flow mixture (docs/bench.json, 128
    noises): its steps, rejections, calls and errors, with atol = rtol * ATOL_PER_RTOL."""
    document = json.loads((DOCS / "bench.json").read_text())
    row = document["adaptive"]["cases"]["flow_mixture/simple"]["dpm_solver_adaptive order 2 standard"]
    cell = row["cells"][0]
    again = _flow_runner(document).run_adaptive(SAMPLERS["dpm_solver_adaptive"], cell["rtol"],
                                                {"order": row["order"], "controller": row["controller"]}).as_dict()
    assert cell["atol"] == pytest.approx(cell["rtol"] * ATOL_PER_RTOL, rel=1e-15)
    assert {k: again[k] for k in ("n_steps", "nfe", "rejected")} == {k: cell[k] for k in ("n_steps", "nfe", "rejected")}
    for key in ("rmse", "median_err"):
        assert again[key] == pytest.approx(cell[key], rel=1e-9), key


@pytest.mark.parametrize("document", ADAPTIVE_DOCUMENTS)
def test_the_documented_adaptive_runs_used_the_tolerances_the_code_runs(document: str) -> None:
    recorded = json.loads((DOCS / document).read_text())["adaptive"]
    assert recorded["ladder"] == list(RTOL_LADDER)
    assert recorded["atol_per_rtol"] == pytest.approx(ATOL_PER_RTOL, rel=1e-15)
    assert recorded["grid_steps"] == ADAPTIVE_GRID


def test_a_quick_run_measures_at_tolerances_of_the_full_ladder() -> None:
    """--quick keeps five of the full ladder's tolerances, so its cells can be read against a full run's."""
    assert set(QUICK_LADDER) <= set(RTOL_LADDER)
    assert all(a > b for a, b in pairwise(QUICK_LADDER))  # five distinct, descending


COMPARISON_DOCUMENTS = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.json")
                              if json.loads(path.read_text()).get("comparison", {}).get("enabled"))
# what compare() makes of a case's runs, less the parts that need the per-sample errors (dropped from the JSON)
NEEDS_SAMPLE_ERRORS = ("interval", "tail")


def _without_sample_error_parts(summary: dict[str, Any]) -> dict[str, Any]:
    return {stat: {k: v for k, v in s.items() if k not in NEEDS_SAMPLE_ERRORS} for stat, s in summary.items()}


def test_every_comparison_document_is_checked() -> None:
    assert len(COMPARISON_DOCUMENTS) == 12


@pytest.mark.parametrize("document", COMPARISON_DOCUMENTS)
def test_a_committed_comparison_selects_from_its_runs_what_the_code_selects(document: str) -> None:
    """Each case's verdicts (both sides' best cells, ratios, goal), equal-NFE cells, ComfyUI table and (for the
    benchmark problems) best-per-budget curves are what samplers/bench/comparison.py selects from the runs the
    document stores."""
    from samplers.bench.comparison import budget_rows, compare, envelope

    cmp = json.loads((DOCS / document).read_text())["comparison"]
    for name, c in cmp["cases"].items():
        ours, theirs = c["ours_runs"], c["theirs_runs"]
        summary = c["summary"]
        again = compare(ours, theirs, cmp["our_budget"], cmp["their_budget"], summary["rmse"]["end"])
        assert _without_sample_error_parts(again) == _without_sample_error_parts(summary), name
        for budget, cell in c["equal_nfe"].items():
            again = compare(ours, theirs, int(budget), int(budget), cell["rmse"]["end"])
            assert _without_sample_error_parts(again) == _without_sample_error_parts(cell), (name, budget)
        assert budget_rows(theirs, cmp["budgets"]) == c["theirs_table"], name
        for cells in (*ours.values(), *theirs.values()):
            for cell in cells:
                assert cell["rel_rmse"] == (None if cell["rmse"] is None else cell["rmse"] / c["data_std"]), name
        if name in CASES:
            runner = CaseRunner(CASES[name], 1)
            budgets = range(2, max([*cmp["budgets"], cmp["their_budget"]]) + 1)
            ends = {b: runner.sigma_last(b) for b in budgets}
            for side, rows in (("ours", ours), ("theirs", theirs)):
                for stat, points in c["envelope"][side].items():
                    assert [list(p) for p in envelope(rows, budgets, stat, ends)] == points, (name, side, stat)
