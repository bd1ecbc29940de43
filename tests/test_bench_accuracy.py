"""The accuracy and adaptive tables (samplers/bench/accuracy.py) on a small run: what each cell records."""

from __future__ import annotations

import pytest

from samplers.bench.accuracy import run_accuracy, run_adaptive
from samplers.bench.cases import all_cases
from samplers.bench.measure import ADAPTIVE_GRID, ATOL_PER_RTOL, CaseRunner
from samplers.registry import SAMPLERS

RTOLS = (0.5, 0.2)


@pytest.fixture(scope="module")
def runner() -> CaseRunner:
    flow = next(c for c in all_cases() if c.name.startswith("flow"))
    return CaseRunner(flow, 4, rtols=RTOLS)


def test_each_cell_names_the_sigma_its_final_denoise_was_made_at(runner: CaseRunner) -> None:
    """A grid sampler's last nonzero sigma is that of its own grid; an adaptive one spans the ADAPTIVE_GRID grid."""
    entries = {name: SAMPLERS[name] for name in ("dpm_solver_pp_2m", "dpm_solver_adaptive")}
    table = run_accuracy([runner], entries, [6, 60])[runner.case.name]
    plain = table["dpm_solver_pp_2m"]
    assert [c["budget"] for c in plain] == [6, 60] and [c["nfe"] for c in plain] == [6, 60]
    assert [c["sigma_last"] for c in plain] == [runner.sigma_last(6), runner.sigma_last(60)]
    adaptive = table["dpm_solver_adaptive"]  # no rung of the ladder fits in 6 calls
    assert [c["budget"] for c in adaptive] == [60] and adaptive[0]["rtol"] in RTOLS
    assert adaptive[0]["sigma_last"] == runner.sigma_last(ADAPTIVE_GRID) != runner.sigma_last(adaptive[0]["n_steps"])


def test_adaptive_cells_follow_the_runners_ladder_with_atol_from_rtol(runner: CaseRunner) -> None:
    res = run_adaptive([runner], {"dpm_solver_adaptive": SAMPLERS["dpm_solver_adaptive"]}, [2])
    assert res["ladder"] == list(RTOLS) and res["atol_per_rtol"] == ATOL_PER_RTOL
    assert res["grid_steps"] == ADAPTIVE_GRID
    rows = res["cases"][runner.case.name]
    assert set(rows) == {"dpm_solver_adaptive order 2 standard", "dpm_solver_adaptive order 2 pid"}
    for row in rows.values():
        assert [c["rtol"] for c in row["cells"]] == list(RTOLS)
        assert [c["atol"] for c in row["cells"]] == [r * ATOL_PER_RTOL for r in RTOLS]
