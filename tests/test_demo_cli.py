"""`python -m dpmsolver_demo`: one-line errors with exit code 2, and a tiny end-to-end run writing the PNGs."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import torch

from dpmsolver_demo.cli import main
from dpmsolver_demo.sampling import (
    ADAPTIVE_RTOLS,
    ConvergedReference,
    CountingModel,
    grid_name,
    initial_noise,
    make_grid,
    run_at_budget,
)
from dpmsolver_demo.weights_io import load_model
from samplers import SAMPLERS
from samplers.bench.measure import ATOL_PER_RTOL, is_adaptive

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_sampler(tmp_path: Path) -> None:
    rc, _, err = _run(["--samplers", "dpm_solver_pp_2m,nope", "--out", str(tmp_path)])
    assert rc == 2
    line = _one_line(err)
    assert "unknown sampler 'nope'" in line and "valid names:" in line
    assert all(name in line for name in SAMPLERS)


@pytest.mark.parametrize("nfe", ["0", "-3", "5,0", "2000", "ten"])
def test_impossible_step_counts(tmp_path: Path, nfe: str) -> None:
    rc, _, err = _run(["--nfe", nfe, "--out", str(tmp_path)])
    assert rc == 2
    line = _one_line(err)
    assert line.startswith("python -m dpmsolver_demo: error: --nfe:")
    assert "impossible" in line or "whole numbers" in line


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc, _, err = _run(["--out", str(blocker / "demo")])  # a path under a regular file: fails even for root
    assert rc == 2
    line = _one_line(err)
    assert "cannot write to the output folder" in line and str(blocker / "demo") in line
    rc, _, err = _run(["--out", str(blocker)])  # the folder is a file
    assert rc == 2 and "cannot write to the output folder" in _one_line(err)


def test_bad_options_are_one_line(tmp_path: Path) -> None:
    for args in (["--images", "0"], ["--reference-h", "5"], ["--models", "digits_gan"], ["--no-such-flag"],
                 ["--prefix", "../x"]):
        rc, _, err = _run([*args, "--out", str(tmp_path)])
        assert rc == 2, args
        _one_line(err)


def test_command_exit_code() -> None:
    proc = subprocess.run([sys.executable, "-m", "dpmsolver_demo", "--samplers", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown sampler 'nope'" in proc.stderr


def test_a_one_call_budget_runs(tmp_path: Path) -> None:
    """--nfe 1 is allowed, but its one-step Karras grid starts a rounding above the model's sigma_max, which the
    reference refused with a traceback."""
    rc, _, err = _run(["--samplers", "dpm_solver_1,dpm_solver_pp_3m", "--nfe", "1,4", "--images", "1",
                          "--reference-h", "0.08", "--out", str(tmp_path), "--no-plots"])
    assert rc == 0, err
    res = json.loads((tmp_path / "results.json").read_text())
    for panel in res["panels"]:
        assert panel["runs"]["dpm_solver_1"]["1"]["nfe"] == 1


def test_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    rc, text, err = _run(["--samplers", "dpm_solver_1,dpm_solver_pp_2m", "--nfe", "3,6,12", "--images", "2",
                          "--reference-h", "0.08", "--out", str(out), "--prefix", "demo_"])
    assert rc == 0, err
    for name in ("demo_grid.png", "demo_error_vs_nfe.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert "| DPM-Solver++ 2M |" in text and "digits_flow @12" in text
    res = json.loads((out / "demo_results.json").read_text())
    assert res["command"].startswith("python -m dpmsolver_demo --samplers dpm_solver_1,dpm_solver_pp_2m")
    assert res["budgets"] == [3, 6, 12]
    assert [p["model"] for p in res["panels"]] == ["digits_eps", "digits_flow"]
    for panel in res["panels"]:
        assert panel["reference_check_mse"] < 1e-8
        for name in ("dpm_solver_1", "dpm_solver_pp_2m"):
            cells = [panel["runs"][name][b] for b in ("3", "6", "12")]
            assert all(c["nfe"] <= b for c, b in zip(cells, (3, 6, 12), strict=True))
            mses = [c["mse"] for c in cells]
            assert all(0 < m < 1 for m in mses), (panel["model"], name, mses)
            if panel["model"] == "digits_eps":  # Karras grids share sigma_min: the error falls with NFE
                assert mses[0] > mses[1] > mses[2], (panel["model"], name, mses)
        # second order beats first order at 12 calls
        assert panel["runs"]["dpm_solver_pp_2m"]["12"]["mse"] < panel["runs"]["dpm_solver_1"]["12"]["mse"]


def test_stochastic_samplers_are_seeded() -> None:
    stochastic = [e for e in SAMPLERS.values() if getattr(e, "stochastic", False) and "seed" in e.defaults]
    assert stochastic, "the registry has seeded stochastic samplers (the SDE and ancestral ones)"
    torch.set_num_threads(1)
    model = load_model("digits_eps")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * model.sigma_max
    entry = stochastic[0]
    a, b = run_at_budget(entry, model, x, 6, seed=1), run_at_budget(entry, model, x, 6, seed=1)
    c = run_at_budget(entry, model, x, 6, seed=2)
    assert a is not None and b is not None and c is not None
    assert torch.equal(a.out, b.out) and not torch.equal(a.out, c.out)


@pytest.mark.parametrize("name", ["digits_eps", "digits_flow"])
def test_the_reference_counts_every_network_call(name: str) -> None:
    """A panel's reference_nfe is the number of times the reference ran the network (its solves and its final
    denoises), over every grid it was asked for."""
    model = load_model(name)
    calls: list[int] = []
    hook = model.net.register_forward_hook(lambda *_: calls.append(1))
    try:
        ref = ConvergedReference(model, initial_noise(model, 2, 0), h=0.5)
        for n in (3, 5):
            ref.target(make_grid(model, n))
    finally:
        hook.remove()
    assert ref.model_calls == len(calls) > 0


def test_initial_noise_starts_where_the_host_starts() -> None:
    """sigma_max * N(0, I) for the SD-style model (sigma_max 14.6), N(0, I) at sigma = 1 for the flow model."""
    for name, scale in (("digits_eps", 14.614642), ("digits_flow", 1.0)):
        x = initial_noise(load_model(name), 4096, 0, torch.float64)
        assert float(x.std()) == pytest.approx(scale, rel=0.01), name


def test_an_adaptive_sampler_at_a_budget_takes_the_tolerance_spending_the_most_calls_within_it() -> None:
    model = load_model("digits_eps")
    entry = SAMPLERS["dpm_solver_pp_adaptive"]
    x = initial_noise(model, 2, 0)
    calls = {}
    for rtol in ADAPTIVE_RTOLS:  # every tolerance without a budget: the calls each one spends
        counter = CountingModel(model)
        with torch.no_grad():
            entry(counter, x.clone(), make_grid(model, 20), disable=True, rtol=rtol, atol=rtol * ATOL_PER_RTOL,
                  schedule="ve")
        calls[rtol] = counter.calls
    budget = sorted(set(calls.values()))[len(set(calls.values())) // 2]
    run = run_at_budget(entry, model, x, budget)
    assert run is not None and run.nfe == budget
    assert run.rtol == max(r for r, c in calls.items() if c == budget)  # the loosest tolerance that spends it
    assert run_at_budget(entry, model, x, min(calls.values()) - 1) is None


def test_an_adaptive_runs_error_is_measured_where_its_span_ends(tmp_path: Path) -> None:
    """The flow grid's last nonzero sigma depends on its step count (shift(1/n)), so an adaptive run's reference
    must end where the run's own span ends: measured there, a tight run is within 1e-6 MSE; at the end of the
    21-interval grid its error is ~3e-6, at the 10-interval grid's ~1e-3."""
    rc, _, err = _run(["--samplers", "dpm_solver_adaptive,dpm_solver_pp_2m", "--nfe", "10,60", "--images", "2",
                       "--models", "digits_flow", "--reference-h", "0.08", "--out", str(tmp_path), "--no-plots"])
    assert rc == 0, err
    (panel,) = json.loads((tmp_path / "results.json").read_text())["panels"]
    cell = panel["runs"]["dpm_solver_adaptive"]["60"]
    assert cell["rtol"] is not None and 0 < cell["mse"] < 1e-6, cell
    assert panel["grid"] == grid_name("flow")


