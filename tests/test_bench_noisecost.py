"""samplers/bench/noisecost.py: what it times, on how many threads, and its defaults (the figures: README, speed)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from samplers.bench.noisecost import _torchsde_run, main, measure_noise_cost

ROOT = Path(__file__).resolve().parents[1]


def test_each_source_is_timed_per_step_within_the_runs_own_time() -> None:
    """Every per-step time is positive and, times the steps and repeats, fits in the wall time of the whole call
    (thread CPU time on one thread cannot exceed it); the default grid is the one the committed benchmark timed."""
    start = time.perf_counter()
    r = measure_noise_cost(repeats=2, batch=1)
    wall = time.perf_counter() - start
    recorded = json.loads((ROOT / "docs" / "bench.json").read_text())["noise_cost"][0]
    assert r["steps"] == recorded["steps"] and r["clock"] == recorded["clock"] == "thread CPU time"
    ms = r["ms_per_step"]
    assert {"seeded_brownian", "randn"} <= set(ms)
    for name, per_step in ms.items():
        assert 0 < per_step * r["steps"] * r["repeats"] / 1e3 <= wall, name
    assert 1e-3 < ms["randn"] < 1e3  # milliseconds: randn of 65536 floats takes well over 1 us and under 1 s
    assert r["ratio_to_randn"]["randn"] == 1.0
    assert r["torchsde"] is (importlib.util.find_spec("torchsde") is not None)
    if r["torchsde"]:
        assert r["ratio_to_torchsde"] == ms["seeded_brownian"] / ms["torchsde_brownian_tree"]


def test_the_torchsde_run_asks_each_tree_for_every_increment_above_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[float, float]] = []
    domains: list[tuple[float, float]] = []

    class Tree:
        def __init__(self, t0: float, w0: torch.Tensor, t1: float, entropy: int) -> None:
            self.w0 = w0
            domains.append((t0, t1))

        def __call__(self, t: float, s: float) -> torch.Tensor:
            asked.append((t, s))
            return self.w0

    monkeypatch.setitem(sys.modules, "torchsde", types.SimpleNamespace(BrownianTree=Tree))
    run = _torchsde_run(torch.zeros(2, 4, 8, 8), [14.6, 3.0, 0.5, 0.0], seed=0)
    assert run is not None
    run()
    assert asked == [(3.0, 14.6), (3.0, 14.6), (0.5, 3.0), (0.5, 3.0)]  # two trees (batch 2), no step to 0
    assert domains == [(0.5, 14.6)] * 2  # each tree spans the nonzero sigmas


def test_the_noise_is_timed_on_one_thread_and_the_hosts_count_comes_back() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    torch.set_num_threads(2)
    try:
        r = measure_noise_cost(steps=4, repeats=1, batch=1)
        seen.append(torch.get_num_threads())
    finally:
        torch.set_num_threads(before)
    assert r["threads"] == 1 and seen == [2]


def test_the_command_prints_one_row_per_batch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--batches", "1,2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "noise for a 20-step Karras grid on cpu (one thread, thread CPU time)" in out
    assert "| 1x4x128x128 |" in out and "| 2x4x128x128 |" in out
