"""The benchmark's demo-network cases (`python -m samplers.bench --networks`): accuracy against the converged
reference and the distribution section, on a small selection."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from samplers import SAMPLERS
from samplers.bench.cases import all_cases
from samplers.bench.cli import _network_cases, main, parser
from samplers.bench.measure import CaseRunner
from samplers.bench.networks import NETWORK_PROBLEMS, is_network, network_cases, run_distribution, select_network_cases


def test_network_cases_in_the_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["--quick", "--networks", "--problems", "digits_eps/karras,digits_flow/*", "--samplers",
                   "dpm_solver_1,dpm_solver_pp_2m,dpm_solver_pp_3m", "--budgets", "5,10,20", "--skip",
                   "study,overhead,noise,adaptive,distribution,network_distribution", "--json", str(path),
                   "--samples", "8"])
    assert rc == 0
    res = json.loads(path.read_text())
    assert list(res["cases"]) == ["digits_eps/karras", "digits_flow/simple"]
    assert {c["samples"] for c in res["cases"].values()} == {32}  # NETWORK_SAMPLES, whatever --samples says
    for case, rows in res["accuracy"].items():
        for name, cells in rows.items():
            errs = [c["rmse"] for c in cells]
            assert len(errs) == 3 and all(e is not None and math.isfinite(e) and e > 0 for e in errs), (case, name)
            if case.startswith("digits_eps"):  # fixed sigma_min: the error falls with NFE
                assert errs[0] > errs[1] > errs[2], (case, name, errs)
        # the typical sample (RMSE is dominated by a trajectory or two near a boundary between digits)
        ddim, pp2m = rows["dpm_solver_1"][-1]["median_err"], rows["dpm_solver_pp_2m"][-1]["median_err"]
        assert pp2m < ddim / 3, (case, ddim, pp2m)
    assert "### digits_eps/karras" in buf.getvalue() and "32 initial noises" in buf.getvalue()


def test_network_samples_option_sets_the_noises_per_network_case() -> None:
    args = parser().parse_args(["--networks", "--problems", "digits_eps/karras", "--network-samples", "5"])
    (case,) = _network_cases(args)
    assert CaseRunner(case, 128).x0.shape[0] == 5 and CaseRunner(case, 3).x0.shape[0] == 3
    with pytest.raises(ValueError, match="samples"):
        select_network_cases(None, samples=0)


def test_is_network_tells_network_cases_by_name_and_by_object() -> None:
    networks, analytic = network_cases(1), all_cases()
    assert {c.problem.name for c in networks} == set(NETWORK_PROBLEMS)
    assert all(is_network(c) and is_network(c.name) for c in networks)
    assert analytic and not any(is_network(c) or is_network(c.name) for c in analytic)
    assert not is_network("digits") and not is_network("digits_epsilon/karras")


def test_distribution_section_small() -> None:
    pytest.importorskip("sklearn")
    stochastic = [n for n, e in SAMPLERS.items() if getattr(e, "stochastic", False)]
    assert stochastic, "the registry has stochastic samplers (the SDE and ancestral ones)"
    entries = {n: SAMPLERS[n] for n in (stochastic[0], "dpm_solver_pp_2m")}
    res = run_distribution(entries, models=("digits_eps",), samples=96, budgets=(8,))
    assert res["samples"] == 96 and res["budgets"] == [8]
    assert set(res["samplers"]) == set(entries)
    m = res["models"]["digits_eps"]
    assert 0 < res["floor"]["mean"] < m["ode_fd"] * 5
    for cells in m["rows"].values():
        assert cells and all(c["fd"] is not None and 0 < c["fd"] < 50 for c in cells)
