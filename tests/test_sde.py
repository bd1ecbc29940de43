"""SDE and ancestral samplers: the ODE at eta = 0, the SDE weights, exact marginals, sample statistics, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_edges import MU, STD, gaussian_model, start

from samplers import SAMPLERS, grids
from samplers.bench.problems import GaussianMixture
from samplers.coefficients import exponential_step, sde_noise_std
from samplers.driver import NonFiniteResult
from samplers.noise import SeededNoise
from samplers.schedules import FLOW, VE

SDE = ["dpm_solver_pp_sde", "dpm_solver_pp_2m_sde", "dpm_solver_pp_3m_sde", "dpm_solver_pp_2s_ancestral"]
TWIN = {"dpm_solver_pp_sde": "dpm_solver_pp_2s", "dpm_solver_pp_2m_sde": "dpm_solver_pp_2m",
        "dpm_solver_pp_3m_sde": "dpm_solver_pp_3m", "dpm_solver_pp_2s_ancestral": "dpm_solver_pp_2s"}
SCHEDULES = {"ve": VE, "flow": FLOW}


def flow_grid(n: int, shift: float = 3.0) -> torch.Tensor:
    """Shifted flow grid from sigma = 1 exactly, n steps, ending at 0."""
    return torch.tensor([grids.flow_shift(1 - k / n, shift) for k in range(n)] + [0.0], dtype=torch.float64)


def grid(schedule: str, n: int) -> torch.Tensor:
    return grids.karras(n, 0.03, 14.6) if schedule == "ve" else flow_grid(n)


def test_the_new_entries_are_registered_as_stochastic() -> None:
    for name in SDE:
        entry = SAMPLERS[name]
        assert entry.stochastic
        assert {"eta", "s_noise", "noise_sampler", "seed"} <= set(entry.defaults)
        assert entry.defaults["eta"] == 1.0 and entry.defaults["s_noise"] == 1.0
    assert SAMPLERS["dpm_solver_pp_sde"].calls_per_step == 2 == SAMPLERS["dpm_solver_pp_2s_ancestral"].calls_per_step
    assert SAMPLERS["dpm_solver_pp_2m_sde"].calls_per_step == 1 == SAMPLERS["dpm_solver_pp_3m_sde"].calls_per_step


@pytest.mark.parametrize("name", SDE)
@pytest.mark.parametrize("schedule", ["ve", "flow"])
@pytest.mark.parametrize("options", [{}, {"solver_type": "taylor", "lower_order_final": True}, "extra"])
def test_eta_zero_is_the_ode_twin_exactly(name: str, schedule: str, options: dict | str) -> None:
    if options == "extra":
        options = {"r1": 0.4} if "r1" in SAMPLERS[name].defaults else {"third_order": "consistent"} \
            if "third_order" in SAMPLERS[name].defaults else {"lower_order_final": False}
    sigmas = grid(schedule, 9)
    x = start(sigma=float(sigmas[0]))
    sde = SAMPLERS[name](gaussian_model(schedule), x, sigmas, schedule=schedule, eta=0.0, disable=True, **options)
    ode = SAMPLERS[TWIN[name]](gaussian_model(schedule), x, sigmas, schedule=schedule, disable=True, **options)
    assert torch.equal(sde, ode)


@pytest.mark.parametrize("eta", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("nodes", [[0.0], [0.0, -0.8], [0.0, -0.6, -1.7], [0.0, 0.5], [0.0, 1 / 3, 2 / 3]])
def test_sde_weights_integrate_polynomials_exactly(eta: float, nodes: list[float]) -> None:
    """One SDE step with a polynomial D(lambda) of degree < #nodes reproduces the exact exponential integral
    alpha_t * int kappa e^(-kappa (lambda_t - l)) D(l) dl, kappa = 1 + eta, and the decay
    (sigma_t/sigma_s) e^(-eta h)."""
    lam_s, h = -0.4, 0.9
    lam_t = lam_s + h
    sigma_s, sigma_t = VE.sigma_at(lam_s), VE.sigma_at(lam_t)
    coeffs = [0.7, -1.3, 0.45][: len(nodes)]

    def d(lam: float) -> float:
        return sum(c * (lam - lam_s) ** k for k, c in enumerate(coeffs))

    a, b = exponential_step(1.0, sigma_s, 1.0, sigma_t, lam_s, lam_t, [lam_s + r * h for r in nodes], "data",
                            "taylor", "consistent", eta)
    kappa = 1 + eta
    u, w = np.polynomial.legendre.leggauss(30)
    lams = lam_s + (u + 1) * h / 2
    exact = float(sum(wi * h / 2 * kappa * math.exp(-kappa * (lam_t - li)) * d(li) for wi, li in zip(w, lams,
                                                                                                    strict=True)))
    got = sum(bj * d(lam_s + r * h) for bj, r in zip(b, nodes, strict=True))
    assert got == pytest.approx(exact, rel=1e-12, abs=1e-14)
    assert a == pytest.approx(sigma_t / sigma_s * math.exp(-eta * h), rel=1e-14)
    assert sde_noise_std(sigma_t, h, eta) == pytest.approx(sigma_t * math.sqrt(1 - math.exp(-2 * eta * h)))
    if len(nodes) == 2:  # the "dpmsolver" form is not exact for a linear D: the test can tell
        _, b_mid = exponential_step(1.0, sigma_s, 1.0, sigma_t, lam_s, lam_t, [lam_s + r * h for r in nodes],
                                    "data", "dpmsolver", "consistent", eta)
        assert abs(sum(bj * d(lam_s + r * h) for bj, r in zip(b_mid, nodes, strict=True)) - exact) > 1e-4


@pytest.mark.parametrize("name", SDE)
@pytest.mark.parametrize("schedule", ["ve", "flow"])
def test_marginals_are_exact_for_point_mass_data_at_any_step_count(name: str, schedule: str) -> None:
    """With D = mu constant every step is the exact solution: x(sigma) ~ N(alpha mu, sigma^2) whatever the steps.
    This pins the decay, the alpha in the drift and noise terms, and the ancestral split, for both families."""

    def point_mass(x: torch.Tensor, sigma: torch.Tensor, **extra: object) -> torch.Tensor:
        return torch.full_like(x, MU)

    sched = SCHEDULES[schedule]
    s0, s1 = (14.6, 0.4) if schedule == "ve" else (1.0, 0.4)
    sigmas = torch.tensor([s0, 0.9 * s0 if schedule == "ve" else 0.95, 2.0 if schedule == "ve" else 0.7, s1],
                          dtype=torch.float64)
    x = sched.alpha(s0) * MU + s0 * torch.randn(8, 4096, generator=torch.Generator().manual_seed(0),
                                                 dtype=torch.float64)
    out = SAMPLERS[name](point_mass, x, sigmas, schedule=schedule, seed=1, disable=True)
    n = out.numel()
    assert float(out.mean()) == pytest.approx(sched.alpha(s1) * MU, abs=5 * s1 / math.sqrt(n))
    assert float(out.var()) == pytest.approx(s1**2, rel=5 * math.sqrt(2 / n))
    # and s_noise scales the fresh noise: with s_noise = 0 the variance collapses to the decayed part
    quiet = SAMPLERS[name](point_mass, x, sigmas, schedule=schedule, seed=1, s_noise=0.0, disable=True)
    assert float(quiet.var()) < 0.6 * s1**2


def gaussian_batch(schedule: str, sigma: float, n: int = 32, d: int = 1024) -> torch.Tensor:
    a = SCHEDULES[schedule].alpha(sigma)
    g = torch.Generator().manual_seed(1)
    return a * MU + math.sqrt(a * a * STD**2 + sigma**2) * torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("schedule", ["ve", "flow"])
@pytest.mark.parametrize("name", SDE)
def test_samples_of_a_gaussian_have_the_data_mean_and_variance(name: str, schedule: str) -> None:
    sigmas = grid(schedule, 40 if schedule == "ve" else 80)
    x = gaussian_batch(schedule, float(sigmas[0]))
    out = SAMPLERS[name](gaussian_model(schedule), x, sigmas, schedule=schedule, seed=3, disable=True)
    n = out.numel()
    assert abs(float(out.mean()) - MU) < 5 * STD / math.sqrt(n)
    assert abs(float(out.var()) / STD**2 - 1) < 0.05  # SE 0.8%, discretisation bias < 3.5% (measured)


@pytest.mark.parametrize("schedule", ["ve", "flow"])
def test_the_variance_check_can_fail(schedule: str) -> None:
    sigmas = grid(schedule, 40)
    x = gaussian_batch(schedule, float(sigmas[0]))
    weak = SAMPLERS["dpm_solver_pp_2m_sde"](gaussian_model(schedule), x, sigmas, schedule=schedule, seed=3,
                                             s_noise=0.7, disable=True)
    assert abs(float(weak.var()) / STD**2 - 1) > 0.1


@pytest.mark.parametrize("schedule", ["ve", "flow"])
@pytest.mark.parametrize("name", SDE)
def test_mode_proportions_of_a_two_mode_mixture(name: str, schedule: str) -> None:
    mix = GaussianMixture(torch.tensor([[-1.5], [1.5]]), torch.tensor([[0.3], [0.3]]), torch.tensor([0.3, 0.7]),
                          family=schedule)
    sigmas = grid(schedule, 40)
    x = mix.prior_noise(4000, float(sigmas[0]), torch.Generator().manual_seed(0))
    out = SAMPLERS[name](mix, x, sigmas, schedule=schedule, seed=1, disable=True)
    share = float((out > 0).double().mean())
    assert share == pytest.approx(0.7, abs=4 * math.sqrt(0.21 / 4000))
    assert float(out[out > 0].std()) == pytest.approx(0.3, rel=0.2)


@pytest.mark.parametrize("name", SDE)
def test_same_seed_same_image_and_the_seed_sources(name: str) -> None:
    sigmas = grids.karras(8, 0.03, 14.6)
    x = start()
    sampler = SAMPLERS[name]
    a = sampler(gaussian_model(), x, sigmas, seed=5, disable=True)
    assert torch.equal(a, sampler(gaussian_model(), x, sigmas, seed=5, disable=True))
    assert not torch.allclose(a, sampler(gaussian_model(), x, sigmas, seed=6, disable=True))
    from_extra = sampler(gaussian_model(), x, sigmas, extra_args={"seed": 5}, disable=True)
    assert torch.equal(a, from_extra)  # ComfyUI passes the seed in extra_args
    assert torch.equal(a, sampler(gaussian_model(), x, sigmas, extra_args={"seed": 9}, seed=5, disable=True))
    assert torch.equal(sampler(gaussian_model(), x, sigmas, disable=True),
                       sampler(gaussian_model(), x, sigmas, seed=0, disable=True))  # no seed anywhere: 0


@pytest.mark.parametrize("name", SDE)
def test_first_image_does_not_depend_on_the_batch(name: str) -> None:
    sigmas = grids.karras(8, 0.03, 14.6)
    x = start(n=4)
    batch = SAMPLERS[name](gaussian_model(), x, sigmas, seed=11, disable=True)
    for b in range(4):  # image b of the batch = image 0 generated alone with seed + b
        alone = SAMPLERS[name](gaussian_model(), x[b:b + 1], sigmas, seed=11 + b, disable=True)
        torch.testing.assert_close(batch[b:b + 1], alone, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", SDE)
def test_noise_sampler_option_replaces_the_seeded_noise(name: str) -> None:
    sigmas = grids.karras(6, 0.03, 14.6)
    x = start()
    calls: list[tuple] = []
    source = SeededNoise(4, x, VE)

    def recording(sigma: float, sigma_next: float) -> torch.Tensor:
        calls.append((sigma, sigma_next))
        return source(sigma, sigma_next)

    out = SAMPLERS[name](gaussian_model(), x, sigmas, noise_sampler=recording, disable=True)
    assert calls and all(isinstance(s, float) and s > t > 0 for s, t in calls)  # floats: no host sync needed
    torch.testing.assert_close(out, SAMPLERS[name](gaussian_model(), x, sigmas, seed=4, disable=True),
                               rtol=0, atol=0)

    def zeros(sigma: float, sigma_next: float) -> torch.Tensor:
        return torch.zeros_like(x)

    assert not torch.allclose(out, SAMPLERS[name](gaussian_model(), x, sigmas, noise_sampler=zeros, disable=True))


@pytest.mark.parametrize("name", SDE)
def test_flow_step_from_sigma_one_renews_the_noise_exactly(name: str) -> None:
    """From alpha = 0 (h infinite) the SDE keeps none of x: x_t = alpha_t D + s_noise sigma_t z, and no NaN."""
    x = start(sigma=1.0)
    model = gaussian_model("flow")
    out = SAMPLERS[name](model, x, torch.tensor([1.0, 0.6], dtype=torch.float64), schedule="flow", seed=2,
                         s_noise=0.5, disable=True)
    assert model.sigmas == [1.0]
    d = gaussian_model("flow")(x, torch.ones(x.shape[0], dtype=torch.float64))
    z = SeededNoise(2, x, FLOW).increment(1.0, 0.6)
    torch.testing.assert_close(out, 0.4 * d + 0.5 * 0.6 * z, rtol=1e-12, atol=1e-12)
    full = SAMPLERS[name](gaussian_model("flow"), x, flow_grid(12), schedule="flow", disable=True)
    assert torch.isfinite(full).all()


@pytest.mark.parametrize("name", SDE)
def test_eta_and_s_noise_are_validated(name: str) -> None:
    for option, value in [("eta", -0.1), ("s_noise", float("nan")), ("seed", 1.5), ("noise_sampler", 3)]:
        model = gaussian_model()
        with pytest.raises(ValueError, match=option):
            SAMPLERS[name](model, start(), grids.karras(4, 0.03, 14.6), disable=True, **{option: value})
        assert model.calls == 0


@pytest.mark.parametrize("name", [*SDE, "dpm_solver_sds"])
def test_a_host_noise_sampler_of_the_wrong_shape_or_with_nan_is_named(name: str) -> None:
    """A batch-1 draw once gave every image the same noise, and a NaN draw after the last model call a NaN image,
    both without an error."""
    sigmas = torch.tensor([14.6, 5.0, 1.0], dtype=torch.float64)
    options = {"sds_noise": "fresh"} if name == "dpm_solver_sds" else {}
    x = start()

    def one_sample(sigma: object, sigma_next: object) -> torch.Tensor:
        return torch.randn(1, *x.shape[1:], dtype=x.dtype)

    def nan_at_the_end(sigma: object, sigma_next: object) -> torch.Tensor:
        return torch.randn_like(x) * (float("nan") if float(sigma_next) <= 1.0 else 1.0)

    with pytest.raises(ValueError, match=r"noise_sampler returned shape \(1, 3, 2, 2\) for \(sigma=[0-9.]+, "
                       r"sigma_next=[0-9.]+\); expected a tensor of x's shape \(4, 3, 2, 2\)"):
        SAMPLERS[name](gaussian_model(), x, sigmas, noise_sampler=one_sample, disable=True, **options)
    with pytest.raises(ValueError, match="noise_sampler returned a float"):
        SAMPLERS[name](gaussian_model(), x, sigmas, noise_sampler=lambda s, t: 0.0, disable=True, **options)
    with pytest.raises(NonFiniteResult, match=r"sample\(s\) \[0, 1, 2, 3\]\) although x and every model output"):
        SAMPLERS[name](gaussian_model(), x, sigmas, noise_sampler=nan_at_the_end, disable=True, **options)
    with pytest.raises(NonFiniteResult, match=r"state held NaN or inf before model call \d+ \(step \d+, sigma=1\) "
                                              r"although x and every earlier model output were finite"):
        SAMPLERS[name](gaussian_model(), x, torch.tensor([14.6, 5.0, 1.0, 0.5]), noise_sampler=nan_at_the_end,
                       disable=True, **options)  # a NaN draw mid-run was blamed on the model, which was only given it


@pytest.mark.parametrize("name", [*SDE, "dpm_solver_pp_pc", "dpm_solver_sds"])
def test_per_image_seeds_key_each_image_and_consecutive_ones_equal_one_seed(name: str) -> None:
    """seed=[s, s+1, ...] is seed=s bit for bit (image b on stream s + b); a repeated seed (the WebUI's variation
    seeds) gives a repeated image; the list must have one seed per image."""
    options = {"corrector": "langevin"} if name == "dpm_solver_pp_pc" else {}
    options |= {"sds_noise": "fresh"} if name == "dpm_solver_sds" else {}
    sigmas = torch.tensor([14.6, 5.0, 1.0, 0.3, 0.0], dtype=torch.float64)
    x = start(3)
    one = SAMPLERS[name](gaussian_model(), x, sigmas, disable=True, seed=40, **options)
    listed = SAMPLERS[name](gaussian_model(), x, sigmas, disable=True, seed=[40, 41, 42], **options)
    assert torch.equal(one, listed)
    same = x[:1].repeat(3, 1, 1, 1)
    repeated = SAMPLERS[name](gaussian_model(), same, sigmas, disable=True, seed=(40, 40, 41), **options)
    assert torch.equal(repeated[0], repeated[1]) and not torch.equal(repeated[0], repeated[2])
    assert torch.equal(repeated[:1], SAMPLERS[name](gaussian_model(), same[:1], sigmas, disable=True, seed=40,
                                                     **options))
    with pytest.raises(ValueError, match="2 per-image seeds for a batch of 3"):
        SAMPLERS[name](gaussian_model(), x, sigmas, disable=True, seed=[1, 2], **options)
    for bad in ([], [1.5, 2], "12", [True], True, torch.tensor(40.0)):
        with pytest.raises(ValueError, match="option seed must be an integer, a non-empty list of integers"):
            SAMPLERS[name](gaussian_model(), x, sigmas, disable=True, seed=bad, **options)
    for same_seeds in (np.int64(40), torch.tensor(40), [np.int64(40), 41, torch.tensor(42)]):  # as extra_args['seed']
        assert torch.equal(SAMPLERS[name](gaussian_model(), x, sigmas, disable=True, seed=same_seeds, **options), one)
