"""Score distillation (samplers/sds.py): the DDIM and LCM identities, behaviour on analytic targets with exact
denoisers (Gaussian, two-mode mixture, CFG), noise determinism, DPM-Solver inversion, options and errors."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import torch
from signatures import keyword_defaults

from samplers import SAMPLERS, grids
from samplers.bench.problems import GaussianMixture, GuidedMixture
from samplers.inversion import INVERSION_LAMBDA_MIN, inversion_grid, inversion_plan, invert
from samplers.noise import keyed_normals
from samplers.options import OPTIONS
from samplers.schedules import resolve_schedule
from samplers.sds import (
    DOMAIN_SDS,
    clip_gradient,
    csd_gradient,
    fresh_noise,
    fresh_noise_intervals,
    implied_noise,
    noised,
    sds_gradient,
    sds_refine,
    sds_weight,
)

SDS = SAMPLERS["dpm_solver_sds"]
F64 = torch.float64


def two_modes(family: str = "ve") -> GaussianMixture:
    """A 2-D mixture with well separated modes (exact denoiser for either family)."""
    return GaussianMixture([[1.0, -0.5], [-1.5, 0.8]], [[0.3, 0.4], [0.5, 0.2]], [0.4, 0.6], family=family)


def grid_for(family: str, n: int = 10) -> torch.Tensor:
    if family == "ve":
        return grids.karras(n, 0.03, 14.6)
    return torch.tensor([grids.flow_shift(1 - 0.98 * k / n, 3.0) for k in range(n + 1)] + [0.0], dtype=F64)


def start(family: str, n: int = 4, seed: int = 0) -> torch.Tensor:
    scale = 14.6 if family == "ve" else 1.0
    return scale * torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))


class Counting:
    """Wraps a model: counts calls and records sigmas (and that it ran under inference mode)."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls, self.sigmas, self.inference = model, 0, [], []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        self.calls += 1
        self.sigmas.append(float(sigma[0]))
        self.inference.append(torch.is_inference_mode_enabled())
        return self.model(x, sigma)


# -- the two identities, against straightforward reference loops -------------------------------------------------

def ddim_reference(model: Any, x: torch.Tensor, sigmas: list[float], family: str) -> torch.Tensor:
    """DDIM in its ratio form: x_t = (sigma_t/sigma_s) x_s + (alpha_t - sigma_t alpha_s/sigma_s) D(x_s, sigma_s)."""
    alpha = resolve_schedule(family).alpha
    for s, t in pairwise(sigmas):
        d = model(x, torch.full((x.shape[0],), s, dtype=F64))
        x = (t / s) * x + (alpha(t) - t * alpha(s) / s) * d
    return x


def lcm_reference(model: Any, x: torch.Tensor, sigmas: list[float], family: str, seed: int) -> torch.Tensor:
    """LCM: x_(i+1) = alpha_(i+1) D(x_i, sigma_i) + sigma_(i+1) z_i, z_i the SDS keyed normals of step i."""
    alpha = resolve_schedule(family).alpha
    for i, (s, t) in enumerate(pairwise(sigmas)):
        d = model(x, torch.full((x.shape[0],), s, dtype=F64))
        z = keyed_normals(seed, x.shape[0], x.shape[1:], DOMAIN_SDS, i, dtype=F64)
        x = alpha(t) * d + t * z if t > 0 else d
    return x


@pytest.mark.parametrize("family", ["ve", "flow"])
@pytest.mark.parametrize("end", ["zero", "above_zero"])
def test_implied_noise_with_unit_step_is_ddim(family: str, end: str) -> None:
    mix = two_modes(family)
    sigmas = grid_for(family)
    if end == "above_zero":
        sigmas = sigmas[:-1]
    x = start(family)
    ref = ddim_reference(mix, x, sigmas.tolist(), family)
    out = SDS(mix, x, sigmas, schedule=family, disable=True)  # defaults: sds, uniform, lr 1, 1 step, implied
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, SAMPLERS["dpm_solver_1"](mix, x, sigmas, schedule=family, disable=True),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", ["ve", "flow"])
def test_fresh_noise_with_unit_step_is_lcm(family: str) -> None:
    mix = two_modes(family)
    sigmas = grid_for(family)
    x = start(family, n=5)
    ref = lcm_reference(mix, x, sigmas.tolist(), family, seed=7)
    out = SDS(mix, x, sigmas, schedule=family, sds_noise="fresh", seed=7, disable=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert not torch.allclose(out, ddim_reference(mix, x, sigmas.tolist(), family))


def test_inner_steps_with_implied_noise_repeat_the_same_point() -> None:
    """With lr lambda = 1 the implied-noise re-noising at the same sigma gives back x_t: DDIM at 3x the calls."""
    mix = Counting(two_modes())
    sigmas = grid_for("ve", 6)
    x = start("ve")
    out = SDS(mix, x, sigmas, sds_inner_steps=3, disable=True)
    torch.testing.assert_close(out, ddim_reference(two_modes(), x, sigmas.tolist(), "ve"), rtol=0, atol=1e-12)
    assert mix.calls == 18 == SDS.count_model_calls(sigmas, sds_inner_steps=3)


def test_other_steps_and_weights_leave_ddim() -> None:
    mix = two_modes()
    sigmas = grid_for("ve", 6)
    x = start("ve")
    ddim = SDS(mix, x, sigmas, disable=True)
    for options in ({"sds_lr": 0.5}, {"sds_weighting": "dreamfusion"}, {"sds_weighting": "sjc"}):
        assert (SDS(mix, x, sigmas, disable=True, **options) - ddim).abs().max() > 1e-3, options


# -- behaviour on analytic targets ---------------------------------------------------------------------------------

GAUSS_MU, GAUSS_STD = [0.5, -1.0], [0.8, 0.5]


def log_sigmas(high: float, low: float, n: int) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(high), math.log(low), n, dtype=F64))


