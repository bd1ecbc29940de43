"""Predictor-corrector: DPM-Solver++ multistep predictor with the UniC or Langevin corrector."""

from __future__ import annotations

import math

import pytest
import torch
from test_edges import MU, STD, exact, gaussian_model, start

from samplers import SAMPLERS, grids
from samplers.bench.cases import all_cases
from samplers.bench.measure import CaseRunner

PC = SAMPLERS["dpm_solver_pp_pc"]


def test_defaults_and_metadata() -> None:
    assert PC.defaults["corrector"] == "unic" and PC.defaults["order"] == 3
    assert PC.calls_per_step == 1 and not PC.stochastic  # UniC reuses the next model call; no noise by default


@pytest.mark.parametrize(("order", "twin"), [(2, "dpm_solver_pp_2m"), (3, "dpm_solver_pp_3m")])
@pytest.mark.parametrize("schedule", ["ve", "flow"])
def test_without_corrector_it_is_the_multistep_sampler(order: int, twin: str, schedule: str) -> None:
    sigmas = grids.karras(9, 0.03, 14.6) if schedule == "ve" else torch.linspace(1.0, 0.0, 10, dtype=torch.float64)
    x = start(sigma=float(sigmas[0]))
    for options in ({}, {"solver_type": "taylor", "lower_order_final": True}):
        pc = PC(gaussian_model(schedule), x, sigmas, schedule=schedule, order=order, corrector="none", disable=True,
                **options)
        ode = SAMPLERS[twin](gaussian_model(schedule), x, sigmas, schedule=schedule, disable=True, **options)
        assert torch.equal(pc, ode)


@pytest.mark.parametrize("n", [1, 2, 5, 12])
@pytest.mark.parametrize("corrector", ["unic", "langevin"])
def test_model_calls_unic_none_extra_langevin_one_per_move(n: int, corrector: str) -> None:
    for sigmas in (grids.karras(n, 0.03, 14.6), grids.karras(n + 1, 0.3, 14.6, append_zero=False)):
        model = gaussian_model()
        PC(model, start(), sigmas, corrector=corrector, corrector_steps=2, disable=True)
        steps = len(sigmas) - 1
        landed = sum(1 for s in sigmas[1:].tolist() if s > 0)  # predictor steps that land on sigma > 0
        expected = steps + (2 * landed if corrector == "langevin" else 0)
        assert model.calls == expected == PC.count_model_calls(sigmas, corrector=corrector, corrector_steps=2)


def observed_order(errors: list[float], ns: list[int]) -> float:
    return math.log(errors[0] / errors[-1]) / math.log(ns[-1] / ns[0])


@pytest.mark.parametrize("order", [2, 3])
def test_unic_raises_the_order_by_one(order: int) -> None:
    """On the Gaussian (exact solution) with uniform-lambda grids: the corrected sampler converges one order
    faster than its predictor alone (third_order='consistent' so that the 3M predictor is of order 3)."""
    ns, x = [12, 24, 48], start()
    slopes = {}
    for corrector in ("none", "unic") if order == 2 else ("unic",):  # 3M alone superconverges on a Gaussian
        errors = []
        for n in ns:
            sigmas = grids.uniform_lambda(n + 1, 0.1, 14.6, append_zero=False)
            out = PC(gaussian_model(), x, sigmas, order=order, corrector=corrector, solver_type="taylor",
                     third_order="consistent", disable=True)
            errors.append(float((out - exact(x, 14.6, 0.1)).abs().max()))
        slopes[corrector] = observed_order(errors, ns)
    if order == 2:
        assert slopes["none"] == pytest.approx(2, abs=0.35)
    assert slopes["unic"] == pytest.approx(order + 1, abs=0.4)


@pytest.fixture(scope="module")
def runners() -> list[CaseRunner]:
    return [CaseRunner(c, 32) for c in all_cases() if c.name in ("ve_mixture/karras", "ve_mixture_cfg7.5/exponential",
                                                                   "flow_mixture/simple")]


@pytest.mark.parametrize("order", [2, 3])
def test_unic_improves_the_error_at_equal_model_calls(runners: list[CaseRunner], order: int) -> None:
    ratios = []
    for runner in runners:
        for budget in (15, 20, 30):
            unic = runner.at_budget(PC, budget, {"order": order})
            plain = runner.at_budget(PC, budget, {"order": order, "corrector": "none"})
            assert unic is not None and plain is not None and unic.nfe == plain.nfe
            ratios.append(unic.rmse / plain.rmse)
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    assert geomean < 0.75, ratios
    assert sum(r < 1 for r in ratios) >= 6, ratios  # of 9 (the flow 'simple' grid's errors are not monotone)


def test_langevin_corrector_is_seeded_and_keeps_the_gaussian() -> None:
    sigmas = grids.karras(30, 0.03, 14.6)
    g = torch.Generator().manual_seed(1)
    x = MU + math.sqrt(STD**2 + 14.6**2) * torch.randn(32, 1024, generator=g, dtype=torch.float64)
    out = PC(gaussian_model(), x, sigmas, corrector="langevin", seed=2, disable=True)
    n = out.numel()
    assert abs(float(out.mean()) - MU) < 5 * STD / math.sqrt(n)
    assert abs(float(out.var()) / STD**2 - 1) < 0.05
    again = PC(gaussian_model(), x, sigmas, corrector="langevin", extra_args={"seed": 2}, disable=True)
    assert torch.equal(out, again)
    other = PC(gaussian_model(), x, sigmas, corrector="langevin", seed=3, disable=True)
    assert not torch.allclose(out, other)
    assert float((out - PC(gaussian_model(), x, sigmas, disable=True)).abs().max()) > 1e-3  # it does move x
    batch = PC(gaussian_model(), x[:3], sigmas, corrector="langevin", seed=2, disable=True)
    alone = PC(gaussian_model(), x[1:2], sigmas, corrector="langevin", seed=3, disable=True)
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-12, atol=1e-12)  # per-sample streams


def test_langevin_edge_contract() -> None:
    seen: list[dict] = []
    sigmas = grids.karras(6, 0.03, 14.6)
    out = PC(gaussian_model(), start(), sigmas, corrector="langevin", callback=seen.append, disable=True)
    assert torch.equal(out, seen[-1]["denoised"]) and seen[-1]["sigma"].item() == pytest.approx(0.03)
    assert [d["i"] for d in seen] == list(range(len(seen))) and seen[-1]["total"] == len(seen)
    flow = PC(gaussian_model("flow"), start(sigma=1.0), torch.linspace(1.0, 0.0, 8, dtype=torch.float64),
              schedule="flow", corrector="langevin", disable=True)
    assert torch.isfinite(flow).all()
    for option, value in [("corrector", "euler"), ("corrector_steps", 0), ("snr", -1.0), ("order", 1)]:
        with pytest.raises(ValueError, match=option):
            PC(gaussian_model(), start(), sigmas, disable=True, **{option: value})
