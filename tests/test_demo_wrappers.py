"""The demo's sigma-space wrappers: SD's discrete-timestep table (sigma <-> t) and the flow velocity wrapper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dpmsolver_demo.wrappers import DiscreteEpsModel, FlowVModel, sd_alphas_cumprod


class Recorder(nn.Module):
    """A stand-in network: returns `fn(x, t)` and records what it was given."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.fn = fn
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.seen.append((x, t))
        return self.fn(x, t)


def _eps_model(fn=lambda x, t: torch.zeros_like(x)) -> DiscreteEpsModel:
    return DiscreteEpsModel(Recorder(fn))


def test_sd_table_matches_stable_diffusion() -> None:
    abar = sd_alphas_cumprod()
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    assert betas[0].item() == pytest.approx(0.00085, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.012, rel=1e-12)
    assert torch.allclose(betas.sqrt().diff(), torch.full((999,), (0.012**0.5 - 0.00085**0.5) / 999,
                                                          dtype=torch.float64))
    m = _eps_model()
    assert m.sigma_min == pytest.approx(0.029167, abs=1e-5)
    assert m.sigma_max == pytest.approx(14.614642, abs=1e-5)


def test_sigma_t_round_trip_exact_at_integer_timesteps() -> None:
    m = _eps_model()
    ks = torch.arange(1000, dtype=torch.float64)
    assert torch.equal(m.sigma_to_t(m.sigmas), ks)
    assert torch.equal(m.t_to_sigma(ks), m.sigmas)


def test_sigma_t_round_trip_fractional() -> None:
    m = _eps_model()
    g = torch.Generator().manual_seed(0)
    t = torch.rand(500, generator=g, dtype=torch.float64) * 999
    sig = m.t_to_sigma(t)
    assert torch.allclose(m.sigma_to_t(sig), t, rtol=0, atol=1e-9)
    # log-sigma is linear between neighbouring table entries
    k = t.floor().long()
    w = t - k
    expect = torch.exp((1 - w) * m.log_sigmas[k] + w * m.log_sigmas[k + 1])
    assert torch.allclose(sig, expect, rtol=1e-13)
    lo, hi = m.sigma_min, m.sigma_max
    s = torch.exp(torch.linspace(math.log(lo), math.log(hi), 300, dtype=torch.float64))
    assert torch.allclose(m.t_to_sigma(m.sigma_to_t(s)), s, rtol=1e-12)
    assert bool((m.sigma_to_t(s).diff() > 0).all())
    # outside the table: clamped, as k-diffusion-style hosts do
    assert m.sigma_to_t(torch.tensor([1e-4, 100.0], dtype=torch.float64)).tolist() == [0.0, 999.0]


def test_discrete_eps_wrapper_scaling_and_output() -> None:
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    m = _eps_model(lambda x, t: eps.to(x.dtype))  # the oracle network returns the true noise
    sigma = torch.tensor([0.05, 1.0, 14.0], dtype=torch.float64)
    x = x0 + sigma.view(-1, 1, 1, 1) * eps
    d = m(x, sigma)
    assert d.dtype == torch.float64
    assert torch.allclose(d, x0, atol=1e-6)  # D = x - sigma * eps; float32 network output
    x_in, t = m.net.seen[-1]
    assert x_in.dtype == torch.float32
    assert torch.allclose(x_in.double(), x / (1 + sigma.view(-1, 1, 1, 1) ** 2).sqrt(), atol=1e-6)
    assert torch.allclose(t.double(), m.sigma_to_t(sigma), atol=1e-4)
    # the input the network sees is the VP-scaled state sqrt(abar) x0 + sqrt(1 - abar) eps at the table entries
    k = torch.tensor([0, 500, 999])
    s = m.sigmas[k]
    abar = sd_alphas_cumprod()[k].view(-1, 1, 1, 1)
    m(x0 + s.view(-1, 1, 1, 1) * eps, s)
    x_in, t = m.net.seen[-1]
    assert torch.allclose(x_in.double(), abar.sqrt() * x0 + (1 - abar).sqrt() * eps, atol=1e-6)
    assert t.tolist() == [0.0, 500.0, 999.0]


def test_flow_wrapper() -> None:
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    m = FlowVModel(Recorder(lambda x, t: (eps - x0)[: x.shape[0]].to(x.dtype)))  # oracle velocity v = eps - x0
    sigma = torch.tensor([1.0, 0.7, 0.2, 0.003], dtype=torch.float64)
    s = sigma.view(-1, 1, 1, 1)
    x = (1 - s) * x0 + s * eps
    d = m(x, sigma)
    assert torch.isfinite(d).all() and torch.allclose(d, x0, atol=1e-6)  # exact at sigma = 1 too
    x_in, t = m.net.seen[-1]
    assert torch.allclose(x_in.double(), x, atol=1e-6)  # no input scaling
    assert torch.allclose(t.double(), sigma * 1000, atol=1e-4)
    assert m.sigma_max == 1.0 and m.sigma_min == pytest.approx(3 * 0.001 / (1 + 2 * 0.001))
    # a scalar sigma broadcasts over the batch
    assert torch.allclose(m(x[:1], 1.0), x0[:1], atol=1e-6)


@pytest.mark.parametrize("wrapper", [DiscreteEpsModel, FlowVModel])
def test_a_scalar_sigma_gives_the_network_one_timestep_per_image(wrapper) -> None:
    """The networks take timesteps of shape (B,): a scalar sigma is expanded over the batch, and gives the same D as
    the same sigma per image."""
    m = wrapper(Recorder(lambda x, t: x * t.view(-1, 1, 1, 1) / 1000))
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scalar = m(x, 0.5)
    _, t = m.net.seen[-1]
    assert t.shape == (3,) and bool((t == t[0]).all())
    assert torch.equal(scalar, m(x, torch.full((3,), 0.5, dtype=torch.float64)))


def test_t_to_sigma_interpolates_the_end_segments_and_clamps_outside_the_table() -> None:
    """log sigma is linear in t in the first and last segments as well, and t outside [0, 999] is clamped."""
    m = _eps_model()
    t = torch.tensor([0.25, 998.5, 998.75], dtype=torch.float64)
    k = t.floor().long()
    expect = torch.exp((1 - (t - k)) * m.log_sigmas[k] + (t - k) * m.log_sigmas[k + 1])
    assert torch.allclose(m.t_to_sigma(t), expect, rtol=1e-14, atol=0)
    assert torch.equal(m.t_to_sigma(torch.tensor([-3.0, -0.5, 999.5, 1200.0], dtype=torch.float64)),
                       m.sigmas[[0, 0, 999, 999]])