@pytest.mark.parametrize("family", ["ve", "flow"])
def test_sds_on_a_gaussian_converges_to_the_mode_with_collapsed_variance(family: str) -> None:
    gauss = GaussianMixture([GAUSS_MU], [GAUSS_STD], [1.0], family=family)
    x0 = 3.0 + torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    sigmas = log_sigmas(2.0, 0.05, 1000) if family == "ve" else log_sigmas(0.7, 0.05, 1000)
    out = sds_refine(gauss, x0, sigmas, family, weighting="dreamfusion", lr=0.1, seed=3)
    mu, std = torch.tensor(GAUSS_MU, dtype=F64), torch.tensor(GAUSS_STD, dtype=F64)
    assert (out.mean(0) - mu).abs().max() < 0.05
    assert (out.std(0) / std).max() < 0.15  # the data's spread is gone: SDS seeks the mode
    # the same loop at lr 1, uniform weight, fresh noise, is the LCM sampler: it keeps most of the spread (not
    # all: re-noising the posterior mean D loses the variance s^2 sigma^2/(s^2 + sigma^2) at every step)
    x_t = start(family, n=512, seed=4) if family == "ve" else torch.randn(512, 2, dtype=F64)
    samples = SDS(gauss, x_t, grid_for(family, 12), schedule=family, sds_noise="fresh", seed=1, disable=True)
    assert (samples.std(0) / std).min() > 0.5


def test_annealing_sigma_avoids_the_over_smoothing_of_a_wide_fixed_range() -> None:
    """Two modes at +-2: sigmas drawn from [0.02, 10] for the whole run pull x0 towards the smoothed density's
    mode between them; the same sigmas annealed from high to low land on the modes."""
    two = GaussianMixture([[2.0], [-2.0]], [[0.3], [0.3]], [0.5, 0.5])
    x0 = 0.5 * torch.randn(256, 1, dtype=F64, generator=torch.Generator().manual_seed(2))
    annealed = log_sigmas(10.0, 0.02, 400)
    fixed_range = annealed[torch.randperm(400, generator=torch.Generator().manual_seed(5))]
    good = sds_refine(two, x0, annealed, "ve", weighting="dreamfusion", lr=0.3, seed=3)
    smooth = sds_refine(two, x0, fixed_range, "ve", weighting="dreamfusion", lr=0.3, seed=3)
    assert ((good.abs() - 2.0).abs()).mean() < 0.06
    assert ((smooth.abs() - 2.0).abs()).mean() > 0.4 and smooth.abs().mean() < 1.6


def test_high_cfg_overshoots_without_annealing_and_annealing_corrects_it() -> None:
    means, stds = [[2.0], [-2.0]], [[0.3], [0.3]]
    uncond = GaussianMixture(means, stds, [0.5, 0.5])
    cond = GaussianMixture(means, stds, [0.9, 0.1])
    x0 = 0.5 * torch.randn(256, 1, dtype=F64, generator=torch.Generator().manual_seed(2))
    annealed = log_sigmas(10.0, 0.02, 400)
    fixed_range = annealed[torch.randperm(400, generator=torch.Generator().manual_seed(5))]
    results = {}
    for cfg in (1.0, 7.5):
        model = GuidedMixture(uncond, cond, cfg)
        for name, sigmas in (("annealed", annealed), ("fixed", fixed_range)):
            results[cfg, name] = sds_refine(model, x0, sigmas, "ve", weighting="dreamfusion", lr=0.3, seed=3)
    assert results[1.0, "fixed"].max() < 2.3  # no guidance: nothing beyond the conditional mode at +2
    assert results[7.5, "fixed"].mean() > 3.0  # over-saturation: more than 3 stds past the mode
    assert (results[7.5, "annealed"].mean() - 2.0).abs() < 0.05 and results[7.5, "annealed"].max() < 2.3


def test_sdi_on_a_gaussian_converges_to_the_mode() -> None:
    gauss = GaussianMixture([GAUSS_MU], [GAUSS_STD], [1.0])
    x0 = 3.0 + torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    model = Counting(gauss)
    out = sds_refine(model, x0, log_sigmas(2.0, 0.05, 100), "ve", mode="sdi", weighting="uniform", lr=0.5,
                     inversion_steps=3)
    assert model.calls == 100 * (1 + 3)
    assert (out.mean(0) - torch.tensor(GAUSS_MU, dtype=F64)).abs().max() < 0.05
    assert out.std(0).max() < 0.05  # inverted noise is a function of x0: no sampling noise is left


def test_adam_and_clipping_converge_to_the_mode() -> None:
    gauss = GaussianMixture([GAUSS_MU], [GAUSS_STD], [1.0])
    x0 = 3.0 + torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    out = sds_refine(gauss, x0, log_sigmas(2.0, 0.05, 600), "ve", weighting="uniform", lr=0.02, optimizer="adam",
                     grad_clip=1.0, seed=2)
    assert (out.mean(0) - torch.tensor(GAUSS_MU, dtype=F64)).abs().max() < 0.1


def test_gradient_clipping_bounds_each_sample_step() -> None:
    x0 = torch.tensor([[5.0, 5.0], [0.51, -1.0]], dtype=F64)
    gauss = GaussianMixture([GAUSS_MU], [GAUSS_STD], [1.0])
    out = sds_refine(gauss, x0, [1.0], "ve", weighting="uniform", lr=1.0, grad_clip=0.01, seed=0)
    steps = (out - x0).norm(dim=1)
    assert steps[0] == pytest.approx(0.01, rel=1e-12) and steps[1] <= 0.01 + 1e-15


@pytest.mark.parametrize(("mode", "optimizer", "clip"), [("sds", "sgd", 0.0), ("sds", "sgd", 0.3),
                                                       ("sds", "adam", 0.3), ("sdi", "sgd", 0.0),
                                                       ("csd", "adam", 0.0)])
