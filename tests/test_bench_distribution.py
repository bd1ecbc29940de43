"""The distribution statistics of sampled batches (samplers/bench/distribution.py), on samples whose mean,
variance and modes are known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from samplers.bench.distribution import REFERENCES, distribution_cases, mixture_stats, run_distribution
from samplers.bench.problems import SEED, GaussianMixture
from samplers.registry import SAMPLERS

MIX = GaussianMixture(means=[[0.0, 0.0], [4.0, 0.0]], stds=[[1.0, 2.0], [1.0, 2.0]], weights=[0.25, 0.75])
"""Mean (3, 0); variance (4, 4) per dimension (within 1 and 4, between 3 and 0), so the data std is 2."""


def test_samples_with_the_mixtures_mean_and_modes() -> None:
    """0, 4, 4, 4 in the first dimension: mean 3, unbiased variance 4, a quarter of the samples in the first mode;
    -2, 2, -2, 2 in the second: mean 0, unbiased variance 16/3 against 4, a relative error of 1/3 there."""
    x = torch.tensor([[0.0, -2.0], [4.0, 2.0], [4.0, -2.0], [4.0, 2.0]])
    stats = mixture_stats(x, MIX)
    assert stats["mean_err"] == 0.0 and stats["mode_tv"] == 0.0
    assert stats["var_err"] == pytest.approx(math.sqrt(1 / 18), rel=1e-14)


def test_a_shifted_mean_is_measured_in_data_stds_and_missing_modes_in_total_variation() -> None:
    x = torch.tensor([[0.5, -2.0], [4.5, 2.0], [4.5, -2.0], [4.5, 2.0]]).reshape(4, 1, 2)  # any sample shape
    assert mixture_stats(x, MIX)["mean_err"] == pytest.approx(math.sqrt(0.5**2 / 2) / 2, rel=1e-15)
    one_mode = torch.tensor([[4.0, 0.0]] * 4)
    assert mixture_stats(one_mode, MIX)["mode_tv"] == pytest.approx(0.25, rel=1e-15)  # (0.25 + 0.25) / 2


def test_modes_are_assigned_by_likelihood_with_weights_and_spreads() -> None:
    """At the midpoint the heavier component wins; a wider component pays log(std) per dimension."""
    assert mixture_stats(torch.tensor([[2.0, 0.0]] * 4), MIX)["mode_tv"] == pytest.approx(0.25)  # all to 4
    wide = GaussianMixture(means=[[-2.0, 0.0], [2.0, 0.0]], stds=[[2.0, 2.0], [1.0, 1.0]], weights=[0.5, 0.5])
    # x = 0.5: nearer the wide component in its own stds (1.25 against 1.5), but log 2 per dimension tips it
    assert mixture_stats(torch.tensor([[0.5, 0.0]] * 2), wide)["mode_tv"] == pytest.approx(0.5)
    assert mixture_stats(torch.tensor([[0.5, 0.0], [-2.0, 0.0]]), wide)["mode_tv"] == 0.0
    # x = -0.5: 0.75 of the wide component's stds from it, 2.5 from the narrow one: the wide one. x = 0.2: 1.1
    # against 1.8, so the halved squares favour the wide one by 1.015, less than the 2 log 2 its spread costs
    assert mixture_stats(torch.tensor([[-0.5, 0.0], [0.5, 0.0]]), wide)["mode_tv"] == 0.0
    assert mixture_stats(torch.tensor([[-0.5, 0.0], [0.2, 0.0]]), wide)["mode_tv"] == 0.0


def test_the_run_covers_the_stochastic_samplers_and_the_references() -> None:
    names = ["dpm_solver_pp_2m_sde", "dpm_solver_pp_2m", "dpm_solver_pp_pc", "dpm_solver_1"]
    res = run_distribution({n: SAMPLERS[n] for n in names}, [3], 16)
    case = distribution_cases()[0]
    assert [c.name for c in distribution_cases()] == list(res["cases"]) == ["ve_mixture/karras", "flow_mixture/simple"]
    assert res["samples"] == 16 and res["steps"] == [3] and res["noise_seed"] == 0
    rows = res["cases"]["ve_mixture/karras"]["rows"]
    assert list(rows) == ["dpm_solver_pp_2m_sde", "dpm_solver_pp_2m", "dpm_solver_pp_pc",
                          "dpm_solver_pp_pc:corrector=langevin"]  # dpm_solver_1: neither stochastic nor a reference
    assert [r[1] for r in REFERENCES] == [rows[k]["label"] for k in list(rows)[1:]]
    assert rows["dpm_solver_pp_pc:corrector=langevin"]["options"] == {"corrector": "langevin"}
    cell = rows["dpm_solver_pp_2m_sde"]["cells"][0]
    assert cell["n_steps"] == 3 and cell["nfe"] == 3 and set(cell) >= {"mean_err", "var_err", "mode_tv"}
    floor = res["cases"]["ve_mixture/karras"]["floor"]
    assert 0 < floor["mean_err"] < 1 and 0 <= floor["mode_tv"] < 1
    assert res["floor_seed"] == "problems.SEED + 2"  # the floor is that of exact draws with the seed recorded
    mix = case.problem.data
    assert floor == mixture_stats(mix.sample_data(16, torch.Generator().manual_seed(SEED + 2)), mix)
    again = SAMPLERS["dpm_solver_pp_2m_sde"](case.problem.model, case.problem.prior_noise(16), case.grid(3),
                                             disable=True, schedule="ve", seed=0)
    assert {k: cell[k] for k in ("mean_err", "var_err", "mode_tv")} == mixture_stats(again, mix)
