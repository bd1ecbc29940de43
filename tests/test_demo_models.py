"""The committed demo networks are trained: at mid noise they denoise the real digits far better than the trivial
denoisers (the data mean, or the noisy input itself); and the data-set helpers used by the benchmark."""

from __future__ import annotations

import pytest
import torch

from dpmsolver_demo.data import DATA_STD, frechet_distance, load_digits
from dpmsolver_demo.net import NetConfig, TinyUNet, timestep_embedding
from dpmsolver_demo.weights_io import load_model


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (requirements-dev.txt)")
    return load_digits()


@pytest.mark.parametrize(("name", "sigma"),
                         [("digits_eps", 0.5), ("digits_eps", 1.0), ("digits_flow", 0.3), ("digits_flow", 0.5)])
def test_networks_beat_trivial_denoisers(digits: torch.Tensor, name: str, sigma: float) -> None:
    torch.set_num_threads(1)
    model = load_model(name)
    g = torch.Generator().manual_seed(7)
    x0 = digits[torch.randperm(digits.shape[0], generator=g)[:256]]
    eps = torch.randn(x0.shape, generator=g)
    alpha = 1.0 if model.schedule == "ve" else 1.0 - sigma
    x = alpha * x0 + sigma * eps
    with torch.no_grad():
        d = model(x, torch.full((x.shape[0],), sigma))
    mse = float((d - x0).square().mean())
    mean_baseline = float((digits.mean(0, keepdim=True) - x0).square().mean())
    input_baseline = float((x / alpha - x0).square().mean())
    assert mse < 0.5 * min(mean_baseline, input_baseline), (mse, mean_baseline, input_baseline)


def test_data_std_constant(digits: torch.Tensor) -> None:
    flat = digits.double().reshape(digits.shape[0], -1)
    assert digits.shape == (1797, 1, 8, 8)
    assert float(digits.min()) == -1.0 and float(digits.max()) == 1.0
    assert flat.var(0, unbiased=False).mean().sqrt().item() == pytest.approx(DATA_STD, abs=1e-4)


def test_frechet_distance() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # b = 2a + 3 has covariance 4 S: tr(S + 4S - 2 (4 S^2)^1/2) = tr(S), plus the squared mean difference
    b = a * 2.0 + 3.0
    expect = float((a.mean(0) - b.mean(0)).square().sum() + torch.cov(a.T).trace())
    assert frechet_distance(a, b) == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize(("name", "sigmas", "sums", "pixels"), [
    ("digits_eps", [14.0, 1.0, 0.05], [-43.1251733, -23.9140202, -4.87595456], [0.064197981, 0.727244056, 1.2779483]),
    ("digits_flow", [1.0, 0.5, 0.02], [-26.0147921, -21.2835382, -4.02755987], [0.220813152, 0.753305511, 1.35602924]),
])
def test_networks_give_their_recorded_outputs(name: str, sigmas: list[float], sums: list[float],
                                              pixels: list[float]) -> None:
    """D of the committed weights at a fixed input in float64, as recorded: pins the architecture, the timestep
    embedding and the sigma-space wrappers (a change that still loads the weights and still denoises would
    otherwise pass, and leave the committed figures describing another network)."""
    model = load_model(name, dtype=torch.float64)
    x = (torch.arange(192, dtype=torch.float64) * 0.37).sin().mul(1.5).reshape(3, 1, 8, 8)
    with torch.no_grad():
        d = model(x, torch.tensor(sigmas, dtype=torch.float64))
    assert d.sum((1, 2, 3)).tolist() == pytest.approx(sums, rel=1e-7)
    assert d[:, 0, 3, 4].tolist() == pytest.approx(pixels, rel=1e-7)


@pytest.mark.parametrize("freq", [1, 2, 3])
def test_timestep_embedding_frequencies_run_geometrically_from_min_to_max(freq: int) -> None:
    """sin and cos of t times `freq` frequencies from min_freq to max_freq, geometrically spaced (one: min_freq)."""
    t = torch.tensor([0.0, 10.0, 500.0], dtype=torch.float64)
    lo, hi = 0.002, 0.05
    scales = [lo * (hi / lo) ** (k / max(1, freq - 1)) for k in range(freq)]
    angles = t[:, None] * torch.tensor(scales, dtype=torch.float64)[None]
    expected = torch.cat([angles.sin(), angles.cos()], dim=1)
    torch.testing.assert_close(timestep_embedding(t, freq, lo, hi), expected, rtol=1e-12, atol=1e-12)


def test_the_network_without_a_config_is_the_default_one() -> None:
    assert TinyUNet().config == NetConfig()