def test_refine_reports_each_steps_gradient_and_loss(mode: str, optimizer: str, clip: float) -> None:
    """Each optimisation step's payload carries the clipped gradient it used (recomputed here from the payload's
    x_t, D and the previous x0) and its loss 0.5 mean(g^2) as a 0-d tensor; inversion calls carry neither."""
    means, stds = [[2.0, 0.5], [-2.0, 1.0]], [[0.3, 0.5], [0.3, 0.4]]
    guided = RecordingGuidance(GuidedMixture(GaussianMixture(means, stds, [0.5, 0.5]),
                                             GaussianMixture(means, stds, [0.9, 0.1]), 3.0))
    x0 = torch.tensor([[3.0, 1.0], [0.2, -0.4], [-1.0, 2.0]], dtype=F64)
    sigmas, seen, parts = [2.0, 1.0, 0.5], [], []

    def record(payload: dict) -> None:
        seen.append(payload)
        parts.append(guided.last)

    out = sds_refine(guided, x0, sigmas, "ve", mode=mode, weighting="dreamfusion", lr=0.4, optimizer=optimizer,
                     inner_steps=2, grad_clip=clip, inversion_steps=2, guidance_parts=guided.parts, callback=record)
    steps = [(p, c) for p, c in zip(seen, parts, strict=True) if not p.get("inversion")]
    assert len(steps) == 6 and len(seen) == (18 if mode == "sdi" else 6)
    assert [p["i"] for p in seen] == list(range(len(seen))) and all(p["total"] == len(seen) for p in seen)
    assert all("grad" not in p and "loss" not in p for p in seen if p.get("inversion"))
    before = x0
    for n, (payload, (cond, uncond, cfg)) in enumerate(steps):
        sigma = sigmas[n // 2]
        if mode == "csd":
            expected = csd_gradient(cond, uncond, sigma, "dreamfusion", "ve", cfg)
        else:
            expected = sds_gradient(before, payload["denoised"], sigma, "dreamfusion", "ve")
        expected = clip_gradient(expected, clip)
        torch.testing.assert_close(payload["grad"], expected, rtol=1e-12, atol=1e-14)
        loss = payload["loss"]
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.dtype == F64
        torch.testing.assert_close(loss, 0.5 * expected.square().mean(), rtol=1e-12, atol=0)
        if optimizer == "sgd":
            torch.testing.assert_close(payload["x0"], before - 0.4 * expected, rtol=1e-12, atol=1e-14)
        before = payload["x0"]
    assert torch.equal(before, out)


def test_refine_sdi_noises_with_the_order_2_inversion_of_x0() -> None:
    """sds_refine, mode sdi: each step's eps is the order-2 DPM-Solver inversion of the current x0 to sigma."""
    mix = two_modes()
    x0 = torch.tensor([[0.4, -0.2], [1.5, 0.3]], dtype=F64)
    sigmas = [2.0, 0.5]
    out = sds_refine(mix, x0, sigmas, "ve", mode="sdi", weighting="uniform", lr=0.6, inversion_steps=3)
    ref = x0
    for s in sigmas:
        eps = invert(mix, ref, s, "ve", steps=3, order=2)
        ref = ref + 0.6 * (mix(noised(ref, eps, s, "ve"), torch.full((2,), s, dtype=F64)) - ref)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)


def test_refine_draws_noise_node_n_for_step_n() -> None:
    """With lr 1 and uniform weight each step is x0 <- D(alpha x0 + sigma z_n, sigma), z_n the SDS keyed normals of
    node n = 0, 1, ... in step order (inner steps included): the noise a seed gives, as released."""
    mix = two_modes()
    x0 = torch.tensor([[0.4, -0.2], [1.5, 0.3]], dtype=F64)
    sigmas = [3.0, 1.0, 0.2]
    out = sds_refine(mix, x0, sigmas, "ve", weighting="uniform", lr=1.0, inner_steps=2, seed=8)
    ref = x0
    for n, s in enumerate(s for s in sigmas for _ in range(2)):
        z = keyed_normals(8, 2, (2,), DOMAIN_SDS, n, dtype=F64)
        ref = mix(ref + s * z, torch.full((2,), s, dtype=F64))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-14)


def test_adam_steps_as_torch_adam() -> None:
    """sds_refine's Adam is torch.optim.Adam (betas 0.9 and 0.999, eps 1e-8, bias-corrected) step for step. At
    sigma ~ 1e-7 the gradient x0 - D is ~ 1e-7, so eps is a tenth of the denominator and shows too."""
    gauss = GaussianMixture([GAUSS_MU], [GAUSS_STD], [1.0])
    x0 = torch.tensor([[0.3, -0.8], [1.0, -1.2]], dtype=F64)
    seen: list[dict] = []
    sds_refine(gauss, x0, [1e-7, 2e-7, 1e-7, 5e-7, 1e-7], "ve", weighting="uniform", lr=0.1, optimizer="adam",
               seed=3, callback=seen.append)
    param = x0.clone().requires_grad_(True)
    adam = torch.optim.Adam([param], lr=0.1)
    assert seen[0]["grad"].abs().max() < 1e-6
    for payload in seen:
        param.grad = payload["grad"].clone()
        adam.step()
        torch.testing.assert_close(payload["x0"], param.detach(), rtol=1e-12, atol=0)


def test_sds_refine_defaults_as_released() -> None:
    """Library callers rely on the defaults: SGD at lr 0.05, DreamFusion weighting, one inner step, no clip, seed 0,
    4 inversion calls, no progress bar."""
    defaults = keyword_defaults(sds_refine)
    assert defaults == {"extra_args": None, "mode": "sds", "weighting": "dreamfusion", "lr": 0.05,
                        "optimizer": "sgd", "inner_steps": 1, "grad_clip": 0.0, "seed": 0, "guidance_parts": None,
                        "callback": None, "inversion_steps": 4, "disable": True}


def test_sds_noise_is_the_noise_released() -> None:
    """Same seed, same image across versions: the SDS normals' key domain and node numbering are public."""
    z = fresh_noise(5, torch.zeros(2, 3, dtype=F64), node=4)
    released = [[1.5344400178191184, 0.3748974669959244, 1.55757340349331],
                [-0.060582119937424614, 0.844684411794929, -1.147348244520669]]
    torch.testing.assert_close(z, torch.tensor(released, dtype=F64), rtol=1e-12, atol=1e-12)


# -- determinism, batch invariance, counting, contracts ----------------------------------------------------------

@pytest.mark.parametrize("how", ["sampler", "refine"])
def test_fresh_noise_is_deterministic_per_seed_and_batch_invariant(how: str) -> None:
    mix = two_modes()

    def run(x: torch.Tensor, seed: int) -> torch.Tensor:
        if how == "sampler":
            return SDS(mix, x, grid_for("ve", 8), sds_noise="fresh", sds_lr=0.7, seed=seed, disable=True)
        return sds_refine(mix, x, log_sigmas(5.0, 0.1, 20), "ve", seed=seed)

    x = start("ve", n=3) if how == "sampler" else torch.randn(3, 2, dtype=F64)
    batch = run(x, 11)
    assert torch.equal(batch, run(x, 11))
    assert not torch.allclose(batch, run(x, 12))
    for b in range(3):
        torch.testing.assert_close(run(x[b:b + 1], 11 + b), batch[b:b + 1], rtol=0, atol=1e-12)


