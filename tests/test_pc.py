"""Predictor-corrector: DPM-Solver++ multistep predictor with the UniC or Langevin corrector."""

from __future__ import annotations

import math

import pytest
import torch
from test_convergence import observed_orders
from test_edges import MU, STD, exact, gaussian_model, start

from samplers import SAMPLERS, grids
from samplers import plan as plan_module
from samplers.bench.cases import all_cases
from samplers.bench.measure import CaseRunner
from samplers.deterministic import build_plan
from samplers.options import parse_options
from samplers.plan import Plan
from samplers.sigmas import read_grid

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


@pytest.mark.parametrize("order", [2, 3])
def test_unic_raises_the_order_by_one(order: int) -> None:
    """On the Gaussian (exact solution) with uniform-lambda grids: the corrected sampler converges one order
    faster than its predictor alone (third_order='consistent' so that the 3M predictor is of order 3). Every
    doubling is checked, the finest closely: a corrector that drops one of the predictor's nodes wanders between
    orders 4 and 1 at order 2, and stays near 3.7 at order 3."""
    x, ns, slopes = start(), [12, 24, 48, 96], {}
    for corrector in ("none", "unic") if order == 2 else ("unic",):  # 3M alone superconverges on a Gaussian
        errors = []
        for n in ns:
            sigmas = grids.uniform_lambda(n + 1, 0.1, 14.6, append_zero=False)
            out = PC(gaussian_model(), x, sigmas, order=order, corrector=corrector, solver_type="taylor",
                     third_order="consistent", disable=True)
            errors.append(float((out - exact(x, 14.6, 0.1)).abs().max()))
        slopes[corrector] = observed_orders(errors, ns)
    if order == 2:
        assert slopes["none"] == pytest.approx([2, 2, 2], abs=0.35), slopes
    assert slopes["unic"] == pytest.approx([order + 1] * 3, abs=0.4), slopes
    assert slopes["unic"][-1] == pytest.approx(order + 1, abs=0.15), slopes


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


