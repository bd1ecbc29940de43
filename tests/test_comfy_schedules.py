"""SIGMAS nodes and their math, for a discrete VP (SD1.5) model and a shifted flow model."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
import torch
from test_comfy_support import (
    FakePatcher,
    fake_comfy_package,
    install_fake_comfy,
    load_package,
    make_model_sampling,
    purge_package,
    sd15_sigma_table,
)

from samplers import SAMPLERS, grids, resolve_schedule
from samplers.plan import fast_orders

PACKAGE = "dpm_solver_samplers_schedules_test"
SPACINGS = ("logSNR uniform", "time uniform", "time quadratic")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict, Any]]:
    with fake_comfy_package(monkeypatch, PACKAGE) as (modules, _):
        yield modules, sys.modules[f"{PACKAGE}.nodes.schedules"]


def _family(kind: str) -> str:
    return "flow" if kind == "flow" else "ve"


def test_logsnr_uniform_ve_is_log_uniform_between_the_models_sigmas(env: tuple[dict, Any]) -> None:
    modules, schedules = env
    ms = make_model_sampling(modules, "eps")
    got = schedules.schedule_sigmas(ms, "ve", 10, "logSNR uniform")
    expected = grids.exponential(10, float(ms.sigma_min), float(ms.sigma_max)).float()
    assert got.dtype == torch.float32 and got.shape == (11,)
    assert torch.allclose(got, expected, rtol=1e-6, atol=0)


def test_logsnr_uniform_flow_is_symmetric_in_logit(env: tuple[dict, Any]) -> None:
    modules, schedules = env
    ms = make_model_sampling(modules, "flow")
    got = schedules.schedule_sigmas(ms, "flow", 8, "logSNR uniform").double()
    sigma_min = float(ms.sigma_min)
    assert got[-1] == 0 and math.isclose(got[-2], sigma_min, rel_tol=1e-6)
    assert math.isclose(got[0], 1.0 - sigma_min, rel_tol=1e-6)
    lam = [math.log((1 - s) / s) for s in got[:-1].tolist()]
    steps = [b - a for a, b in pairwise(lam)]
    assert max(steps) - min(steps) < 1e-4 * abs(steps[0])


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_time_uniform_and_quadratic_use_the_models_table(env: tuple[dict, Any], kind: str) -> None:
    modules, schedules = env
    ms = make_model_sampling(modules, kind)
    table = ms.sigmas.double()
    n = len(table)
    uniform = schedules.schedule_sigmas(ms, _family(kind), 4, "time uniform").double()
    # t = 1, 3/4 + 1/(4n), ..., 1/n: every third of the table
    assert uniform[0] == pytest.approx(float(table[-1]), rel=1e-6)
    assert uniform[-2] == pytest.approx(float(table[0]), rel=1e-6) and uniform[-1] == 0
    k = (1.0 + 2 * (1.0 / n)) / 3 * n - 1  # t at i = 2 of 4 points (ramp 2/3)
    lo = math.floor(k)
    w = k - lo
    expected = math.exp((1 - w) * math.log(table[lo]) + w * math.log(table[lo + 1]))
    assert uniform[2] == pytest.approx(expected, rel=1e-6)
    quadratic = schedules.schedule_sigmas(ms, _family(kind), 4, "time quadratic").double()
    assert quadratic[0] == uniform[0] and quadratic[-2] == uniform[-2]
    assert (quadratic[1:-2] < uniform[1:-2]).all()  # denser near the end
    roots = [math.sqrt(_time_in_table(ms.sigmas, float(s))) for s in quadratic[:-1]]  # uniform in sqrt(t)
    gaps = [b - a for a, b in pairwise(roots)]
    assert gaps == pytest.approx([gaps[0]] * len(gaps), rel=1e-4)


def test_time_uniform_on_sd15_hits_training_timesteps(env: tuple[dict, Any]) -> None:
    modules, schedules = env
    ms = make_model_sampling(modules, "eps")
    got = schedules.schedule_sigmas(ms, "ve", 4, "time uniform")  # t = 1000, 667, 334, 1 (of 1000) -> k = t - 1
    table = sd15_sigma_table()
    assert torch.allclose(got[:-1], table[[999, 666, 333, 0]], rtol=1e-5)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_denoise_keeps_the_tail_of_the_longer_grid(env: tuple[dict, Any], spacing: str, kind: str) -> None:
    modules, schedules = env
    ms = make_model_sampling(modules, kind)
    fam = _family(kind)
    for steps, denoise in ((10, 0.5), (7, 0.3), (5, 0.99)):
        got = schedules.schedule_sigmas(ms, fam, steps, spacing, denoise)
        full = schedules.schedule_sigmas(ms, fam, int(steps / denoise), spacing, 1.0)
        assert got.shape == (steps + 1,) and torch.equal(got, full[-(steps + 1):])
    assert schedules.schedule_sigmas(ms, fam, 10, spacing, 0.0).numel() == 0


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("denoise", [1.0, 0.6])
def test_fast_grid_costs_exactly_its_budget(env: tuple[dict, Any], spacing: str, kind: str, denoise: float) -> None:
    modules, schedules = env
    ms = make_model_sampling(modules, kind)
    fam = _family(kind)
    for nfe in range(1, 22):
        grid = schedules.fast_sigmas(ms, fam, nfe, spacing, denoise)
        assert grid.shape == (nfe + 1,) and grid[-1] == 0
        assert (grid[1:] < grid[:-1]).all()
        assert SAMPLERS["dpm_solver_fast"].count_model_calls(grid, schedule=fam) == nfe
        start = schedules.schedule_sigmas(ms, fam, nfe, spacing, denoise)[0]
        assert grid[0] == start


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("denoise", [1.0, 0.6])
def test_fast_grid_puts_intermediate_calls_at_thirds_in_lambda(env: tuple[dict, Any], spacing: str,
                                                               kind: str, denoise: float) -> None:
    modules, schedules = env
    ms = make_model_sampling(modules, kind)
    fam = _family(kind)
    sched = resolve_schedule(fam)
    for nfe in (10, 11, 12):  # body calls 9, 10, 11: orders (3, 3, 2, 1), (3, 3, 3, 1), (3, 3, 3, 2)
        grid = schedules.fast_sigmas(ms, fam, nfe, spacing, denoise).double().tolist()
        plan = SAMPLERS["dpm_solver_fast"].plan(torch.tensor(grid, dtype=torch.float64), schedule=fam)
        assert plan.nfe == nfe
        ends = [grid[0]] + [stage.sigma for stage in plan.stages if stage.commit]
        lead = 1 if math.isinf(sched.lambda_(grid[0])) else 0  # flow time grids start at sigma = 1
        body = ends[lead:-1]
        orders = []
        for s, t in pairwise(body):
            inner = [g for g in grid if t < g < s]
            orders.append(len(inner) + 1)
            ls, lt = sched.lambda_(s), sched.lambda_(t)
            fractions = [(sched.lambda_(g) - ls) / (lt - ls) for g in inner]
            assert fractions == pytest.approx({1: [], 2: [1 / 2], 3: [1 / 3, 2 / 3]}[len(inner) + 1], abs=1e-5)
        assert orders == fast_orders(nfe - 1 - lead)
        if spacing == "logSNR uniform":
            lam = [sched.lambda_(e) for e in body]
            gaps = [b - a for a, b in pairwise(lam)]
            assert max(gaps) - min(gaps) < 1e-5 * gaps[0]
        else:  # step ends uniform in the table's time t (or in sqrt(t)) from the start to sigma_min
            warp = (lambda t: t) if spacing == "time uniform" else math.sqrt
            warped = [warp(_time_in_table(ms.sigmas, e)) for e in ends[:-1]]
            gaps = [b - a for a, b in pairwise(warped)]
            assert gaps == pytest.approx([gaps[0]] * len(gaps), rel=1e-4)


def test_the_time_of_a_sigma_inverts_the_tables_time(env: tuple[dict, Any]) -> None:
    _, schedules = env
    table = [float(v) for v in sd15_sigma_table().double()]
    n = len(table)
    for t in (0.5 / n, 1.0 / n, 1.5 / n, 2.0 / n, 0.1234, 0.5, 1.0 - 0.5 / n, 1.0, 1.5):
        expected = min(max(t, 1.0 / n), 1.0)
        assert schedules._time_of(table, schedules._sigma_at_time(table, t)) == pytest.approx(expected, rel=1e-12)


def _time_in_table(table: torch.Tensor, sigma: float) -> float:
    """t in [1/N, 1] of sigma in an ascending sigma table: (k + 1)/N at entry k, log-sigma interpolated."""
    logs = table.double().log()
    k = int(torch.searchsorted(logs, math.log(sigma)).clamp(1, len(logs) - 1)) - 1
    w = (math.log(sigma) - float(logs[k])) / float(logs[k + 1] - logs[k])
    return (k + w + 1.0) / len(logs)


@pytest.mark.parametrize("node_id", ["DPMSolverScheduler", "DPMSolverFastScheduler"])
@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_schedule_nodes_read_the_models_sampling(monkeypatch: pytest.MonkeyPatch, node_id: str, kind: str) -> None:
    modules = install_fake_comfy(monkeypatch)
    package = load_package(PACKAGE)
    try:
        cls = package.NODE_CLASS_MAPPINGS[node_id]
        model = FakePatcher(make_model_sampling(modules, kind))
        spec = cls.INPUT_TYPES()["required"]
        assert list(spec) == ["model", "steps", "spacing", "denoise"]
        for spacing in spec["spacing"][0]:
            (sigmas,) = cls().get_sigmas(model, 12, spacing, 1.0)
            assert sigmas.shape == (13,) and sigmas.dtype == torch.float32 and sigmas[-1] == 0
            if kind == "flow":
                assert float(sigmas[0]) <= 1.0
        with pytest.raises(ValueError, match="input 'spacing'"):
            cls().get_sigmas(model, 12, "karras", 1.0)
    finally:
        purge_package(PACKAGE)


def test_models_without_a_table_get_a_clear_message(env: tuple[dict, Any]) -> None:
    _, schedules = env

    class Continuous:
        sigma_min = torch.tensor(0.002)
        sigma_max = torch.tensor(120.0)

    with pytest.raises(ValueError, match="no sigma table"):
        schedules.schedule_sigmas(Continuous(), "ve", 5, "time uniform")
    assert schedules.schedule_sigmas(Continuous(), "ve", 5, "logSNR uniform").shape == (6,)


class _Tabled:
    """A model_sampling with a given sigma table (sigma_min/max its ends)."""

    def __init__(self, table: list[float]) -> None:
        self.sigmas = torch.tensor(table)
        self.sigma_min, self.sigma_max = self.sigmas[0], self.sigmas[-1]


@pytest.mark.parametrize(("table", "message"), [
    ([0.5], "no sigma table"),
    ([[0.1, 1.0], [2.0, 3.0]], "no sigma table"),
    ([0.1, 2.0, 1.0, 3.0], "not ascending and positive"),
    ([0.0, 1.0, 2.0], "not ascending and positive"),
    ([-0.1, 1.0, 2.0], "not ascending and positive"),
])
def test_a_sigma_table_time_spacing_cannot_use_is_named(env: tuple[dict, Any], table: list[Any], message: str) -> None:
    _, schedules = env
    with pytest.raises(schedules.ScheduleError, match=message):
        schedules.schedule_sigmas(_Tabled(table), "ve", 3, "time uniform")


def test_a_two_entry_sigma_table_is_enough_and_repeated_entries_are_allowed(env: tuple[dict, Any]) -> None:
    _, schedules = env
    got = schedules.schedule_sigmas(_Tabled([0.1, 10.0]), "ve", 3, "time uniform")
    assert got.tolist() == pytest.approx([10.0, 1.0, 0.1, 0.0])  # t = 1, 3/4, 1/2: entries 1, 0.5 (log-midpoint), 0
    got = schedules.schedule_sigmas(_Tabled([0.1, 1.0, 1.0, 10.0]), "ve", 3, "time uniform")
    assert got.tolist() == pytest.approx([10.0, 1.0, 0.1, 0.0])  # t = 1, 5/8, 1/4: entries 3, 1.5, 0


@pytest.mark.parametrize(("steps", "denoise", "message"), [
    (0, 1.0, "input 'steps' must be a whole number of at least 1, got 0"),
    (True, 1.0, "input 'steps' must be a whole number"),
    (2.0, 1.0, "input 'steps' must be a whole number"),
    (4, -0.1, "input 'denoise' must be between 0 and 1, got -0.1"),
    (4, 1.5, "input 'denoise' must be between 0 and 1"),
    (4, True, "input 'denoise' must be between 0 and 1"),
    (4, "1", "input 'denoise' must be between 0 and 1"),
])
@pytest.mark.parametrize("grid", ["schedule_sigmas", "fast_sigmas"])
def test_steps_and_denoise_are_checked_by_name(env: tuple[dict, Any], grid: str, steps: Any, denoise: Any,
                                               message: str) -> None:
    modules, schedules = env
    with pytest.raises(schedules.ScheduleError, match=message):
        getattr(schedules, grid)(make_model_sampling(modules, "eps"), "ve", steps, "logSNR uniform", denoise)


@pytest.mark.parametrize("grid", ["schedule_sigmas", "fast_sigmas"])
def test_denoise_zero_is_an_empty_grid_and_denoise_one_the_full_grid(env: tuple[dict, Any], grid: str) -> None:
    modules, schedules = env
    model_sampling = make_model_sampling(modules, "eps")
    make = getattr(schedules, grid)
    assert make(model_sampling, "ve", 4, "logSNR uniform", 0.0).shape == (0,)
    full = make(model_sampling, "ve", 4, "logSNR uniform", 1)
    assert full.shape == (5,) and float(full[0]) == pytest.approx(float(model_sampling.sigma_max), rel=1e-6)
    assert torch.equal(make(model_sampling, "ve", 4, "logSNR uniform"), full)  # denoise 1 by default
    for spacing in SPACINGS:  # one step: from sigma_max to 0
        assert make(model_sampling, "ve", 1, spacing).tolist() == pytest.approx([float(model_sampling.sigma_max), 0.0])


def test_a_flow_model_needs_sigma_min_below_one_half_for_logsnr_uniform(env: tuple[dict, Any]) -> None:
    _, schedules = env
    model_sampling = _Tabled([0.5, 0.75, 1.0])
    with pytest.raises(schedules.ScheduleError, match=r"needs sigma_min < 0\.5 on a flow model, got 0\.5"):
        schedules.schedule_sigmas(model_sampling, "flow", 4, "logSNR uniform")
    model_sampling.sigma_min = torch.tensor(0.4)
    got = schedules.schedule_sigmas(model_sampling, "flow", 2, "logSNR uniform").tolist()
    assert got == pytest.approx([0.6, 0.4, 0.0])  # symmetric in logit: lambda from -log 1.5 to log 1.5


def test_a_fast_grid_starting_at_sigma_min_is_one_step_to_zero(env: tuple[dict, Any]) -> None:
    _, schedules = env
    model_sampling = _Tabled([0.1, 1.0, 10.0])
    model_sampling.sigma_min = torch.tensor(1.0)  # above the table's smallest entry: time points reach below it
    got = schedules.fast_sigmas(model_sampling, "ve", 2, "time uniform", 2.0 / 3.0)  # points 10, 1, 0.1: start 1
    assert got.tolist() == [1.0, 0.0]