class HostBrownian:
    """A host's per-image noise sampler (like k-diffusion's Brownian tree in the WebUI): normals that depend on each
    image's seed and the queried interval only, defined on [sigma_min, sigma_max] of the host's grid; a query
    outside is an error (torchsde warns and returns zeros there)."""

    def __init__(self, seeds: list[int], shape: tuple[int, ...], sigmas: torch.Tensor) -> None:
        positive = sigmas[sigmas > 0]
        self.seeds, self.shape = seeds, shape
        self.low, self.high = float(positive.min()), float(positive.max())
        self.queries: list[tuple[float, float]] = []

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        a, b = float(sigma), float(sigma_next)
        assert self.low <= b < a <= self.high, (a, b, self.low, self.high)
        self.queries.append((a, b))
        key = hash((a, b)) % 2**31
        return torch.stack([torch.randn(self.shape, dtype=F64, generator=torch.Generator().manual_seed(s * 7919 + key))
                            for s in self.seeds])


@pytest.mark.parametrize("end", ["zero", "above_zero"])
@pytest.mark.parametrize("inner", [1, 2, 3])
def test_fresh_noise_intervals_are_disjoint_and_inside_the_grid(end: str, inner: int) -> None:
    grid = grid_for("ve", 5).tolist()
    grid = grid if end == "zero" else grid[:-1]
    queries = fresh_noise_intervals(grid, inner)
    draws = (len(grid) - 1) * inner - (1 if end == "zero" else 0)  # no draw for the final re-noising to 0
    assert len(queries) == draws
    positive = [g for g in grid if g > 0]
    assert queries[0][0] == grid[0] and queries[-1][1] == positive[-1]
    assert all(a > b for a, b in queries) and all(b == c for (_, b), (c, _) in pairwise(queries))  # a chain
    if inner == 1:
        assert queries == [(s, t) for s, t in pairwise(grid) if t > 0]  # the queries of an SDE sampler
    assert len(fresh_noise_intervals([3.0, 0.0], inner)) == 0


def test_fresh_noise_intervals_give_the_final_interval_its_draws_from_the_last_positive_one() -> None:
    """Ending at 0, the last interval with t > 0 is cut into 2 inner - 1 parts; the others into inner."""
    thirds = [(3.0, 2.5), (2.5, 2.0), (2.0, 2.0 - 1 / 3), (2.0 - 1 / 3, 2.0 - 2 / 3), (2.0 - 2 / 3, 1.0)]
    for got, want in zip(fresh_noise_intervals([3.0, 2.0, 1.0, 0.0], 2), thirds, strict=True):
        assert got == pytest.approx(want, rel=1e-15)
    assert fresh_noise_intervals([3.0, 2.0, 1.0], 2) == [(3.0, 2.5), (2.5, 2.0), (2.0, 1.5), (1.5, 1.0)]


def test_fresh_noise_comes_from_the_hosts_noise_sampler() -> None:
    """With lr 1 and uniform weight the loop is LCM with the host's normals z_i = noise_sampler(sigma_i,
    sigma_(i+1)); each image's result depends on its own seed only; inner steps stay inside the host's range."""
    mix = two_modes()
    sigmas = grid_for("ve", 6)
    x = start("ve", n=2)
    host = HostBrownian([5, 123], (2,), sigmas)
    out = SDS(mix, x, sigmas, sds_noise="fresh", noise_sampler=host, disable=True)
    alpha = resolve_schedule("ve").alpha
    ref = x
    for s, t in pairwise(sigmas.tolist()):
        d = mix(ref, torch.full((2,), s, dtype=F64))
        ref = alpha(t) * d + t * host(s, t) if t > 0 else d
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert not torch.allclose(out, SDS(mix, x, sigmas, sds_noise="fresh", disable=True))  # not the keyed normals
    for inner in (1, 3):
        batch_host = HostBrownian([5, 123], (2,), sigmas)
        batch = SDS(mix, x, sigmas, sds_noise="fresh", sds_inner_steps=inner, sds_lr=0.6, noise_sampler=batch_host,
                    disable=True)
        assert batch_host.queries == fresh_noise_intervals(sigmas.tolist(), inner)
        alone = SDS(mix, x[1:], sigmas, sds_noise="fresh", sds_inner_steps=inner, sds_lr=0.6,
                    noise_sampler=HostBrownian([123], (2,), sigmas), disable=True)
        torch.testing.assert_close(batch[1:], alone, rtol=0, atol=1e-12)
    implied = SDS(mix, x, sigmas, noise_sampler=HostBrownian([5, 123], (2,), sigmas), disable=True)
    assert torch.equal(implied, SDS(mix, x, sigmas, disable=True))  # implied noise needs no draws


def test_a_one_interval_grid_draws_its_inner_noise_from_the_seed() -> None:
    """[s, 0] leaves a host's noise sampler no interval: the inner re-noisings at s use the keyed normals."""
    mix, x, sigmas = two_modes(), start("ve"), torch.tensor([2.0, 0.0], dtype=F64)
    host = HostBrownian([1, 2, 3, 4], (2,), sigmas)
    out = SDS(mix, x, sigmas, sds_noise="fresh", sds_inner_steps=3, noise_sampler=host, seed=4, disable=True)
    assert host.queries == []
    torch.testing.assert_close(out, SDS(mix, x, sigmas, sds_noise="fresh", sds_inner_steps=3, seed=4, disable=True),
                               rtol=0, atol=0)


def test_seed_comes_from_extra_args_like_the_other_samplers() -> None:
    mix = two_modes()
    x, sigmas = start("ve"), grid_for("ve", 5)
    a = SDS(mix, x, sigmas, sds_noise="fresh", extra_args={"seed": 9}, disable=True)
    torch.testing.assert_close(a, SDS(mix, x, sigmas, sds_noise="fresh", seed=9, disable=True), rtol=0, atol=0)


