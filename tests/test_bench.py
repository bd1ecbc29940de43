"""The benchmark's --quick mode end to end, in-process: JSON, report, figure, and sanity of the numbers."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from samplers import SAMPLERS
from samplers.bench import cli
from samplers.bench.cli import FULL, QUICK, main, overhead_thread_counts, parser, single_thread

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("bench")
    json_path, png_path = out / "bench.json", out / "plot.png"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.MonkeyPatch.context() as mp:
        mp.delenv("COMFYUI_PATH", raising=False)  # the real ComfyUI is timed in a subprocess (test below) only
        rc = main(["--quick", "--json", str(json_path), "--plot", str(png_path)])
    assert rc == 0
    return json.loads(json_path.read_text()), buf.getvalue(), png_path


@pytest.mark.parametrize("document", ["bench.json", "bench_networks.json"])
def test_the_full_settings_are_those_the_committed_benchmark_ran_with(document: str) -> None:
    """The README regenerates docs/bench.* and bench_networks.* with no size options: the defaults must be the
    settings those documents record."""
    config = json.loads((ROOT / "docs" / document).read_text())["config"]
    assert {key: config[key] for key in FULL} == FULL
    assert config["quick"] is False


def test_quick_is_what_its_help_says() -> None:
    (action,) = [a for a in parser()._actions if "--quick" in a.option_strings]
    budgets = ",".join(map(str, QUICK["budgets"]))
    assert f"budgets {budgets}, {QUICK['samples']} samples" in action.help


def test_json_has_all_sections(quick: tuple[dict, str, Path]) -> None:
    res, _, _ = quick
    for key in ("machine", "config", "samplers", "cases", "accuracy", "study", "overhead", "adaptive", "distribution",
                "noise_cost", "reference_ode_solves", "comparison", "runtime_s"):
        assert key in res
    assert set(res["runtime_s"]) == {"accuracy", "comparison", "study", "adaptive", "distribution", "noise", "overhead",
                                     "total"}
    assert res["comparison"]["enabled"] is False  # no COMFYUI_PATH here
    sections = sum(v for k, v in res["runtime_s"].items() if k != "total")
    assert sections <= res["runtime_s"]["total"] <= sections + 10  # the run's wall time, setup included
    assert len(res["overhead"]) == 1  # --quick times the host's thread count only
    for key in ("torch", "cpu", "torch_threads"):
        assert key in res["machine"]
    assert res["config"]["quick"] is True
    assert set(res["study"]) >= {"third_order", "lower_order_final", "solver_type"}
    assert len(res["cases"]) == 5
    deterministic = {n for n, e in SAMPLERS.items()
                     if not getattr(e, "stochastic", False) and getattr(e, "solves_ode", True)}
    assert "dpm_solver_sds" not in deterministic  # score distillation is no ODE solver: no accuracy table row
    assert set(res["samplers"]) == deterministic
    for rows in res["accuracy"].values():
        assert set(rows) == deterministic


def test_the_recorded_settings_are_those_the_run_used(quick: tuple[dict, str, Path]) -> None:
    """The JSON's accuracy thread count is what the accuracy section runs with, every sampler's structure (the
    figure's line style) is its spec's, each case's noise count is the run's, and the samplers left out of the
    accuracy table are listed."""
    res, _, _ = quick
    with single_thread():
        assert res["config"]["accuracy_threads"] == torch.get_num_threads()
    for name, structure in res["structures"].items():
        spec = SAMPLERS[name].spec
        assert structure == (spec.structure if spec is not None else "other"), name
    assert {"singlestep", "multistep"} <= set(res["structures"].values())
    assert {case["samples"] for case in res["cases"].values()} == {QUICK["samples"]}
    skipped = set(res["skipped_stochastic"])  # what the accuracy table leaves out: SDE samplers and SDS
    assert skipped == set(SAMPLERS) - set(res["samplers"]) >= {n for n, e in SAMPLERS.items() if e.stochastic}


def test_each_study_covers_the_samplers_it_is_about(quick: tuple[dict, str, Path]) -> None:
    """The option studies take every ODE sampler with the option except the predictor-correctors, which have
    their own studies (corrector, PC order)."""
    res, _, _ = quick

    def having(option: str, pc: bool) -> set[str]:
        return {n for n in res["samplers"] if option in SAMPLERS[n].defaults
                and bool(SAMPLERS[n].spec is not None and SAMPLERS[n].spec.corrector) is pc}

    def studied(study: str) -> set[str]:
        return {row["sampler"] for row in res["study"][study]["rows"]}

    for option in ("third_order", "lower_order_final", "solver_type"):
        assert studied(option) == having(option, False) != set(), option
    assert studied("corrector") == studied("pc_order") == having("corrector", True) != set()


def test_a_result_that_is_not_a_number_is_refused_rather_than_written_as_invalid_json(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "run", lambda args: {"runtime_s": {"total": math.nan}})
    monkeypatch.setattr(cli, "markdown", lambda res: "")
    with pytest.raises(ValueError, match="JSON"), contextlib.redirect_stdout(io.StringIO()):
        main(["--json", str(tmp_path / "bench.json")])


def test_the_overhead_section_times_one_thread_beside_the_hosts_in_a_full_cpu_run() -> None:
    assert overhead_thread_counts(2, "cpu", False, None) == [2, 1]
    assert overhead_thread_counts(1, "cpu", False, None) == [1]
    assert overhead_thread_counts(2, "cpu", True, None) == [2]  # --quick
    assert overhead_thread_counts(2, "cuda", False, None) == [2]
    assert overhead_thread_counts(2, "cpu", False, [4, 3]) == [4, 3]  # --threads


def test_plot_and_plot_median_draw_their_own_figures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    drawn: list[tuple[str, bool]] = []
    monkeypatch.setattr(cli, "_figure", lambda res, path, median: drawn.append((path, median)))
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["--quick", "--skip", ",".join(cli.SECTIONS), "--plot", "mean.png", "--plot-median", "median.png"])
    assert rc == 0 and drawn == [("mean.png", False), ("median.png", True)]


def test_errors_finite_and_nfe_within_budget(quick: tuple[dict, str, Path]) -> None:
    res, _, _ = quick
    for case, rows in res["accuracy"].items():
        for name, cells in rows.items():
            assert cells, (case, name)
            for c in cells:
                assert c["nfe"] <= c["budget"]
                assert c["rmse"] is not None and math.isfinite(c["rmse"]) and c["rmse"] > 0, (case, name, c)
                assert c["rel_rmse"] == pytest.approx(c["rmse"] / res["cases"][case]["data_std"])
                assert 0 < c["median_err"] <= c["rmse"] * math.sqrt(res["config"]["samples"])


def test_second_order_error_decreases_with_nfe(quick: tuple[dict, str, Path]) -> None:
    res, _, _ = quick
    for case in ("ve_mixture/karras", "ve_mixture/exponential"):
        errs = [c["rmse"] for c in res["accuracy"][case]["dpm_solver_pp_2m"]]
        assert len(errs) >= 3
        assert all(b < a for a, b in pairwise(errs)), (case, errs)
        nfe = [c["nfe"] for c in res["accuracy"][case]["dpm_solver_pp_2m"]]
        # second order: doubling NFE from 10 to 20 cuts the error by well over 2x
        assert errs[-1] < errs[-2] / 2.5, (case, nfe, errs)


def test_defaults_study_verdicts(quick: tuple[dict, str, Path]) -> None:
    res, text, _ = quick
    lof = res["study"]["lower_order_final"]
    assert "all" in lof["verdict"] and "suggested_below" in lof["verdict"]["all"]
    for study in ("third_order", "solver_type"):
        verdict = res["study"][study]["verdict"]
        assert set(verdict) == {"NFE<=10", "10<NFE<=25", "NFE>25"}
    assert "## Defaults study" in text and "lower_order_final" in text


def test_overhead_reported_against_euler(quick: tuple[dict, str, Path]) -> None:
    res, text, _ = quick
    runs = res["overhead"]
    assert runs and all(r["shape"] == [1, 4, 128, 128] for r in runs)
    for run in runs:
        assert math.isfinite(run["euler"]["overhead_us_per_call"])
        assert set(run["samplers"]) == set(SAMPLERS)
        for row in run["samplers"].values():
            assert row["nfe"] >= 10 and math.isfinite(row["overhead_us_per_call"])
    assert "Euler loop (reference)" in text


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH is not set")
def test_overhead_times_comfyui_twins_in_the_same_run() -> None:
    """With COMFYUI_PATH, ComfyUI's dpmpp_2m / 2m_sde / 3m_sde run in the same round robin as our twins."""
    proc = subprocess.run([sys.executable, "-m", "samplers.bench.overhead", "--steps", "4", "--repeats", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for ours, theirs in (("dpm_solver_pp_2m", "sample_dpmpp_2m"), ("dpm_solver_pp_2m_sde", "sample_dpmpp_2m_sde"),
                         ("dpm_solver_pp_3m_sde", "sample_dpmpp_3m_sde")):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {ours} | {theirs} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(math.isfinite(float(c)) for c in cells[2:6]), row


def test_device_tree_twins_join_on_cuda_only() -> None:
    """ComfyUI's `_gpu` SDE variants (Brownian tree on the latent's device) are timed on CUDA, where they differ
    from the CPU-tree twins; on the CPU the two are the same computation and only TWINS run."""
    from samplers.bench.comfytwin import DEVICE_TREE_TWINS, TWINS, twin_pairs

    assert twin_pairs("cpu") == list(TWINS.items())
    assert twin_pairs("cuda") == [*TWINS.items(), *DEVICE_TREE_TWINS.items()]
    assert all(name in SAMPLERS and theirs.endswith("_gpu") for name, theirs in DEVICE_TREE_TWINS.items())


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH is not set")
def test_comfyui_has_the_device_tree_twins_and_the_sync_count_runs_them() -> None:
    import torch

    from samplers.bench import syncs
    from samplers.bench.comfy_builtin import load_comfy
    from samplers.bench.comfytwin import DEVICE_TREE_TWINS

    load_comfy(os.environ["COMFYUI_PATH"])
    import comfy.k_diffusion.sampling as sampling

    assert all(callable(getattr(sampling, theirs, None)) for theirs in DEVICE_TREE_TWINS.values())
    runs = syncs._comfy_runs(torch.zeros(1, 4, 8, 8))
    assert {"dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu"} <= set(runs)
    assert "dpm_fast" not in runs and "euler_gpu" not in runs


def test_report_tables_mark_best(quick: tuple[dict, str, Path]) -> None:
    _, text, _ = quick
    assert text.count("### ") >= 5
    assert "**" in text and "| sampler |" in text


def test_plot_written(quick: tuple[dict, str, Path]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: --plot writes no figure")
    _, _, png = quick
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_package_imports_only_torch() -> None:
    code = ("import sys, samplers, samplers.bench.cli; "
            "bad = [m for m in ('scipy', 'matplotlib') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    """Every list or count option is checked while parsing: a usage error naming the option and the bad value."""
    wrong = {("--samplers", "dpm_solver_2m,no_such_sampler"):
             "argument --samplers: unknown sampler(s) no_such_sampler; choose from dpm_solver_1,",
             ("--skip", "overhead,nap"): "argument --skip: unknown section(s) nap; choose from accuracy,",
             ("--skip", ""): "argument --skip: expected comma-separated section names, got ''",
             ("--budgets", "10,x"): "argument --budgets: expected comma-separated integers, got '10,x'",
             ("--budgets", "0,10"): "argument --budgets: expected positive integers, got '0,10'",
             ("--samples", "0"): "argument --samples: expected an integer >= 1, got 0",
             ("--network-samples", "0"): "argument --network-samples: expected an integer >= 1, got 0"}
    for (option, value), message in wrong.items():
        with pytest.raises(SystemExit) as exc:
            main(["--quick", option, value])
        assert exc.value.code == 2 and message in capsys.readouterr().err, (option, value)
    with pytest.raises(SystemExit, match="--problems no_such_problem matches no case"):
        main(["--quick", "--problems", "no_such_problem", "--skip", "overhead"])


@pytest.mark.parametrize("argv", [["--batches", "x"], ["--batches", "0"], ["--repeats", "0"]])
def test_noisecost_command_refuses_bad_arguments(argv: list[str]) -> None:
    from samplers.bench.noisecost import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_fit_intervals_takes_the_largest_grid_within_the_budget() -> None:
    """Largest n with count(n) <= budget; a dip in the counts is crossed, OVERSHOOT grids over budget end the scan."""
    from samplers.bench.measure import OVERSHOOT, fit_intervals

    assert fit_intervals(lambda n: 3 * n, 10) == 3
    assert fit_intervals(lambda n: 3 * n, 3) == 1  # one step of a 3-call singlestep
    assert fit_intervals(lambda n: n + 5, 4) is None
    dip = {1: 1, 2: 2, 3: 11, 4: 9, 5: 10, 6: 12}  # over at 3, back within budget at 4 and 5
    assert fit_intervals(lambda n: dip.get(n, 99), 10) == 5
    far = {1: 1, **{n: 99 for n in range(2, 2 + OVERSHOOT)}, 2 + OVERSHOOT: 1}  # back within, too late
    asked: list[int] = []
    assert fit_intervals(lambda n: asked.append(n) or far.get(n, 1), 20) == 1
    assert asked == list(range(1, 2 + OVERSHOOT))


def test_a_measurement_keeps_its_failure_and_cannot_be_changed() -> None:
    """A failed run's message reaches the report; runs are cached and shared, so a caller cannot alter one."""
    from samplers.bench.measure import Measurement

    failed = Measurement(4, 4, math.inf, math.inf, error="ValueError: bad grid")
    assert failed.as_dict() == {"n_steps": 4, "nfe": 4, "rmse": None, "rel_rmse": None, "median_err": None,
                                "error": "ValueError: bad grid"}
    assert "error" not in Measurement(4, 4, 0.1, 0.2, 0.05).as_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        failed.rmse = 0.0  # type: ignore[misc]


def test_the_runner_picks_an_adaptive_run_by_calls_within_the_budget_then_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Of the tolerance ladder's runs: the most model calls within the budget (equal to it included), then the
    smaller RMSE; failed runs are never picked."""
    from samplers import SAMPLERS
    from samplers.bench.cases import all_cases
    from samplers.bench.measure import CaseRunner, Measurement

    runner = CaseRunner(all_cases()[0], 2)
    runs = [Measurement(5, 12, 3e-3, 0.0, rtol=0.1), Measurement(6, 15, 2e-3, 0.0, rtol=0.05),
            Measurement(6, 15, 1e-3, 0.0, rtol=0.03), Measurement(7, 16, math.inf, math.inf, rtol=0.02)]
    monkeypatch.setattr(runner, "ladder", lambda entry, options=None: runs)
    adaptive = SAMPLERS["dpm_solver_adaptive"]
    assert runner.at_budget(adaptive, 16).rtol == 0.03
    assert runner.at_budget(adaptive, 15).rtol == 0.03
    assert runner.at_budget(adaptive, 14).rtol == 0.1
    assert runner.at_budget(adaptive, 11) is None


def test_options_equal_to_the_defaults_share_the_default_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from samplers import SAMPLERS
    from samplers.bench.cases import all_cases
    from samplers.bench.measure import CaseRunner

    runner = CaseRunner(all_cases()[0], 2)
    entry = SAMPLERS["dpm_solver_3m"]
    monkeypatch.setattr(runner.refs, "target", lambda sigmas: runner.x0 * 0)  # no reference solve needed
    first = runner.run(entry, 3)
    assert entry.defaults["solver_type"] == "dpmsolver"
    assert runner.run(entry, 3, {"solver_type": "dpmsolver"}) is first
    assert runner.run(entry, 3, {"solver_type": "taylor"}) is not first