def test_langevin_snr_from_one_on_is_refused_below_it_stays_stable() -> None:
    """The move x + e score + sqrt(2e) z with e = 2 (snr sigma)^2 is stable on a level of variance sigma^2 only while
    e < 2 sigma^2: snr 1.5 gave std 45 on N(0, I) data and 10 gave 1e14, silently."""
    sigmas = grids.karras(10, 0.03, 14.6)
    x = torch.randn(4, 4, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * math.hypot(1, 14.6)

    def unit(x: torch.Tensor, sigma: torch.Tensor, **_: object) -> torch.Tensor:
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    for snr in (0.16, 0.5, 0.99):
        out = PC(unit, x, sigmas, corrector="langevin", snr=snr, seed=1, disable=True)
        assert 0.9 < float(out.std()) < 1.45, snr
    for snr in (1.0, 1.5, 10.0):
        with pytest.raises(ValueError, match=r"snr must be in \(0, 1\), got .*overshoots"):
            PC(unit, x, sigmas, corrector="langevin", snr=snr, disable=True)


NOISY_HISTORY = [("dpm_solver_pp_pc", {}), ("dpm_solver_pp_pc", {"corrector": "langevin"}),
                 ("dpm_solver_pp_2m_sde", {}), ("dpm_solver_pp_3m_sde", {})]
"""Multistep samplers whose state moves between model calls by more than the ODE (corrector, noise)."""


@pytest.mark.parametrize("gap", [1e-5, 1e-4, 1e-3])
def test_a_tiny_step_before_a_long_one_does_not_blow_up_the_corrector_or_the_noise(gap: float) -> None:
    """A step 1e-5..1e-3 long next to one of 1 (a spliced schedule): the earlier call's difference to the next is
    the corrector's jump or the noise, which the multistep weights multiplied by ~1/ratio (PC error 0.09 -> 9,
    2M SDE std 0.82 -> 2.7). Such calls are left out of the step (HISTORY_RATIO_MIN)."""
    g = torch.Generator().manual_seed(3)
    x = MU + math.sqrt(STD**2 + 14.6**2) * torch.randn(512, 3, 2, 2, generator=g, dtype=torch.float64)
    plain = torch.tensor([14.6, 5.0, 2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    tiny = torch.tensor([14.6, 5.0, 5.0 * (1 - gap), 2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    for name, options in NOISY_HISTORY:
        if "sde" in name or options:  # noise: 5 steps shrink the spread; the tiny step may not change it much
            stds = [float(SAMPLERS[name](gaussian_model(), x, grid, disable=True, seed=1, **options).std())
                    for grid in (plain, tiny)]
            assert abs(stds[1] / stds[0] - 1) < 0.1, (name, gap, stds)
        else:
            errors = [float((SAMPLERS[name](gaussian_model(), x, grid, disable=True, **options)
                             - exact(x, 14.6, 0.0)).square().mean().sqrt()) for grid in (plain, tiny)]
            assert errors[1] < 1.2 * errors[0], (name, gap, errors)


def test_the_history_is_cut_at_the_first_call_closer_than_the_documented_fraction_of_the_step() -> None:
    """HISTORY_RATIO_MIN = 0.005 of h, as its docstring says: gaps of 0.006 h are kept, one of 0.004 h ends the
    history there (older calls go too)."""
    h, newest = 2.0, (0, 1.0)
    kept = [newest, (1, 1.0 - 0.006 * h), (2, 1.0 - 0.012 * h)]
    assert plan_module._reliable(kept, h) == kept
    cut = [newest, (1, 1.0 - 0.006 * h), (2, 1.0 - 0.010 * h), (3, 1.0 - 0.5 * h)]
    assert plan_module._reliable(cut, h) == cut[:2]


def _fresh_plan(name: str, grid: torch.Tensor, schedule: str, options: dict) -> Plan:
    """The plan built anew (the registry caches plans by grid and options)."""
    opts = parse_options(name, SAMPLERS[name].defaults, {"schedule": schedule, **options})
    spec = SAMPLERS[name].spec
    assert spec is not None
    return build_plan(spec, read_grid(grid, opts["schedule"]), opts["schedule"], opts)


def test_only_history_that_moved_off_the_ode_is_thinned_and_standard_grids_keep_all_of_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ODE multisteps keep their order after a tiny step (their history is consistent; tests/test_convergence.py
    warms up with such steps); on the standard grids every plan is the one without the rule."""
    tiny = torch.tensor([14.6, 5.0, 5.0 * (1 - 1e-4), 2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    widths = {name: [len(st.terms) for st in SAMPLERS[name].plan(tiny).stages if st.commit]
              for name in ("dpm_solver_pp_3m", "dpm_solver_pp_3m_sde")}
    assert widths["dpm_solver_pp_3m"][2] == 3  # the step after the tiny one reads 3 calls
    assert widths["dpm_solver_pp_3m_sde"][2] == 1  # ... here only its own start
    standard = [(grid, "ve") for n in (4, 8, 10, 20, 50, 100) for grid in
                (grids.karras(n, 0.0292, 14.6), grids.exponential(n, 0.0292, 14.6))]
    standard += [(grids.flow_simple(n), "flow") for n in (4, 8, 10, 20, 50, 100)]
    cases = [(name, options, grid, schedule) for name, options in NOISY_HISTORY for grid, schedule in standard]
    built = [_fresh_plan(name, grid, schedule, options).stages for name, options, grid, schedule in cases]
    monkeypatch.setattr(plan_module, "HISTORY_RATIO_MIN", 0.0)
    for stages, (name, options, grid, schedule) in zip(built, cases, strict=True):
        assert _fresh_plan(name, grid, schedule, options).stages == stages, (name, options, grid.tolist())


COMFY_RATIO_SCRIPT = """
import json, math, os
from samplers.bench.comfy_builtin import load_comfy
load_comfy(os.environ["COMFYUI_PATH"])
import comfy.model_sampling as MS
import comfy.samplers as S
from samplers import FLOW, VE

class Eps(MS.ModelSamplingDiscrete, MS.EPS):
    pass

class Flow(MS.ModelSamplingDiscreteFlow, MS.CONST):
    pass

flow = Flow(None)
flow.set_parameters(shift=3.0)
worst = [math.inf, ""]
for family, sampling, schedule in (("eps", Eps(None), VE), ("flow", flow, FLOW)):
    for name in S.SCHEDULER_NAMES:
        for n in range(2, 101):
            lam = [schedule.lambda_(s) for s in S.calculate_sigmas(sampling, name, n).tolist() if s > 0]
            h = [b - a for a, b in zip(lam, lam[1:]) if math.isfinite(a) and b > a]
            for i in range(1, len(h)):
                for back in (1, 2):
                    if i >= back and h[i - back] / h[i] < worst[0]:
                        worst = [h[i - back] / h[i], f"{family} {name} n={n} step {i}, {back} back"]
print("RESULT" + json.dumps(worst))
"""


def test_no_comfyui_scheduler_comes_near_the_history_ratio_rule() -> None:
    """Every ComfyUI scheduler, 2-100 steps, SD1.5 eps and flow (shift 3) sigmas: the smallest ratio of an earlier
    lambda step to a later one that a third-order step reads is far above HISTORY_RATIO_MIN, so the rule never
    changes what a ComfyUI user gets."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not os.environ.get("COMFYUI_PATH"):
        pytest.skip("COMFYUI_PATH is not set: this check imports a real ComfyUI checkout")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", COMFY_RATIO_SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ratio, where = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))[len("RESULT"):])
    assert ratio > 3 * plan_module.HISTORY_RATIO_MIN, where
    assert round(ratio, 3) == 0.018 and where.startswith("eps linear_quadratic n=6"), (ratio, where)  # README