@pytest.mark.parametrize("options", [
    {}, {"sds_inner_steps": 2}, {"sds_mode": "sdi"},
    {"sds_mode": "sdi", "sds_inversion_steps": 2, "sds_inner_steps": 2},
    {"sds_noise": "fresh", "sds_weighting": "dreamfusion", "sds_lr": 2.0, "sds_grad_clip": 0.5},
])
@pytest.mark.parametrize("end", ["zero", "above_zero"])
def test_model_calls_are_counted_exactly_and_reported(options: dict[str, Any], end: str) -> None:
    sigmas = grid_for("ve", 6)
    sigmas = sigmas if end == "zero" else sigmas[:-1]
    model = Counting(two_modes())
    seen: list[dict] = []
    out = SDS(model, start("ve"), sigmas, callback=seen.append, disable=True, **options)
    assert torch.isfinite(out).all()
    assert model.calls == SDS.count_model_calls(sigmas, **options) == len(seen)
    assert [p["i"] for p in seen] == list(range(model.calls)) and all(p["total"] == model.calls for p in seen)
    assert all("x0" in p and "denoised" in p for p in seen) and all(model.inference)


def test_sdi_sampler_is_deterministic_and_ignores_the_seed() -> None:
    mix = two_modes()
    x, sigmas = start("ve"), grid_for("ve", 5)
    a = SDS(mix, x, sigmas, sds_mode="sdi", sds_lr=0.8, seed=1, disable=True)
    b = SDS(mix, x, sigmas, sds_mode="sdi", sds_lr=0.8, seed=2, disable=True)
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_grad_enabled_inputs_are_fine_and_nothing_is_differentiated() -> None:
    x = start("ve").requires_grad_(True)
    model = Counting(two_modes())
    out = SDS(model, x, grid_for("ve", 4), sds_noise="fresh", disable=True)
    assert not out.requires_grad and all(model.inference)
    refined = sds_refine(model, x, [1.0, 0.5], "ve")
    assert not refined.requires_grad
    eps = invert(model, x, 1.0, "ve", steps=2)
    for made in (out, refined, eps):  # ordinary tensors outside inference mode: in-place updates are allowed
        assert not made.is_inference()
        made.add_(1.0)
    with torch.inference_mode():
        assert SDS(model, x, grid_for("ve", 4), disable=True).is_inference()


def test_float32_state_and_sigmas_stay_float32() -> None:
    mix = two_modes()
    out = SDS(lambda x, s: mix(x, s), start("ve").float(), grid_for("ve", 5).float(), disable=True)
    assert out.dtype == torch.float32
    refined = sds_refine(mix, torch.zeros(2, 2), [1.0, 0.5], "ve")
    assert refined.dtype == torch.float32


# -- DPM-Solver inversion -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("family", "sigma", "order"), [("ve", 5.0, 1), ("ve", 5.0, 2), ("flow", 0.9, 1),
                                                      ("flow", 0.9, 2), ("flow", 1.0, 1)])
def test_inversion_round_trips_with_the_matching_sampler(family: str, sigma: float, order: int) -> None:
    """invert x0 to sigma, then the matching DPM-Solver sampler back down the same grid: x0 again (at the grid's
    bottom sigma_min ~ 0), to an error that falls like steps^-order. (To flow sigma = 1 the last inversion step is
    the first-order limit to alpha = 0 over a fixed interval, so the round trip is first order there.)"""
    mix = GaussianMixture([[1.0, -0.5], [-1.5, 0.8]], [[0.6, 0.7], [0.8, 0.6]], [0.4, 0.6], family=family)
    sampler = {1: "dpm_solver_1", 2: "dpm_solver_pp_2m"}[order]
    x0 = mix.sample_data(6, torch.Generator().manual_seed(3))
    sched = resolve_schedule(family)
    errors = []
    for steps in (8, 16, 32, 64):
        model = Counting(mix)
        eps = invert(model, x0, sigma, family, steps=steps, order=order)
        assert model.calls == steps and all(model.inference)
        grid = inversion_grid(sigma, sched, steps)
        assert grid[-1] == sigma and len(grid) == steps + 1
        down = torch.tensor(grid[::-1], dtype=F64)
        back = SAMPLERS[sampler](mix, noised(x0, eps, sigma, family), down, schedule=family, disable=True,
                                 **({"lower_order_final": False} if order == 2 else {}))
        errors.append((back / sched.alpha(grid[0]) - x0).abs().max().item())
    rates = [a / b for a, b in pairwise(errors)]
    assert min(rates) > 2 ** order * 0.75, (errors, rates)
    assert errors[-1] < (0.1 if order == 1 else 1e-3), errors


def test_inversion_of_a_point_mass_is_exact() -> None:
    """For data concentrated at c (D = c), every x_sigma = alpha c + sigma eps is on the ODE path: eps is exact."""
    c = torch.tensor([[0.3, -0.7]], dtype=F64)

    def point(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return c.expand_as(x)

    eps = invert(point, c, 3.0, "ve", steps=3)
    torch.testing.assert_close(eps, torch.zeros_like(eps), rtol=0, atol=1e-13)


# -- the pieces ------------------------------------------------------------------------------------------------------

def test_weights_follow_their_formulas() -> None:
    for s in (0.03, 1.0, 14.6):
        assert sds_weight(s, "dreamfusion", "ve") == pytest.approx(s / (1 + s * s), rel=1e-15)
        assert sds_weight(s, "sjc", "ve") == pytest.approx(1 / s, rel=1e-15)
        assert sds_weight(s, "uniform", "ve") == 1.0
    for s in (0.1, 0.5, 0.9):
        a = 1 - s
        # DreamFusion's w = sigma_VP^2 on eps_hat - eps = (alpha/sigma)(x0 - D), with sigma_VP^2 = s^2/(a^2 + s^2)
        assert sds_weight(s, "dreamfusion", "flow") == pytest.approx(s * s / (a * a + s * s) * a / s, rel=1e-14)
        assert sds_weight(s, "sjc", "flow") == pytest.approx(a / s, rel=1e-15)
    assert sds_weight(1.0, "dreamfusion", "flow") == 0.0 == sds_weight(1.0, "sjc", "flow")
    with pytest.raises(ValueError, match="weighting"):
        sds_weight(1.0, "vp", "ve")
    with pytest.raises(ValueError, match="sigma"):
        sds_weight(0.0, "uniform", "ve")


def test_gradients_noise_helpers_and_clip() -> None:
    x0, d = torch.tensor([[1.0, 2.0]], dtype=F64), torch.tensor([[0.5, 1.0]], dtype=F64)
    torch.testing.assert_close(sds_gradient(x0, d, 1.0, "dreamfusion", "ve"), 0.5 * (x0 - d))
    dc, du = torch.tensor([[1.0, 0.0]], dtype=F64), torch.tensor([[0.0, 0.0]], dtype=F64)
    # descending the CSD gradient moves x0 towards D_cond - D_uncond
    torch.testing.assert_close(csd_gradient(dc, du, 1.0, "uniform", "ve", 7.5), -7.5 * (dc - du))
    torch.testing.assert_close(csd_gradient(dc, du, 2.0, "dreamfusion", "ve", 7.5), -7.5 * 0.4 * (dc - du))
    eps = torch.tensor([[0.1, -0.2]], dtype=F64)
    x_t = noised(x0, eps, 0.4, "flow")
    torch.testing.assert_close(x_t, 0.6 * x0 + 0.4 * eps)
    torch.testing.assert_close(implied_noise(x_t, x0, 0.4, "flow"), eps)
    assert torch.equal(noised(x0, eps, 0.0, "ve"), x0)
    g = torch.tensor([[3.0, 4.0], [0.3, 0.4]], dtype=F64)
    torch.testing.assert_close(clip_gradient(g, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]], dtype=F64))
    assert clip_gradient(g, 0.0) is g
    z = fresh_noise(5, torch.zeros(2, 3, dtype=F64), node=4)
    torch.testing.assert_close(z, keyed_normals(5, 2, (3,), DOMAIN_SDS, 4, dtype=F64), rtol=0, atol=0)


