"""Tests for samplers.bench.problems: exact denoisers, exact Gaussian flow, reference ODE solver."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from samplers.bench.problems import (
    SEED,
    GaussianMixture,
    GuidedMixture,
    Problem,
    alpha_of,
    flow_mixture,
    gaussian_exact_flow,
    reference_solution,
    ve_mixture,
)

FAMILIES = ("ve", "flow")


def _sig(sigma: float, batch: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.full((batch,), sigma, dtype=dtype)


def _bayes_posterior_mean_1d(
    x: float, sigma: float, alpha: float, means: list[float], stds: list[float], weights: list[float]
) -> float:
    """E[x0 | x] by quadrature of p(x0) N(x; alpha x0, sigma^2) on a fine grid (numpy only)."""
    grid = np.linspace(-12.0, 12.0, 480_001)
    prior = np.zeros_like(grid)
    for m, s, w in zip(means, stds, weights, strict=True):
        prior += w * np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    loglik = -0.5 * ((x - alpha * grid) / sigma) ** 2
    post = prior * np.exp(loglik - loglik.max())
    return float(np.trapezoid(grid * post, grid) / np.trapezoid(post, grid))


ONE_D = {"means": [-1.0, 1.5], "stds": [0.3, 0.7], "weights": [0.35, 0.65]}


@pytest.mark.parametrize("family", FAMILIES)
def test_denoiser_matches_numerical_bayes_1d(family: str) -> None:
    mix = GaussianMixture(
        torch.tensor(ONE_D["means"], dtype=torch.float64)[:, None],
        torch.tensor(ONE_D["stds"], dtype=torch.float64)[:, None],
        ONE_D["weights"],
        family=family,
    )
    sigmas = [0.05, 0.3, 1.0, 3.0, 14.6] if family == "ve" else [0.02, 0.3, 0.6, 0.9, 0.995]
    xs = torch.tensor([-2.5, -1.0, -0.2, 0.0, 0.4, 1.3, 3.0], dtype=torch.float64)[:, None]
    for sigma in sigmas:
        alpha = 1.0 if family == "ve" else 1.0 - sigma
        d = mix(xs, _sig(sigma, xs.shape[0]))
        for i in range(xs.shape[0]):
            ref = _bayes_posterior_mean_1d(float(xs[i, 0]), sigma, alpha, **ONE_D)
            assert abs(float(d[i, 0]) - ref) < 1e-8, (family, sigma, float(xs[i, 0]), float(d[i, 0]), ref)


def _random_mixture(family: str, k: int = 3, d: int = 5, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    stds = 0.1 + torch.rand(k, d, generator=g, dtype=torch.float64)
    weights = 0.2 + torch.rand(k, generator=g, dtype=torch.float64)
    return GaussianMixture(means, stds, weights, family=family)


def test_denoiser_monte_carlo_orthogonality() -> None:
    """D is the L2 projection: E[(x0 - D(x)) * h(x)] = 0 for test functions h (Monte Carlo)."""
    mix = _random_mixture("ve", k=3, d=2, seed=3)
    g = torch.Generator().manual_seed(1)
    n, sigma = 400_000, 0.8
    x0 = mix.sample_data(n, g)
    x = x0 + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)
    err = x0 - mix(x, _sig(sigma, n))
    for h in (torch.ones(n), x[:, 0], torch.tanh(x[:, 1]), x[:, 0] * x[:, 1]):
        moment = (err * h[:, None]).mean(0)
        se = (err * h[:, None]).std(0) / math.sqrt(n)
        assert bool((moment.abs() < 5 * se).all()), (moment, se)
    # a wrong denoiser (single-Gaussian fit) must fail the same test
    m, v = x0.mean(0), x0.var(0)
    wrong = m + v / (v + sigma**2) * (x - m)
    h = torch.tanh(3 * x[:, 0])
    moment = ((x0 - wrong) * h[:, None]).mean(0)
    se = ((x0 - wrong) * h[:, None]).std(0) / math.sqrt(n)
    assert bool((moment.abs() > 5 * se).any())


def test_flow_sigma_one_returns_mixture_mean() -> None:
    for dtype in (torch.float32, torch.float64):
        mix = _random_mixture("flow")
        x = torch.randn(7, 5, dtype=dtype) * 3
        d = mix(x, _sig(1.0, 7, dtype))
        assert d.dtype == dtype
        assert torch.isfinite(d).all()
        tol = 1e-6 if dtype == torch.float32 else 1e-13
        torch.testing.assert_close(d, mix.mean().to(dtype).expand(7, 5), atol=tol, rtol=0)


def test_ve_large_sigma_finite_and_tends_to_mean() -> None:
    mix = _random_mixture("ve")
    x = torch.randn(6, 5, dtype=torch.float64) * 1e4
    for dtype in (torch.float32, torch.float64):
        d = mix(x.to(dtype), _sig(1e4, 6, dtype))
        assert torch.isfinite(d).all()
        torch.testing.assert_close(d.double(), mix.mean().expand(6, 5), atol=1e-3, rtol=0)
    d = mix(torch.randn(6, 5), _sig(14.6, 6, torch.float32))
    assert torch.isfinite(d).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_sigma_zero_returns_x(family: str) -> None:
    mix = _random_mixture(family)
    x = torch.randn(9, 5, dtype=torch.float64) * 4
    x[0] = 1e3  # far from every component: responsibilities must still be well defined
    for dtype in (torch.float32, torch.float64):
        d = mix(x.to(dtype), _sig(0.0, 9, dtype))
        assert torch.isfinite(d).all()
        torch.testing.assert_close(d, x.to(dtype))


def test_shapes_scalar_sigma_and_flattening() -> None:
    mix = _random_mixture("ve", k=4, d=16)
    x = torch.randn(3, 2, 4, 2, dtype=torch.float64)
    d_img = mix(x, _sig(0.7, 3))
    d_flat = mix(x.reshape(3, 16), _sig(0.7, 3))
    assert d_img.shape == x.shape
    torch.testing.assert_close(d_img.reshape(3, 16), d_flat, atol=0, rtol=0)
    torch.testing.assert_close(mix(x, 0.7), d_img, atol=0, rtol=0)
    # per-row sigmas are honoured
    sig = torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64)
    d = mix(x, sig)
    for i in range(3):
        torch.testing.assert_close(d[i : i + 1], mix(x[i : i + 1], sig[i : i + 1]))
    with pytest.raises(ValueError):
        mix(torch.randn(3, 15, dtype=torch.float64), 0.5)


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_matches_float64(family: str) -> None:
    mix = _random_mixture(family, k=4, d=6)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(32, 6, generator=g, dtype=torch.float64)
    sigmas = [0.03, 0.5, 2.0, 14.6] if family == "ve" else [0.003, 0.3, 0.9, 1.0]
    for sigma in sigmas:
        xs = x * max(sigma, 1.0)
        d64 = mix(xs, _sig(sigma, 32))
        d32 = mix(xs.float(), _sig(sigma, 32, torch.float32))
        assert d32.dtype == torch.float32
        torch.testing.assert_close(d32.double(), d64, atol=2e-5, rtol=2e-5)
    guided = GuidedMixture(mix, _random_mixture(family, k=4, d=6, seed=9), 7.5)
    d32 = guided(x.float(), _sig(0.4, 32, torch.float32))
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), guided(x, _sig(0.4, 32)), atol=1e-4, rtol=1e-4)


def test_guided_mixture_is_linear_in_scale() -> None:
    means = torch.randn(3, 4, dtype=torch.float64)
    stds = torch.full((3, 4), 0.4, dtype=torch.float64)
    u = GaussianMixture(means, stds, torch.tensor([1.0, 1.0, 1.0]), family="ve")
    c = GaussianMixture(means, stds, torch.tensor([0.05, 0.9, 0.05]), family="ve")
    x = torch.randn(5, 4, dtype=torch.float64) * 2
    s = _sig(1.3, 5)
    torch.testing.assert_close(GuidedMixture(u, c, 0.0)(x, s), u(x, s))
    torch.testing.assert_close(GuidedMixture(u, c, 1.0)(x, s), c(x, s))
    torch.testing.assert_close(GuidedMixture(u, c, 7.5)(x, s), u(x, s) + 7.5 * (c(x, s) - u(x, s)))


@pytest.mark.parametrize("family", FAMILIES)
def test_gaussian_exact_flow_satisfies_ode(family: str) -> None:
    """Central differences of x(sigma) equal (x - D(x, sigma)) / sigma with the exact single-Gaussian D."""
    g = torch.Generator().manual_seed(2)
    d = 6
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    s = 0.1 + torch.rand(d, generator=g, dtype=torch.float64)
    model = GaussianMixture(mu[None], s[None], torch.ones(1), family=family)
    sigma0 = 14.6 if family == "ve" else 1.0
    eps = torch.randn(4, d, generator=g, dtype=torch.float64)
    x_start = alpha_of(torch.tensor(sigma0), family) * mu + sigma0 * eps
    h = 1e-5
    for sigma in [10.0, 2.0, 0.5, 0.05] if family == "ve" else [0.95, 0.6, 0.2, 0.02]:
        xp = gaussian_exact_flow(x_start, sigma0, sigma + h, mu, s, family)
        xm = gaussian_exact_flow(x_start, sigma0, sigma - h, mu, s, family)
        x = gaussian_exact_flow(x_start, sigma0, sigma, mu, s, family)
        fd = (xp - xm) / (2 * h)
        rhs = (x - model(x, _sig(sigma, 4))) / sigma
        torch.testing.assert_close(fd, rhs, atol=1e-7, rtol=1e-7)
    # a wrong family's formula does not satisfy this family's ODE
    other = "flow" if family == "ve" else "ve"
    sigma = 0.5
    x = gaussian_exact_flow(x_start, 0.9, sigma, mu, s, other)
    fd = (
        gaussian_exact_flow(x_start, 0.9, sigma + h, mu, s, other)
        - gaussian_exact_flow(x_start, 0.9, sigma - h, mu, s, other)
    ) / (2 * h)
    assert (fd - (x - model(x, _sig(sigma, 4))) / sigma).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_gaussian_exact_flow_composes(family: str) -> None:
    mu, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 0.8])
    x = torch.randn(3, 2, dtype=torch.float64)
    a, b, c = (10.0, 1.0, 0.05) if family == "ve" else (1.0, 0.4, 0.01)
    direct = gaussian_exact_flow(x, a, c, mu, s, family)
    two = gaussian_exact_flow(gaussian_exact_flow(x, a, b, mu, s, family), b, c, mu, s, family)
    torch.testing.assert_close(direct, two, atol=1e-13, rtol=1e-13)
    torch.testing.assert_close(gaussian_exact_flow(x, a, a, mu, s, family), x)


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_solution_matches_exact_gaussian(family: str) -> None:
    g = torch.Generator().manual_seed(11)
    d, b = 8, 16
    mu = 1.5 * torch.randn(d, generator=g, dtype=torch.float64)
    s = 0.1 + 0.5 * torch.rand(d, generator=g, dtype=torch.float64)
    model = GaussianMixture(mu[None], s[None], torch.ones(1), family=family)
    sigma_max, sigma_min = (14.6, 0.029) if family == "ve" else (1.0, 0.003)
    x_start = model.prior_noise(b, sigma_max, g)
    ref = reference_solution(model, x_start, sigma_max, sigma_min)
    exact = gaussian_exact_flow(x_start, sigma_max, sigma_min, mu, s, family)
    assert ref.dtype == torch.float64 and ref.shape == x_start.shape
    err = (ref - exact).abs().max().item()
    assert err < 1e-9, err
    # image-shaped input and float32 input are handled (solved in float64)
    x_img = x_start.float().reshape(b, 2, 2, 2)
    ref_img = reference_solution(model, x_img, sigma_max, sigma_min)
    mu_img, s_img = mu.reshape(2, 2, 2), s.reshape(2, 2, 2)
    exact_img = gaussian_exact_flow(x_img.double(), sigma_max, sigma_min, mu_img, s_img, family)
    assert ref_img.shape == x_img.shape and ref_img.dtype == torch.float64
    assert (ref_img - exact_img).abs().max().item() < 1e-9


def test_reference_solution_rejects_sigma_zero_and_forwards_extra_args() -> None:
    mix = _random_mixture("ve")
    x = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError):
        reference_solution(mix, x, 1.0, 0.0)
    seen: list[object] = []

    def model(x: torch.Tensor, sigma: torch.Tensor, **kw: object) -> torch.Tensor:
        seen.append(kw.get("cond"))
        assert sigma.shape == (x.shape[0],)
        return mix(x, sigma)

    reference_solution(model, x, 1.0, 0.5, rtol=1e-6, atol=1e-6, extra_args={"cond": "c"})
    assert seen and all(v == "c" for v in seen)


def test_reference_solution_mixture_self_consistent() -> None:
    p = ve_mixture(cfg_scale=7.5)
    x = p.prior_noise(8)
    tight = reference_solution(p.model, x, p.sigma_max, p.sigma_min)
    loose = reference_solution(p.model, x, p.sigma_max, p.sigma_min, rtol=1e-9, atol=1e-9)
    err = (tight - loose).abs().max().item()
    assert err < 1e-6, err
    # piecewise integration (through an intermediate sigma) gives the same answer
    mid = reference_solution(p.model, x, p.sigma_max, 1.0)
    two = reference_solution(p.model, mid, 1.0, p.sigma_min)
    assert (two - tight).abs().max().item() < 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_data_and_prior_noise_moments(family: str) -> None:
    mix = _random_mixture(family, k=3, d=4, seed=4)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = mix.sample_data(n, g)
    mean = mix.mean()
    second = (mix.weights[:, None] * (mix.stds**2 + mix.means**2)).sum(0)
    var = second - mean**2
    torch.testing.assert_close(x0.mean(0), mean, atol=5 * (var / n).sqrt().max().item(), rtol=0)
    torch.testing.assert_close(x0.var(0), var, atol=0, rtol=0.03)
    sigma = 14.6 if family == "ve" else 0.7
    alpha = 1.0 if family == "ve" else 0.3
    xn = mix.prior_noise(n, sigma, g)
    torch.testing.assert_close(xn.mean(0), alpha * mean, atol=5 * sigma / math.sqrt(n) * 1.1, rtol=0)
    torch.testing.assert_close(xn.var(0), alpha**2 * var + sigma**2, atol=0, rtol=0.03)
    if family == "flow":  # sigma = 1 is pure noise
        torch.testing.assert_close(
            mix.prior_noise(n, 1.0, g).var(0), torch.ones(4, dtype=torch.float64), atol=0, rtol=0.03
        )


def test_problems_are_deterministic_and_well_formed() -> None:
    for make in (ve_mixture, lambda: ve_mixture(cfg_scale=7.5), flow_mixture):
        p1, p2 = make(), make()
        assert isinstance(p1, Problem)
        assert p1.dim == 16
        torch.testing.assert_close(p1.prior_noise(4), p2.prior_noise(4), atol=0, rtol=0)
        x = torch.randn(4, 16, dtype=torch.float64)
        torch.testing.assert_close(p1.model(x, _sig(0.5, 4)), p2.model(x, _sig(0.5, 4)), atol=0, rtol=0)
        assert p1.data is not None and 4 <= p1.data.n_components <= 6
        norms = p1.data.means.norm(dim=1)
        assert float(norms.min()) >= 0.99 and float(norms.max()) <= 2.01
        assert float(p1.data.stds.min()) >= 0.05 and float(p1.data.stds.max()) <= 0.8
    ve = ve_mixture()
    assert (ve.family, ve.sigma_max, ve.sigma_min) == ("ve", 14.6, 0.029)
    fl = flow_mixture()
    assert fl.family == "flow" and fl.sigma_max == 1.0 and 0 < fl.sigma_min < 0.01 and fl.shift == 3.0
    guided = ve_mixture(cfg_scale=7.5)
    assert isinstance(guided.model, GuidedMixture) and guided.model.scale == 7.5
    assert guided.data is guided.model.cond
    assert float(guided.model.cond.weights.max()) > 0.5


def test_a_problem_without_a_shift_or_data_is_refused_by_name() -> None:
    """The flow grids' shift and the error scale's data std come from the problem; neither is guessed."""
    from samplers.bench.cases import Case

    assert flow_mixture(shift=2.0).flow_shift == 2.0
    bare = dataclasses.replace(flow_mixture(), name="bare", shift=None, data=None)
    with pytest.raises(ValueError, match="problem bare: a flow problem has no flow time shift"):
        _ = bare.flow_shift
    case = Case("bare/simple", bare, "flow_simple", lambda n: torch.linspace(1, 0, n + 1), "flow")
    with pytest.raises(ValueError, match="case bare/simple: its problem has no data mixture"):
        _ = case.data_std


def test_malformed_mixtures_are_refused_by_name() -> None:
    means, stds = torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    GaussianMixture(means, stds, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"means/stds must be \(K, d\)"):
        GaussianMixture(torch.zeros(2, 3, 1, dtype=torch.float64), stds[..., None], [0.5, 0.5])  # K matches
    with pytest.raises(ValueError, match=r"weights \(K,\)"):
        GaussianMixture(means, stds, [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="stds must be > 0"):
        GaussianMixture(means, torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64), [0.5, 0.5])
    with pytest.raises(ValueError, match="weights must be > 0"):
        GaussianMixture(means, stds, [1.0, 0.0])
    ve, flow = GaussianMixture(means, stds, [0.5, 0.5]), GaussianMixture(means, stds, [0.5, 0.5], family="flow")
    wide = GaussianMixture(torch.zeros(2, 4, dtype=torch.float64), 1.0, [0.5, 0.5])
    GuidedMixture(ve, ve, 2.0)
    for uncond, cond in ((ve, flow), (ve, wide)):  # the family alone, the dimension alone
        with pytest.raises(ValueError, match="must share family and dimension"):
            GuidedMixture(uncond, cond, 2.0)


@pytest.mark.parametrize(("start", "end"), [(0.0, 0.5), (1.0, 0.0), (-1.0, 0.5), (1.0, -0.5)])
def test_reference_solution_names_a_sigma_that_is_not_positive(start: float, end: float) -> None:
    with pytest.raises(ValueError, match="requires sigma_start > 0 and sigma_end > 0"):
        reference_solution(_random_mixture("ve"), torch.randn(2, 5, dtype=torch.float64), start, end)


def test_the_distribution_benchmark_draws_the_data_it_was_measured_on() -> None:
    """docs/bench.json's distribution figures compare samples with data drawn by sample_data from seed SEED + 2:
    its first draws, pinned (torch's CPU generator gives the same numbers on every machine)."""
    x = ve_mixture().data.sample_data(3, torch.Generator().manual_seed(SEED + 2))
    expected = [[-0.09853705992459824, -0.09576409353324021, -0.35357750532893667],
                [-1.6896157093452642, 0.4114796883659344, 0.28363960129912574],
                [-0.3390895264288491, 0.21596674106190514, -0.21601877179549067]]
    torch.testing.assert_close(x[:, :3], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
