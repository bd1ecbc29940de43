"""The logSNR uniform schedule and model-family detection as each fork exposes it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import pairwise
from types import SimpleNamespace

import pytest
import torch
from webui_standin import harness

from dpmsolver_webui.flow import model_family, sampler_family
from dpmsolver_webui.schedule import logsnr_uniform, logsnr_uniform_sigmas
from samplers.sigmas import TOP_SLACK


def half_log_snr(sigma: float, family: str) -> float:
    return -math.log(sigma) if family == "ve" else math.log((1 - sigma) / sigma)


@pytest.mark.parametrize("n", [1, 2, 10, 30])
def test_ve_grid_is_uniform_in_lambda_and_equals_exponential(n: int) -> None:
    sigmas = logsnr_uniform_sigmas(n, 0.0292, 14.6146, "ve")
    assert sigmas.dtype == torch.float64 and len(sigmas) == n + 1 and sigmas[-1] == 0
    assert math.isclose(sigmas[0], 14.6146) and math.isclose(sigmas[n - 1], 0.0292 if n > 1 else 14.6146)
    lam = [half_log_snr(s, "ve") for s in sigmas[:-1].tolist()]
    steps = [b - a for a, b in pairwise(lam)]
    assert all(math.isclose(h, steps[0], rel_tol=1e-9) for h in steps)
    exponential = torch.linspace(math.log(14.6146), math.log(0.0292), n, dtype=torch.float64).exp()
    torch.testing.assert_close(sigmas[:-1], exponential)


def test_flow_grid_is_symmetric_in_logit_and_avoids_sigma_one() -> None:
    sigmas = logsnr_uniform_sigmas(9, 0.002994, 1.0, "flow").tolist()
    assert math.isclose(sigmas[0], 1 - 0.002994) and math.isclose(sigmas[-2], 0.002994) and sigmas[-1] == 0
    lam = [half_log_snr(s, "flow") for s in sigmas[:-1]]
    assert math.isclose(lam[0], -lam[-1], rel_tol=1e-9)
    assert math.isclose(sigmas[4], 0.5, rel_tol=1e-9)  # the midpoint of a symmetric range: logit 0
    steps = [b - a for a, b in pairwise(lam)]
    assert all(math.isclose(h, steps[0], rel_tol=1e-9) for h in steps)
    capped = logsnr_uniform_sigmas(4, 0.01, 0.9, "flow").tolist()
    assert math.isclose(capped[0], 0.9)


@pytest.mark.parametrize(("args", "message"), [
    ((0, 0.03, 14.6, "ve"), "at least one step"),
    ((5, 0.0, 14.6, "ve"), "0 < sigma_min"),
    ((5, 2.0, 1.0, "ve"), "0 < sigma_min"),
    ((5, 0.6, 1.0, "flow"), "sigma_min < 0.5"),
    ((5, 0.5, 1.0, "flow"), "sigma_min < 0.5"),  # sigma_max would be capped to 1 - 0.5 = sigma_min
])
def test_bad_ranges_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        logsnr_uniform_sigmas(*args)


class CONST:
    """Named like ComfyUI/reForge `model_sampling.CONST` (flow)."""


class EPS:
    """Named like `model_sampling.EPS`."""


class ModelSamplingDiscreteFlow(CONST):
    pass


class ModelSamplingDiscrete(EPS):
    pass


def forge_linker(prediction_type: str) -> SimpleNamespace:
    return SimpleNamespace(predictor=SimpleNamespace(prediction_type=prediction_type))


def reforge_denoiser(sampling: object) -> SimpleNamespace:
    unet = SimpleNamespace(get_model_object=lambda name: sampling if name == "model_sampling" else None)
    return SimpleNamespace(inner_model=SimpleNamespace(forge_objects=SimpleNamespace(unet=unet)))


@pytest.mark.parametrize(("denoiser", "family"), [
    (forge_linker("const"), "flow"),                                      # Forge / Neo: PredictionDiscreteFlow
    (forge_linker("epsilon"), "ve"),
    (forge_linker("v_prediction"), "ve"),
    (reforge_denoiser(ModelSamplingDiscreteFlow()), "flow"),             # reForge: unet model_sampling CONST
    (reforge_denoiser(ModelSamplingDiscrete()), "ve"),
    (SimpleNamespace(model_sampling=ModelSamplingDiscreteFlow()), "flow"),  # reForge FlowMatchingDenoiser
    (harness.SD3Denoiser(SimpleNamespace(model=SimpleNamespace(model_sampling=harness.ModelSamplingDiscreteFlow())),
                         torch.tensor([0.5, 2.0])), "flow"),              # A1111 1.10 SD3 (table says VE)
    (SimpleNamespace(sigmas=harness.flow_table()), "flow"),              # any fork: table tops out at 1
    (SimpleNamespace(sigmas=harness.ve_table()), "ve"),
    (SimpleNamespace(sigmas=torch.tensor([0.1, 1.5])), "ve"),           # above 1: not a flow table
    (SimpleNamespace(model_sampling=SimpleNamespace(), sigmas=harness.flow_table()), "flow"),  # it says nothing
    (SimpleNamespace(inner_model=SimpleNamespace(forge_objects=SimpleNamespace(unet=SimpleNamespace(
        model=forge_linker("const"))))), "flow"),                         # Forge: unet.model.predictor
    (SimpleNamespace(), "ve"),
])
def test_model_family_per_fork(denoiser: object, family: str) -> None:
    assert model_family(denoiser) == family


def test_sampler_family_trusts_a_grid_above_one() -> None:
    cfg = SimpleNamespace(inner_model=forge_linker("const"))
    assert sampler_family(cfg, 1.0) == "flow"
    assert sampler_family(cfg, 1.0 + 2.0**-23) == "flow"  # a float32 flow scheduler's 1 (it was sampled as VE)
    assert sampler_family(cfg, 1.0 + TOP_SLACK) == "flow"  # the slack's end is still a flow grid's top
    assert sampler_family(cfg, 1.001) == "ve"
    assert sampler_family(cfg, 14.6) == "ve"


@pytest.fixture(params=harness.FLAVORS)
def webui(request: pytest.FixtureRequest) -> Iterator[SimpleNamespace]:
    yield harness.load_webui(request.param, "flow")
    harness.unload()


def test_scheduler_function_through_the_webui(webui: SimpleNamespace) -> None:
    harness.load_script()
    p = SimpleNamespace(is_hr_pass=False, scheduler="logSNR uniform", hr_scheduler=None,
                        sampler_noise_scheduler_override=None, extra_generation_params={})
    sampler = webui.sd_samplers.create_sampler("DPM-Solver++ 2M", webui.shared.sd_model)
    sigmas = sampler.get_sigmas(p, 6)
    table = harness.flow_table()
    expected = logsnr_uniform(6, float(table[0]), float(table[-1]), sampler.model_wrap)
    torch.testing.assert_close(sigmas, expected)
    assert sigmas.dtype == torch.float32 and float(sigmas[0]) < 1.0
    assert p.extra_generation_params["Schedule type"] == "logSNR uniform"