class RecordingGuidance:
    """CFG on exact denoisers that keeps (D_cond, D_uncond, cfg) of its latest call, as a host's CFG hook does."""

    def __init__(self, model: GuidedMixture) -> None:
        self.model, self.last = model, None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra: Any) -> torch.Tensor:
        self.last = (self.model.cond.denoise(x, sigma), self.model.uncond.denoise(x, sigma), self.model.scale)
        return self.model(x, sigma)

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        return self.last


def test_csd_steps_along_the_guidance_term_only() -> None:
    means, stds = [[2.0], [-2.0]], [[0.3], [0.3]]
    guided = RecordingGuidance(GuidedMixture(GaussianMixture(means, stds, [0.5, 0.5]),
                                             GaussianMixture(means, stds, [0.9, 0.1]), 5.0))
    x0 = torch.tensor([[0.4], [-0.3]], dtype=F64)
    out = sds_refine(guided, x0, [2.0], "ve", mode="csd", weighting="uniform", lr=0.1, seed=0,
                     guidance_parts=guided.parts)
    cond, uncond, cfg = guided.last
    torch.testing.assert_close(out - x0, 0.1 * cfg * (cond - uncond), rtol=1e-12, atol=1e-14)
    sampled = SDS(guided, start("ve", n=2)[:, :1] / 3, grid_for("ve", 5), sds_mode="csd", sds_lr=0.1,
                  guidance_parts=guided.parts, disable=True)
    assert torch.isfinite(sampled).all()


@pytest.mark.parametrize(("mode", "weighting", "clip"), [("sds", "dreamfusion", 0.0), ("sds", "sjc", 0.5),
                                                        ("sdi", "dreamfusion", 0.0), ("csd", "dreamfusion", 0.0),
                                                        ("csd", "uniform", 0.05)])
def test_every_sampler_step_descends_the_clipped_gradient(mode: str, weighting: str, clip: float) -> None:
    """At every optimisation step of the sampler x0 <- x0 - lr clip(grad), recomputed here from the payload's D,
    the previous x0 (the first call's D at the start) and the guidance parts of that call."""
    means, stds = [[2.0, 0.5], [-2.0, 1.0]], [[0.3, 0.5], [0.3, 0.4]]
    guided = RecordingGuidance(GuidedMixture(GaussianMixture(means, stds, [0.5, 0.5]),
                                             GaussianMixture([[1.0, 0.0], [-2.5, 1.5]], stds, [0.9, 0.1]), 3.0))
    grid = grid_for("ve", 4)
    seen, parts = [], []

    def record(payload: dict) -> None:
        seen.append(payload)
        parts.append(guided.last)

    SDS(guided, start("ve", n=3), grid, sds_mode=mode, sds_weighting=weighting, sds_grad_clip=clip, sds_lr=0.4,
        sds_inner_steps=2, sds_inversion_steps=2, sds_noise="fresh", guidance_parts=guided.parts, callback=record,
        disable=True)
    steps = [(p, c) for p, c in zip(seen, parts, strict=True) if not p.get("inversion")]
    assert len(steps) == 8 and len(seen) == SDS.count_model_calls(grid, sds_mode=mode, sds_inner_steps=2,
                                                                 sds_inversion_steps=2)
    before, moved = None, 0
    for payload, (cond, uncond, cfg) in steps:
        sigma, denoised = float(grid[payload["step"]]), payload["denoised"]
        before = denoised if before is None else before
        if mode == "csd":
            grad = csd_gradient(cond, uncond, sigma, weighting, "ve", cfg)
        else:
            grad = sds_gradient(before, denoised, sigma, weighting, "ve")
        expected = before - 0.4 * clip_gradient(grad, clip)
        moved += int((payload["x0"] - before).abs().max() > 1e-6)
        torch.testing.assert_close(payload["x0"], expected, rtol=1e-12, atol=1e-13)
        before = payload["x0"]
    assert moved >= 6


def test_a_unit_step_lands_exactly_on_the_denoised() -> None:
    """lr lambda = 1 without a clip takes x0 to D bit for bit (the LCM and DDIM identities rest on it); x0 - (x0 - D)
    would not, where x0 and D differ by more than a factor 2."""
    seen: list[dict] = []
    SDS(two_modes(), start("ve", n=64), grid_for("ve", 8), sds_noise="fresh", callback=seen.append, disable=True)
    assert all(torch.equal(p["x0"], p["denoised"]) for p in seen)


