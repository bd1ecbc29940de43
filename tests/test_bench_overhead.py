"""The overhead benchmark's own arithmetic (samplers/bench/overhead.py), on a fake clock.

Overhead per call is (run time - model calls x one call's time) / model calls. Here the clock moves only when the
test says so: every model call costs MODEL_S, and each sampler, the Euler loop, a stand-in ComfyUI twin and the
plan builders cost a known extra amount per run, so every figure of the result has an exact expected value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

from samplers import grids
from samplers.bench import overhead
from samplers.registry import SAMPLERS, SamplerEntry

MODEL_S = 2.0**-10
"""What one model call costs on the fake clock (powers of two keep the clock's sums exact, so a zero is a zero)."""
STEPS = 4
EXTRA_S = {"dpm_solver_pp_2m": 2.0**-11, "euler": 2.0**-12, "twin": 3 * 2.0**-11, "plan": 2.0**-15,
           "build": 3 * 2.0**-16}
"""What a run costs on the fake clock beyond its model calls."""


class FakeClock:
    """A clock that moves only by `advance`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Costly:
    """A registry entry whose runs and cached plans also cost a fixed time on the fake clock."""

    def __init__(self, entry: SamplerEntry, clock: FakeClock, run_s: float, plan_s: float) -> None:
        self._entry, self._clock, self._run_s, self._plan_s = entry, clock, run_s, plan_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry, name)

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        assert kwargs.get("disable") is True, "a progress bar would be timed as the sampler's overhead"
        self._clock.advance(self._run_s)
        return self._entry(*args, **kwargs)

    def plan(self, sigmas: torch.Tensor) -> Any:
        self._clock.advance(self._plan_s)
        return self._entry.plan(sigmas)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The fake clock as the benchmark's one-thread CPU clock; model calls, the Euler loop, plan builds and a
    stand-in ComfyUI twin of dpm_solver_pp_2m cost their known times on it."""
    fake = FakeClock()
    monkeypatch.setattr(overhead.time, "thread_time", fake)
    real_model, real_euler, real_build = overhead.trivial_model, overhead.euler_loop, overhead.build_plan

    def model(x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        fake.advance(MODEL_S)
        return real_model(x, sigma, **extra_args)

    def euler(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        fake.advance(EXTRA_S["euler"])
        return real_euler(model, x, sigmas)

    def build(*args: Any) -> Any:
        fake.advance(EXTRA_S["build"])
        return real_build(*args)

    def twins(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
              seed: int) -> dict[str, Callable[[], torch.Tensor]]:
        def run() -> torch.Tensor:
            fake.advance(EXTRA_S["twin"])
            return real_euler(model, x, sigmas)  # one model call per step, as sample_dpmpp_2m makes
        return {"sample_fake_2m": run}

    monkeypatch.setattr(overhead, "trivial_model", model)
    monkeypatch.setattr(overhead, "euler_loop", euler)
    monkeypatch.setattr(overhead, "build_plan", build)
    monkeypatch.setattr(overhead, "twin_runs", twins)
    monkeypatch.setattr(overhead, "twin_pairs", lambda device: [("dpm_solver_pp_2m", "sample_fake_2m"),
                                                                ("dpm_solver_pp_3m", "sample_not_timed")])
    return fake


def test_overhead_per_call_is_the_run_time_beyond_its_model_calls(clock: FakeClock) -> None:
    entries = {"dpm_solver_pp_2m": Costly(SAMPLERS["dpm_solver_pp_2m"], clock, EXTRA_S["dpm_solver_pp_2m"],
                                          EXTRA_S["plan"]),
               "dpm_solver_adaptive": SAMPLERS["dpm_solver_adaptive"]}
    res = overhead.measure_overhead(entries, steps=STEPS, repeats=3, threads=1)

    assert res["clock"] == "thread CPU time" and res["threads"] == 1
    assert res["shape"] == [1, 4, 128, 128] and res["steps"] == STEPS and res["repeats"] == 3
    assert res["model_us_per_call"] == pytest.approx(MODEL_S * 1e6)
    euler_us = EXTRA_S["euler"] / STEPS * 1e6
    assert res["euler"] == pytest.approx({"nfe": STEPS, "run_ms": (STEPS * MODEL_S + EXTRA_S["euler"]) * 1e3,
                                          "model_ms": STEPS * MODEL_S * 1e3, "overhead_us_per_call": euler_us,
                                          "min_overhead_us_per_call": euler_us})

    ours = res["samplers"]["dpm_solver_pp_2m"]
    ours_us = EXTRA_S["dpm_solver_pp_2m"] / STEPS * 1e6
    assert ours == pytest.approx({
        "nfe": STEPS, "run_ms": (STEPS * MODEL_S + EXTRA_S["dpm_solver_pp_2m"]) * 1e3,
        "model_ms": STEPS * MODEL_S * 1e3,
        "overhead_us_per_call": ours_us, "min_overhead_us_per_call": ours_us,
        "ratio_to_euler": ours_us / euler_us, "min_ratio_to_euler": ours_us / euler_us,
        "plan_us_per_run": EXTRA_S["plan"] * 1e6, "plan_build_us": EXTRA_S["build"] * 1e6})

    adaptive = res["samplers"]["dpm_solver_adaptive"]  # chooses its own steps: the calls of one run, no plan
    info: dict[str, Any] = {}
    x = torch.randn(overhead.SHAPE, generator=torch.Generator().manual_seed(0))  # the benchmark's latent, seed 0
    SAMPLERS["dpm_solver_adaptive"](lambda x, s: x * 0.5, x, overhead.timing_grid(STEPS), disable=True, info=info)
    assert adaptive["nfe"] == info["nfe"] > STEPS
    assert adaptive["overhead_us_per_call"] == 0.0
    assert adaptive["plan_us_per_run"] is None and adaptive["plan_build_us"] is None

    twin_us = EXTRA_S["twin"] / STEPS * 1e6
    assert set(res["comfyui"]) == {"sample_fake_2m"}  # a twin that did not load is not timed
    assert res["comfyui"]["sample_fake_2m"] == pytest.approx({
        "ours": "dpm_solver_pp_2m", "nfe": STEPS,
        "ours_us_per_step": (MODEL_S + EXTRA_S["dpm_solver_pp_2m"] / STEPS) * 1e6,
        "comfyui_us_per_step": (MODEL_S + EXTRA_S["twin"] / STEPS) * 1e6,
        "ours_overhead_us_per_call": ours_us, "comfyui_overhead_us_per_call": twin_us,
        "overhead_ratio": ours_us / twin_us, "min_overhead_ratio": ours_us / twin_us})


@pytest.mark.parametrize("extra_s", [0.0, 2.0**-22])
def test_a_ratio_needs_an_overhead_above_zero(clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
                                              extra_s: float) -> None:
    """An Euler loop or twin that costs only its model calls has no overhead to divide by: the ratio is None. Any
    overhead above zero, a fraction of a microsecond per call included, gives a ratio."""
    monkeypatch.setitem(EXTRA_S, "euler", extra_s)
    monkeypatch.setitem(EXTRA_S, "twin", extra_s)
    res = overhead.measure_overhead({"dpm_solver_pp_2m": SAMPLERS["dpm_solver_pp_2m"]}, steps=STEPS, repeats=3,
                                    threads=1)
    row, twin = res["samplers"]["dpm_solver_pp_2m"], res["comfyui"]["sample_fake_2m"]
    ratios = [row["ratio_to_euler"], row["min_ratio_to_euler"], twin["overhead_ratio"], twin["min_overhead_ratio"]]
    assert ratios == ([None] * 4 if extra_s == 0 else [0.0] * 4)
    assert 0 <= res["euler"]["overhead_us_per_call"] < 1


def test_samplers_without_a_plan_report_none(clock: FakeClock) -> None:
    """Score distillation is an optimisation loop, not a plan over the grid: it is timed, with no plan times."""
    res = overhead.measure_overhead({"dpm_solver_sds": SAMPLERS["dpm_solver_sds"]}, steps=STEPS, repeats=3, threads=1)
    row = res["samplers"]["dpm_solver_sds"]
    assert row["nfe"] == SAMPLERS["dpm_solver_sds"].count_model_calls(overhead.timing_grid(STEPS))
    assert row["plan_us_per_run"] is None and row["plan_build_us"] is None


@pytest.mark.parametrize(("repeats", "max_s", "done"), [(5, 0.0, 3), (4, 1e3, 4)])
def test_repeats_stop_after_the_minimum_once_the_time_limit_passes(clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
                                                                    repeats: int, max_s: float, done: int) -> None:
    """Past `max_s` a loaded machine still gets 3 repeats, the fewest a median of interleaved runs is worth."""
    ticks = iter(range(10**6, 10**6 + 1000))  # a wall clock far from 0 that moves 1 s per reading
    monkeypatch.setattr(overhead.time, "perf_counter", lambda: float(next(ticks)))
    res = overhead.measure_overhead({}, steps=STEPS, repeats=repeats, threads=1, max_s=max_s)
    assert res["repeats"] == done


def test_the_host_thread_count_is_given_back(clock: FakeClock) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        res = overhead.measure_overhead({}, steps=STEPS, repeats=3, threads=1)
        assert torch.get_num_threads() == 2
        assert res["threads"] == 1 and res["clock"] == "thread CPU time"
        wall = overhead.measure_overhead({}, steps=STEPS, repeats=3, threads=None)
        assert wall["threads"] == 2 and wall["clock"] == "wall clock"  # several threads: wall-clock time
    finally:
        torch.set_num_threads(before)


def test_time_batch_is_the_mean_time_of_one_call_between_two_syncs() -> None:
    fake, syncs = FakeClock(), []
    seconds = overhead._time_batch(lambda: fake.advance(0.25), 4, lambda: syncs.append(fake()), fake)
    assert seconds == 0.25 and syncs == [0.0, 1.0]


def test_the_euler_baseline_is_explicit_euler_in_sigma() -> None:
    """x_{n+1} = x_n + (x_n - D) / sigma_n * (sigma_{n+1} - sigma_n), D = x / 2: each step scales x by
    1 + (sigma_{n+1} - sigma_n) / (2 sigma_n), and a last step to 0 returns D."""
    x = torch.full((2, 3), 8.0)
    assert torch.equal(overhead.trivial_model(x, torch.ones(2)), torch.full((2, 3), 4.0))
    out = overhead.euler_loop(overhead.trivial_model, x, torch.tensor([4.0, 2.0, 1.0]))
    assert torch.equal(out, torch.full((2, 3), 8.0 * 0.75 * 0.75))
    assert torch.equal(overhead.euler_loop(overhead.trivial_model, x, torch.tensor([2.0, 0.0])), x / 2)

    seen: list[torch.Tensor] = []

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(sigma)
        return overhead.trivial_model(x, sigma)

    overhead.euler_loop(model, x, torch.tensor([4.0, 2.0, 1.0]))  # one call per interval, sigma per sample
    assert [s.tolist() for s in seen] == [[4.0, 4.0], [2.0, 2.0]]


def test_timing_grid_is_karras_over_stable_diffusions_range() -> None:
    grid = overhead.timing_grid(STEPS)
    assert len(grid) == STEPS + 1 and grid[-1] == 0
    assert math.isclose(grid[0].item(), 14.6, rel_tol=1e-12) and math.isclose(grid[-2].item(), 0.029, rel_tol=1e-12)
    assert torch.equal(grid, grids.karras(STEPS, 0.029, 14.6))


def test_twin_table_formats_each_twin_and_a_missing_ratio() -> None:
    row = {"ours": "dpm_solver_pp_2m", "nfe": 20, "ours_us_per_step": 1234.4, "comfyui_us_per_step": 1500.6,
           "ours_overhead_us_per_call": 12.34, "comfyui_overhead_us_per_call": 45.66, "overhead_ratio": 0.2704,
           "min_overhead_ratio": None}
    lines = overhead.twin_table({"comfyui": {"sample_dpmpp_2m": row}}).splitlines()
    assert lines[0].startswith("| ours | ComfyUI twin |") and lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| dpm_solver_pp_2m | sample_dpmpp_2m | 1234 | 1501 | 12.3 | 45.7 | 0.27 (—) |"
    assert len(lines) == 3


def test_command_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m samplers.bench.overhead` times the ComfyUI twins' samplers, 20 steps, 15 repeats, one thread, on
    the CPU, for up to 120 s (the module docstring's usage line)."""
    calls: list[tuple[list[str], dict[str, Any]]] = []

    def fake(entries: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        calls.append((list(entries), kwargs))
        raise SystemExit(0)

    monkeypatch.setattr(overhead, "measure_overhead", fake)
    with pytest.raises(SystemExit):
        overhead.main([])
    assert calls == [(list(overhead.TWINS), {"steps": 20, "repeats": 15, "threads": 1, "device": "cpu",
                                             "max_s": 120.0})]
    assert "[--steps 20] [--repeats 15] [--threads 1]" in overhead.__doc__


def test_command_help_is_the_module_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        overhead.main(["--help"])
    assert "Per-model-call sampler overhead with a trivial model" in " ".join(capsys.readouterr().out.split())


def test_command_without_comfyui_says_no_twin_was_timed(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    assert overhead.main(["--samplers", "dpm_solver_pp_2m,dpm_solver_adaptive", "--steps", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "latent 1x4x128x128 float32 on cpu, 1 thread(s), thread CPU time, karras(3)" in out
    assert "median of 1 interleaved repeats" in out
    assert "| sampler | NFE | overhead µs/call | plan µs/run (cached) | plan build µs |" in out
    assert any(line.startswith("| dpm_solver_pp_2m | 3 | ") for line in out.splitlines())
    assert any(line.startswith("| dpm_solver_adaptive | ") and line.endswith(" | — | — |")
               for line in out.splitlines())
    assert out.rstrip().endswith("COMFYUI_PATH is not set: no ComfyUI twins timed.")


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH is not set")
def test_comfyui_twins_are_timed_without_a_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each twin is ComfyUI's own function, called as KSAMPLER calls it with its seed and `disable=True`: a
    progress bar would be timed as ComfyUI's overhead."""
    from samplers.bench.comfy_builtin import comfyui_path, load_comfy
    from samplers.bench.comfytwin import TWINS, twin_runs

    load_comfy(str(comfyui_path()))
    import comfy.k_diffusion.sampling as sampling

    seen: dict[str, dict[str, Any]] = {}

    def recorder(name: str) -> Callable[..., torch.Tensor]:
        def run(model: Any, x: torch.Tensor, sigmas: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            seen[name] = kwargs
            return x
        return run

    for name in TWINS.values():
        monkeypatch.setattr(sampling, name, recorder(name))
    runs = twin_runs(overhead.trivial_model, torch.zeros(1, 4, 8, 8), overhead.timing_grid(STEPS), seed=5)
    assert set(runs) == set(TWINS.values())
    for run in runs.values():
        run()
    assert seen == {name: {"extra_args": {"seed": 5}, "disable": True} for name in TWINS.values()}
