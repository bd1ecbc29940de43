"""samplers/bench/networks.py: the demo-network reference is as accurate as its docstring says, and the committed
network distribution was made with today's settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dpmsolver_demo.sampling import ConvergedReference
from samplers.bench import networks
from samplers.registry import SAMPLERS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_network_reference_is_within_1e_12_mse_of_half_its_step() -> None:
    """The flow network on its 10-interval grid (the case whose reference converges slowest): at REFERENCE_H the
    MSE against a solve with half the step is ~1e-13, at twice REFERENCE_H ~8e-12."""
    (case,) = networks.select_network_cases(["digits_flow/simple"], 2)
    x = case.problem.prior_noise(2)
    refs = networks.NetworkReferences(case, x)
    grid = case.grid(10)
    finer = ConvergedReference(case.problem.demo, x, networks.REFERENCE_H / 2).target(grid).to(torch.float64)
    out = refs.target(grid)
    assert out.dtype == torch.float64 and float(((out - finer) ** 2).mean()) < 1e-12
    assert refs.ode_solves == 1
    refs.target(grid)
    refs.target(case.grid(20))
    assert refs.ode_solves == 2  # one solve per grid end, cached


def test_the_committed_network_distribution_ran_with_todays_settings() -> None:
    """docs/bench_networks.json's distribution section: its sample count, seed, budgets and samplers are today's
    defaults, and its converged ODE rows cost the calls they cost today (a reference of step 2 * REFERENCE_H; the
    count does not depend on the batch, so two noises do)."""
    record = json.loads((DOCS / "bench_networks.json").read_text())["network_distribution"]
    assert (record["samples"], record["seed"], record["budgets"]) == (
        networks.DIST_SAMPLES, networks.DIST_SEED, list(networks.DIST_BUDGETS))
    assert list(record["samplers"]) == list(networks._dist_entries(SAMPLERS))
    assert list(networks._dist_entries(SAMPLERS))[-len(networks.DIST_COMPARE):] == list(networks.DIST_COMPARE)
    assert list(record["models"]) == ["digits_eps", "digits_flow"]
    res = networks.run_distribution({}, models=tuple(record["models"]), samples=2)  # the ODE rows only
    for name, model in record["models"].items():
        assert res["models"][name]["ode_calls"] == model["ode_calls"], name
        assert 0 < res["models"][name]["seconds"] < 600


def test_no_stochastic_sampler_no_distribution_rows() -> None:
    deterministic = {name: SAMPLERS[name] for name in networks.DIST_COMPARE}
    assert networks._dist_entries(deterministic) == {}


def test_the_network_cases_are_those_the_committed_benchmark_describes() -> None:
    """Each case's problem, family, grid, schedule, sigma range, data std and dimension (that of one noise) as
    docs/bench_networks.json records them."""
    committed = json.loads((DOCS / "bench_networks.json").read_text())["cases"]
    for case in networks.network_cases(1):
        problem = case.problem
        assert case.problem.prior_noise(1)[0].numel() == problem.dim
        today = {"problem": problem.name, "family": problem.family, "grid": case.grid_name, "schedule": case.schedule,
                 "sigma_max": problem.sigma_max, "sigma_min": problem.sigma_min, "data_std": case.data_std,
                 "dim": problem.dim}
        assert committed[case.name] == today, case.name


def test_the_committed_floor_is_drawn_again_from_the_whole_data_set() -> None:
    """The estimator's floor: DIST_SAMPLES images drawn five times (seed DIST_SEED) from all 1797 digits, against all
    of them; with no sampler and no model only the floor is computed. Its figures are the committed ones (to the
    last digits a CPU's linear algebra may move)."""
    committed = json.loads((DOCS / "bench_networks.json").read_text())["network_distribution"]
    res = networks.run_distribution({}, models=())
    assert res["floor"]["what"] == committed["floor"]["what"] == "512 random data images vs all 1797 (5 draws)"
    for key in ("mean", "min", "max"):
        assert res["floor"][key] == pytest.approx(committed["floor"][key], rel=1e-6), key
    assert res["models"] == {} and res["samplers"] == {}
    fields = ("samples", "seed", "budgets", "data_size", "feature_space")
    assert {key: res[key] for key in fields} == {key: committed[key] for key in fields}


@pytest.mark.parametrize(("value", "text"), [(None, "fail"), (math.nan, "fail"), (math.inf, "fail"),
                                             (0.12345, "0.123")])
def test_distance_cells(value: float | None, text: str) -> None:
    assert networks._fd(value) == text