def test_sdi_renoises_with_the_order_2_inversion_of_x0() -> None:
    """Mode sdi: x_t <- alpha(t) x0 + t eps, eps the order-2 DPM-Solver inversion of x0 to t in
    sds_inversion_steps calls, whose payloads carry "inversion": True and the latent being inverted."""
    mix = two_modes()
    grid = grid_for("ve", 3).tolist()
    x = start("ve", n=2)
    seen: list[dict] = []
    out = SDS(mix, x, torch.tensor(grid, dtype=F64), sds_mode="sdi", sds_lr=0.7, sds_inversion_steps=3,
              callback=seen.append, disable=True)
    ref, x0 = x, None
    for s, t in pairwise(grid):
        d = mix(ref, torch.full((2,), s, dtype=F64))
        x0 = d if x0 is None else x0 + 0.7 * (d - x0)
        ref = noised(x0, invert(mix, x0, t, "ve", steps=3, order=2), t, "ve") if t > 0 else x0
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    inversion = [p for p in seen if p.get("inversion")]
    assert len(inversion) == 3 * (len(grid) - 2) and len(seen) == len(inversion) + len(grid) - 1
    assert all(p["inversion"] is True for p in inversion)


def test_csd_options_check_without_guidance_parts_and_sampling_reports_them_missing() -> None:
    """Hosts fill guidance_parts from their CFG hook only when sampling starts: checking (counting) csd options
    needs no stand-in, and sampling without the parts fails clearly before any model call."""
    grid = grid_for("ve", 4)
    assert SDS.count_model_calls(grid, sds_mode="csd", sds_inner_steps=2) == SDS.count_model_calls(
        grid, sds_inner_steps=2) == 8
    model = Counting(two_modes())
    seen: list[dict] = []
    with pytest.raises(ValueError, match="dpm_solver_sds: option sds_mode 'csd' needs the option guidance_parts"):
        SDS(model, start("ve"), grid, sds_mode="csd", callback=seen.append, disable=True)
    assert model.calls == 0 and seen == []
    with pytest.raises(ValueError, match="sds_refine: mode 'csd' needs guidance_parts"):
        sds_refine(model, torch.zeros(2, 2, dtype=F64), [1.0], "ve", mode="csd")
    with pytest.raises(ValueError, match="guidance_parts returned None"):
        sds_refine(model, torch.zeros(2, 2, dtype=F64), [1.0], "ve", mode="csd", guidance_parts=lambda: None)
    assert model.calls == 1  # the last one: the hook had nothing for the call just made


def test_what_guidance_parts_returns_is_checked() -> None:
    """A batch-1 pair was broadcast to every image; other shapes, arities or types failed deep inside torch."""
    x = start("ve")
    grid = grid_for("ve", 3)
    full = torch.zeros_like(x)
    bad = {"cond_denoised of shape \\(1,": lambda: (full[:1], full, 7.5),
           "uncond_denoised of shape": lambda: (full, torch.cat([full, full]), 7.5),
           "got 2 items": lambda: (full, full),
           "got a dict": lambda: {"cond": full},
           "cond_denoised of a ndarray": lambda: (full.numpy(), full, 7.5),
           "cfg True; expected a real number": lambda: (full, full, True),
           "cfg 'high'": lambda: (full, full, "high")}
    for message, parts in bad.items():
        with pytest.raises(ValueError, match=f"mode 'csd': guidance_parts .*{message}"):
            SDS(two_modes(), x, grid, sds_mode="csd", guidance_parts=parts, disable=True)
    for cfg in (7, 7.5, torch.tensor(7.5), np.float32(7.5)):
        out = SDS(two_modes(), x, grid, sds_mode="csd", guidance_parts=lambda c=cfg: (full, full, c), disable=True)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("sds_mode", "ism", "sds_mode must be one of 'sds', 'csd', 'sdi'"),
    ("sds_weighting", "vp", "sds_weighting must be one of 'dreamfusion', 'sjc', 'uniform'"),
    ("sds_lr", 0.0, "sds_lr must be a finite number > 0"),
    ("sds_lr", -1.0, "sds_lr must be a finite number > 0"),
    ("sds_lr", float("nan"), "sds_lr must be a finite number > 0"),
    ("sds_lr", "1", "sds_lr must be a number"),
    ("sds_inner_steps", 0, "sds_inner_steps must be an integer >= 1"),
    ("sds_inner_steps", 1.5, "sds_inner_steps must be an integer >= 1"),
    ("sds_inner_steps", True, "sds_inner_steps must be an integer >= 1"),
    ("sds_grad_clip", -0.1, "sds_grad_clip must be a finite number >= 0"),
    ("sds_grad_clip", float("inf"), "sds_grad_clip must be a finite number >= 0"),
    ("sds_noise", "brownian", "sds_noise must be one of 'implied', 'fresh'"),
    ("sds_inversion_steps", 0, "sds_inversion_steps must be an integer >= 1"),
    ("guidance_parts", 3, "guidance_parts must be None or a zero-argument callable"),
    ("seed", "a", "seed must be an integer, a non-empty list of integers"),
    ("schedule", "vp", "schedule (schedule )?must be 've', 'flow'"),
])
def test_bad_option_values_name_the_option(option: str, value: Any, expected: str) -> None:
    model = Counting(two_modes())
    with pytest.raises(ValueError, match=f"dpm_solver_sds: option {expected}"):
        SDS(model, start("ve"), grid_for("ve", 4), disable=True, **{option: value})
    with pytest.raises(ValueError, match=expected):
        SDS.count_model_calls(grid_for("ve", 4), **{option: value})
    assert model.calls == 0


