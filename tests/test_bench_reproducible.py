"""The committed benchmark documents regenerate from this code: every document's problems are the ones the code
builds, and one cell of the plain comparison comes out again to the last digits.

The problems' constants (the mixture's seed, component norms, stds and weights, the conditional weights of the CFG
problem, the flow grid's sigma_min) define every figure in docs/; a change to any of them leaves the README's
figures unrepeatable by its commands, so it must fail here first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from samplers import SAMPLERS
from samplers.bench.cases import all_cases
from samplers.bench.measure import CaseRunner

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


def test_the_documents_describe_every_problem() -> None:
    assert {name.split("@")[0] for _, name, _ in DOCUMENTED} == set(CASES)
    assert len(DOCUMENTED) >= 28


@pytest.mark.parametrize(("document", "name", "desc"), DOCUMENTED, ids=[f"{d}:{n}" for d, n, _ in DOCUMENTED])
def test_a_documented_problem_is_the_one_the_code_builds(document: str, name: str, desc: dict[str, Any]) -> None:
    case = CASES[name.split("@")[0]]
    assert desc["data_std"] == pytest.approx(case.data_std, rel=1e-12)
    for key, now in (("sigma_max", case.problem.sigma_max), ("sigma_min", case.problem.sigma_min),
                     ("dim", case.problem.dim)):
        if key in desc:
            assert desc[key] == pytest.approx(now, rel=1e-12), key


def test_a_committed_comparison_cell_comes_out_again() -> None:
    """DPM-Solver 3M at 10 calls on the flow mixture (the cheapest case: one reference solve of 4096 noises):
    the noises, the reference, the sampler and the error measures of docs/comparison.json, on this machine."""
    document = json.loads((DOCS / "comparison.json").read_text())
    (cell,) = [c for c in document["accuracy"]["flow_mixture/simple"]["dpm_solver_3m"] if c["budget"] == 10]
    threads = torch.get_num_threads()
    torch.set_num_threads(document["config"]["accuracy_threads"])
    try:
        again = CaseRunner(CASES["flow_mixture/simple"], document["config"]["samples"]).at_budget(
            SAMPLERS["dpm_solver_3m"], 10)
    finally:
        torch.set_num_threads(threads)
    assert again is not None
    measured = again.as_dict()
    assert (measured["n_steps"], measured["nfe"]) == (cell["n_steps"], cell["nfe"])
    for key in ("rmse", "median_err"):
        assert measured[key] == pytest.approx(cell[key], rel=1e-9), key