def test_the_grid_label_names_the_grid_the_demo_builds() -> None:
    assert "Karras" in grid_name("ve") and "simple" not in grid_name("ve")
    assert "simple" in grid_name("flow") and "shift 3" in grid_name("flow")


@pytest.mark.parametrize("name", ["digits_eps", "digits_flow"])
def test_the_tolerance_ladder_goes_from_loose_to_past_the_default_budgets(name: str) -> None:
    """The search stops at the first tolerance over budget, so the ladder must tighten strictly; its tightest
    tolerance spends more than the demo's largest default budget (20), so no default budget is cut short."""
    assert all(a > b for a, b in itertools.pairwise(ADAPTIVE_RTOLS))
    model = load_model(name)
    x = initial_noise(model, 2, 0)
    for key, entry in SAMPLERS.items():
        if is_adaptive(entry):
            counter = CountingModel(model)
            with torch.no_grad():
                entry(counter, x.clone(), make_grid(model, 20), disable=True, rtol=ADAPTIVE_RTOLS[-1],
                      atol=ADAPTIVE_RTOLS[-1] * ATOL_PER_RTOL, schedule=model.schedule)
            assert counter.calls > 20, (key, counter.calls)


class _SameCallsAtEveryTolerance:
    """An adaptive sampler stand-in that spends 5 calls whatever the tolerance and returns x * rtol."""

    spec = SimpleNamespace(structure="adaptive")
    stochastic = False
    defaults: ClassVar[dict[str, Any]] = {}

    def __call__(self, model: Any, x: torch.Tensor, sigmas: torch.Tensor, *, rtol: float, info: dict[str, Any],
                 **_: Any) -> torch.Tensor:
        for _ in range(5):
            model(x, sigmas[:1].expand(x.shape[0]))
        info["accepted"] = 4
        return x * rtol


def test_a_tie_in_calls_goes_to_the_loosest_tolerance() -> None:
    model = load_model("digits_eps")
    x = initial_noise(model, 2, 0)
    run = run_at_budget(_SameCallsAtEveryTolerance(), model, x, 10)  # type: ignore[arg-type]
    assert run is not None and (run.nfe, run.n_steps) == (5, 4)
    assert run.rtol == ADAPTIVE_RTOLS[0]
    assert torch.equal(run.out, x * ADAPTIVE_RTOLS[0])
    assert torch.equal(run.sigmas, make_grid(model, 20))