def test_unknown_options_are_type_errors() -> None:
    with pytest.raises(TypeError, match="eta"):
        SDS(two_modes(), start("ve"), grid_for("ve", 4), eta=0.5, disable=True)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"mode": "ism"}, "mode must be one of"),
    ({"weighting": "karras"}, "weighting must be one of"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of 'sgd', 'adam'"),
    ({"lr": -0.1}, "sds_lr must be a finite number > 0"),
    ({"inner_steps": 0}, "sds_inner_steps must be an integer >= 1"),
    ({"grad_clip": -1.0}, "sds_grad_clip must be a finite number >= 0"),
    ({"inversion_steps": 0, "mode": "sdi"}, "sds_inversion_steps must be an integer >= 1"),
    ({"seed": None}, "seed"),
    ({"seed": [1, 2]}, "sds_refine: seed must be an integer"),
    ({"sigmas": []}, "must not be empty"),
    ({"sigmas": [1.0, 0.0]}, r"sigmas\[1\] = 0.0"),
    ({"sigmas": [float("nan")]}, r"sigmas\[0\] = nan"),
    ({"sigmas": [1.5], "schedule": "flow"}, r"\(0, 1.0\] \(the 'flow' schedule\)"),
    ({"schedule": "vp"}, "schedule must be"),
])
def test_sds_refine_rejects_bad_arguments_before_any_model_call(kwargs: dict[str, Any], expected: str) -> None:
    model = Counting(two_modes())
    args = {"sigmas": [1.0, 0.5], "schedule": "ve"} | kwargs
    sigmas, schedule = args.pop("sigmas"), args.pop("schedule")
    with pytest.raises(ValueError, match=expected):
        sds_refine(model, torch.zeros(2, 2, dtype=F64), sigmas, schedule, **args)
    assert model.calls == 0


def test_sds_refine_takes_numpy_and_torch_integer_seeds() -> None:
    x0 = torch.zeros(2, 2, dtype=F64)
    want = sds_refine(two_modes(), x0, [1.0, 0.5], "ve", seed=3)
    for seed in (np.int64(3), torch.tensor(3)):  # as the seed option and extra_args['seed'] do
        assert torch.equal(sds_refine(two_modes(), x0, [1.0, 0.5], "ve", seed=seed), want)


def test_invert_defaults_are_the_sds_inversion_defaults() -> None:
    """invert(model, x0, sigma, schedule): the sdi mode's default of sds_inversion_steps calls, at order 2."""
    x0 = torch.tensor([[0.4, -0.2]], dtype=F64)
    model = Counting(two_modes())
    eps = invert(model, x0, 5.0, "ve")
    assert model.calls == OPTIONS["sds_inversion_steps"].default == 4
    assert torch.equal(eps, invert(two_modes(), x0, 5.0, "ve", steps=4, order=2))


@pytest.mark.parametrize("order", [2, 3])
def test_the_inversion_keeps_its_order_to_the_last_step(order: int) -> None:
    plan = inversion_plan(inversion_grid(5.0, resolve_schedule("ve"), 6), resolve_schedule("ve"), order)
    steps = [stage for stage in plan.stages if stage.commit]
    assert len(steps) == 6 and len(steps[-1].terms) == order


@pytest.mark.parametrize(("family", "sigma", "steps", "lambdas", "sigma_min"), [
    ("ve", 5.0, 1, [INVERSION_LAMBDA_MIN], None),
    ("flow", 1.0, 1, [INVERSION_LAMBDA_MIN], None),
    ("flow", 1.0, 2, [INVERSION_LAMBDA_MIN, -INVERSION_LAMBDA_MIN], None),
    ("flow", 1.0, 3, [INVERSION_LAMBDA_MIN, 0.0, -INVERSION_LAMBDA_MIN], None),  # uniform up to the mirror image
    ("flow", 0.5, 2, [INVERSION_LAMBDA_MIN, INVERSION_LAMBDA_MIN / 2], None),  # lambda(0.5) = 0
    ("ve", 0.01, 1, [-math.log(0.01) + 1.0], None),  # a target above lambda_min - 1 starts one unit of lambda lower
    ("ve", 5.0, 2, [-math.log(0.5), (-math.log(0.5) - math.log(5.0)) / 2], 0.5),
])
def test_inversion_grids_of_one_and_more_steps(family: str, sigma: float, steps: int, lambdas: list[float],
                                                sigma_min: float | None) -> None:
    sched = resolve_schedule(family)
    grid = inversion_grid(sigma, sched, steps, sigma_min)
    assert grid[-1] == sigma and len(grid) == steps + 1
    assert [sched.lambda_(s) for s in grid[:-1]] == pytest.approx(lambdas, abs=1e-12)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"steps": 0}, "inversion steps must be an integer >= 1"),
    ({"order": 4}, "inversion order must be 1, 2 or 3"),
    ({"sigma": 0.0}, "inversion target sigma"),
    ({"sigma": 1.2, "schedule": "flow"}, "inversion target sigma"),
    ({"sigma_min": 6.0}, "sigma_min"),
])
def test_invert_rejects_bad_arguments(kwargs: dict[str, Any], expected: str) -> None:
    args = {"sigma": 5.0, "schedule": "ve"} | kwargs
    sigma, schedule = args.pop("sigma"), args.pop("schedule")
    with pytest.raises(ValueError, match=expected):
        invert(two_modes(), torch.zeros(1, 2, dtype=F64), sigma, schedule, **args)


@pytest.mark.parametrize("options", [{}, {"sds_mode": "sdi"}])
def test_an_exception_in_the_callback_stops_at_once(options: dict[str, Any]) -> None:
    model = Counting(two_modes())

    def interrupt(payload: dict) -> None:
        if payload["i"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SDS(model, start("ve"), grid_for("ve", 8), callback=interrupt, disable=True, **options)
    assert model.calls == 2
    with pytest.raises(KeyboardInterrupt):
        sds_refine(model, torch.zeros(2, 2, dtype=F64), [1.0, 0.5, 0.2], "ve", callback=interrupt)
    assert model.calls == 4


@pytest.mark.parametrize("options", [{"sds_mode": "sdi"}, {"sds_noise": "fresh"}])
def test_nan_from_the_model_names_the_call(options: dict[str, Any]) -> None:
    from samplers import NonFiniteModelOutput

    def nan_at_third_call() -> Any:
        inner = Counting(two_modes())

        def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = inner(x, sigma)
            return out * float("nan") if inner.calls == 3 else out

        model.inner = inner
        return model

    model = nan_at_third_call()
    with pytest.raises(NonFiniteModelOutput, match=r"model call 2 \(step \d, sigma=[0-9.]+\)"):
        SDS(model, start("ve"), grid_for("ve", 6), disable=True, **options)
    assert model.inner.calls == 3
    model = nan_at_third_call()
    with pytest.raises(NonFiniteModelOutput, match="model call 2"):
        sds_refine(model, torch.zeros(2, 2, dtype=F64), [1.0, 0.5, 0.2, 0.1], "ve", mode=options.get("sds_mode", "sds"))
    assert model.inner.calls == 3
