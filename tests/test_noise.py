"""The seeded noise source: hash, keyed normals, per-sample streams, key domains, the Brownian path."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from samplers import grids
from samplers import noise as noise_module
from samplers.noise import (
    DEPTH,
    DOMAIN_BROWNIAN,
    DOMAIN_INITIAL,
    MASK64,
    Chain,
    SeededNoise,
    _bridge,
    _node_keys,
    brownian_terms,
    depth_for,
    increment_sd,
    initial_noise,
    keyed_normals,
    mix64,
    mix64_tensor,
    node_key,
    stream_bases,
    tau_of_lambda,
)
from samplers.schedules import FLOW, VE

N = 1 << 16


def test_hash_matches_the_python_reference_bit_for_bit() -> None:
    values = [0, 1, 2, 3, -1, -2, 2**62, -(2**63), 2**63 - 1, 0x9E3779B97F4A7C15 - 2**64, 123456789]
    values += [(k * 0x2545F4914F6CDD1D) % 2**64 - 2**63 for k in range(1, 500)]
    got = mix64_tensor(torch.tensor(values, dtype=torch.int64)).tolist()
    assert [g & MASK64 for g in got] == [mix64(v & MASK64) for v in values]
    # a known SplitMix64 output: first draw of the generator seeded with 0 is mix64(0x9E3779B97F4A7C15)
    assert mix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


def test_device_node_keys_match_the_host_reference() -> None:
    bases = stream_bases([5, 2**40, -3], 3, DOMAIN_BROWNIAN)
    nodes = torch.tensor([0, 1, 2, 511, 2**33 + 7, -(2**62)], dtype=torch.int64)
    got = _node_keys(bases, nodes).tolist()
    assert [[k & MASK64 for k in row] for row in got] == [[node_key(b & MASK64, n & MASK64) for n in nodes.tolist()]
                                                          for b in bases.tolist()]


def _ks_statistic(z: torch.Tensor) -> float:
    s = z.flatten().to(torch.float64).sort().values
    cdf = 0.5 * (1.0 + torch.special.erf(s / math.sqrt(2.0)))
    n = s.numel()
    hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    return float(torch.maximum(hi - cdf, cdf - (hi - 1.0 / n)).max())


def test_keyed_normals_are_standard_normal() -> None:
    z = keyed_normals(7, 4, (N,), DOMAIN_BROWNIAN, 3, dtype=torch.float64).flatten()
    n = z.numel()
    assert abs(float(z.mean())) < 4 / math.sqrt(n)
    assert abs(float(z.var()) - 1.0) < 4 * math.sqrt(2 / n)
    assert abs(float((z**4).mean()) - 3.0) < 0.05  # kurtosis of a normal (SE ~ 0.01 here)
    assert _ks_statistic(z) < 1.63 / math.sqrt(n)  # Kolmogorov-Smirnov at the 1% level
    lag = torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1]  # neighbours (the two halves of a Box-Muller pair)
    assert abs(float(lag)) < 4 / math.sqrt(n)


@pytest.mark.parametrize(("a", "b"), [
    ((0, 0, DOMAIN_BROWNIAN, 1), (1, 0, DOMAIN_BROWNIAN, 1)),  # seed
    ((0, 0, DOMAIN_BROWNIAN, 1), (0, 0, DOMAIN_BROWNIAN, 2)),  # node
    ((0, 0, DOMAIN_BROWNIAN, 1), (0, 0, DOMAIN_INITIAL, 1)),  # domain
    ((0, 0, DOMAIN_BROWNIAN, 1), (0, 1, DOMAIN_BROWNIAN, 1)),  # sample (seed 0, sample 1 = stream 1)
    ((5, 0, DOMAIN_BROWNIAN, 2**40), (5, 0, DOMAIN_BROWNIAN, 2**40 + 1)),
])
def test_different_keys_give_uncorrelated_fields(a: tuple, b: tuple) -> None:
    def field(seed: int, sample: int, domain: int, node: int) -> torch.Tensor:
        return keyed_normals(seed, sample + 1, (N,), domain, node, dtype=torch.float64)[sample]

    x, y = field(*a), field(*b)
    assert not torch.equal(x, y)
    assert abs(float(torch.corrcoef(torch.stack([x, y]))[0, 1])) < 4 / math.sqrt(N)


def test_sample_b_of_a_batch_is_the_stream_of_seed_plus_b() -> None:
    batch = keyed_normals(100, 3, (4, 8, 8), DOMAIN_BROWNIAN, 9)
    for b in range(3):
        alone = keyed_normals(100 + b, 1, (4, 8, 8), DOMAIN_BROWNIAN, 9)
        assert torch.equal(batch[b], alone[0])
    assert torch.equal(keyed_normals(100, 1, (4, 8, 8), DOMAIN_BROWNIAN, 9),
                       keyed_normals(100, 1, (4, 8, 8), DOMAIN_BROWNIAN, 9))
    big = keyed_normals(2**64 - 1, 2, (16,), DOMAIN_BROWNIAN, 0)  # seeds wrap modulo 2^64 (ComfyUI's range)
    assert torch.equal(big[1], keyed_normals(0, 1, (16,), DOMAIN_BROWNIAN, 0)[0])


def test_float32_and_float64_agree_up_to_float_error() -> None:
    """The integers are dtype- and device-independent; only log/sqrt/cos/sin round differently (across devices:
    `test_cpu_and_accelerator_agree`, run on an H100)."""
    z32 = keyed_normals(3, 2, (N,), DOMAIN_BROWNIAN, 5, dtype=torch.float32)
    z64 = keyed_normals(3, 2, (N,), DOMAIN_BROWNIAN, 5, dtype=torch.float64)
    assert float((z32.double() - z64).abs().max()) < 1e-5
    assert float(z64.abs().max()) < math.sqrt(2 * 23 * math.log(2)) + 1e-12


def test_half_dtypes_round_the_float32_normals() -> None:
    z32 = keyed_normals(4, 2, (N,), DOMAIN_BROWNIAN, 6, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        half = keyed_normals(4, 2, (N,), DOMAIN_BROWNIAN, 6, dtype=dtype)
        assert half.dtype == dtype and torch.isfinite(half).all()
        assert torch.equal(half, z32.to(dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_cpu_and_accelerator_agree() -> None:
    cpu = SeededNoise(11, torch.zeros(2, 4, 16, 16), VE)
    gpu = SeededNoise(11, torch.zeros(2, 4, 16, 16, device="cuda"), VE)
    for s, t in [(14.6, 7.0), (7.0, 0.5), (0.5, 0.03)]:
        torch.testing.assert_close(gpu.increment(s, t).cpu(), cpu.increment(s, t), rtol=1e-5, atol=1e-5)


def _brute_sd(a: dict[int, float], b: dict[int, float]) -> float:
    return math.sqrt(sum((a.get(k, 0.0) - b.get(k, 0.0)) ** 2 for k in a.keys() | b.keys()))


def _cov(a: dict[int, float], b: dict[int, float], c: dict[int, float], d: dict[int, float]) -> float:
    """Cov(W(a) - W(b), W(c) - W(d)) from the host-side term dicts (unit-variance independent normals)."""
    return sum((a.get(k, 0.0) - b.get(k, 0.0)) * (c.get(k, 0.0) - d.get(k, 0.0)) for k in a.keys() | b.keys())


def test_brownian_terms_give_variance_tau_and_exact_increments() -> None:
    for tau in (0.5, 0.25, 0.75, 1.0, 3 / 8, 0.3, 1e-6, 0.028, 0.936, 1 - 1e-9):
        terms = brownian_terms(tau)
        assert sum(c * c for c in terms.values()) == pytest.approx(tau, rel=1e-12)  # residual included: exact
    assert brownian_terms(0.0) == {}
    assert brownian_terms(1.0) == {0: 1.0}
    with pytest.raises(ValueError, match="Brownian time"):
        brownian_terms(1.5)
    rng = random.Random(0)
    for _ in range(300):
        a = rng.random()
        b = min(1.0, a + rng.choice([1e-6, 1e-4, 1e-3, 1e-2, 0.3]) * rng.random())
        if a == b:
            continue
        ta, tb = brownian_terms(a), brownian_terms(b)
        ca, cb = Chain.of(a), Chain.of(b)
        assert increment_sd(ca, cb) == pytest.approx(_brute_sd(ta, tb), rel=1e-9, abs=1e-15)  # analytic = brute
        if ca.bridge[:2] != cb.bridge[:2]:  # different finest cells: the Brownian law exactly
            assert _brute_sd(ta, tb) == pytest.approx(math.sqrt(b - a), rel=1e-9)
    # disjoint increments over times in distinct finest cells are exactly uncorrelated, nested ones are not
    t = [0.9, 0.61, 0.6, 0.33, 0.02]
    terms = [brownian_terms(x) for x in t]
    assert len({Chain.of(x).bridge[:2] for x in t}) == len(t)
    for i, j in itertools.combinations(range(len(t) - 1), 2):
        assert abs(_cov(terms[i], terms[i + 1], terms[j], terms[j + 1])) < 1e-12
    assert _cov(terms[0], terms[2], terms[1], terms[2]) == pytest.approx(0.61 - 0.6, rel=1e-9)


def test_device_path_equals_the_host_reference() -> None:
    """W(tau) on the device (tree nodes kept between queries, batched hashes) is sum coef * keyed normal."""
    like = torch.zeros(2, 500, dtype=torch.float64)
    src = SeededNoise(3, like, FLOW)
    for tau in (0.7, 0.5, 0.31, 0.3, 1.0, 0.01, 0.72, 0.3000001, 0.0):  # jumps back and forth, shared cells
        terms = brownian_terms(tau)
        ref = torch.zeros(2, 500, dtype=torch.float64)
        for node, coef in terms.items():
            ref += coef * keyed_normals(3, 2, (500,), DOMAIN_BROWNIAN, node, dtype=torch.float64)
        torch.testing.assert_close(src.brownian(tau), ref, rtol=0, atol=1e-13)


def test_query_order_does_not_change_the_path() -> None:
    like = torch.zeros(1, 64)
    taus = [0.93, 0.8, 0.55, 0.5, 0.41, 0.2, 0.07, 0.0301, 0.03]
    forward, shuffled = SeededNoise(8, like, VE), SeededNoise(8, like, VE)
    values = {tau: forward.brownian(tau).clone() for tau in taus}
    for tau in random.Random(1).sample(taus, len(taus)):
        assert torch.equal(shuffled.brownian(tau), values[tau])


def test_run_grids_put_every_point_in_its_own_finest_cell() -> None:
    """Where the joint law of the step noises is exactly Brownian: Karras/exponential grids to 100 steps."""
    for n in (10, 20, 50, 100):
        for sigmas in (grids.karras(n, 0.029, 14.6), grids.exponential(n, 0.029, 14.6)):
            cells = [Chain.of(tau_of_lambda(VE.lambda_(s))).bridge[:2] for s in sigmas.tolist() if s > 0]
            assert len(set(cells)) == len(cells), n


def test_finer_grids_deepen_the_tree_until_every_point_has_its_own_cell() -> None:
    """Above ~100 steps, points once shared a finest cell and with it their residual normal: consecutive step noises
    correlated 0.6 on 1000 Karras steps and the SDE samplers' output variance doubled. The tree now deepens for them;
    the deeper tree keeps every node of the default one (W at its node times is unchanged)."""
    def taus(sigmas: torch.Tensor) -> list[float]:
        return [tau_of_lambda(VE.lambda_(s)) for s in sigmas.tolist()]

    assert depth_for(taus(grids.karras(100, 0.029, 14.6))) == DEPTH  # run grids to 100 steps: unchanged
    fine = grids.karras(1000, 0.002, 80.0, append_zero=False).tolist()
    depth = depth_for(taus(torch.tensor(fine)))
    assert depth > DEPTH
    cells = [Chain.of(tau, depth).bridge[:2] for tau in taus(torch.tensor(fine))]
    assert len(set(cells)) == len(cells)
    assert depth_for([0.5, 0.5 + 1e-15]) == 30 and depth_for([]) == DEPTH  # capped; nothing to separate
    like = torch.zeros(1, N // 4, dtype=torch.float64)
    src = SeededNoise(0, like, VE)
    src.prepare(increments=list(itertools.pairwise(fine)))
    assert src.depth == depth
    zs = torch.stack([src.increment(a, b).flatten() for a, b in itertools.pairwise(fine[:200])])
    corr = torch.corrcoef(zs)
    assert float((corr - torch.eye(len(zs), dtype=corr.dtype)).abs().max()) < 6 / math.sqrt(N // 4)
    shallow = SeededNoise(0, like, VE)
    node_time = Chain.of(0.3).coordinate_time(Chain.of(0.3).points[-1])  # a node of the default tree
    assert torch.equal(src.brownian(node_time), shallow.brownian(node_time))


def test_sde_samplers_keep_the_variance_on_fine_grids() -> None:
    """Data N(0, I): every exact-in-law sampler returns variance 1 (1.94 at 1000 VE steps before the tree deepened;
    flow 3.4)."""
    from samplers import SAMPLERS

    def ve(x: torch.Tensor, s: torch.Tensor, **_: object) -> torch.Tensor:
        return x / (1 + s.reshape(-1, 1, 1, 1) ** 2)

    sigmas = grids.karras(1000, 0.002, 80.0)
    x = torch.randn(2, 1, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 80.0
    for name in ("dpm_solver_pp_2m_sde", "dpm_solver_pp_2s_ancestral"):
        var = float(SAMPLERS[name](ve, x, sigmas, disable=True, seed=1).var())
        assert abs(var - 1.0) < 0.05, (name, var)


def test_brownian_time_depends_on_lambda_only() -> None:
    assert tau_of_lambda(math.inf) == 0.0 and tau_of_lambda(-math.inf) == 1.0
    for sigma in (0.01, 0.3, 0.9):
        assert tau_of_lambda(FLOW.lambda_(sigma)) == pytest.approx(sigma, rel=1e-12)
    for sigma in (0.03, 1.0, 14.6):
        assert tau_of_lambda(VE.lambda_(sigma)) == pytest.approx(sigma / (1 + sigma), rel=1e-12)


def test_refined_grids_see_the_same_brownian_path() -> None:
    like = torch.zeros(3, 4, 8, 8)
    coarse = grids.karras(5, 0.03, 14.6, append_zero=False).tolist()
    fine = grids.karras(9, 0.03, 14.6, append_zero=False).tolist()  # contains every coarse sigma
    assert all(any(f == c for f in fine) for c in coarse)
    a, b = SeededNoise(42, like, VE), SeededNoise(42, like, VE)
    a.prepare(increments=list(itertools.pairwise(coarse)))
    b.prepare(increments=list(itertools.pairwise(fine)))
    for sigma in coarse:
        assert torch.equal(a.brownian(a.tau(sigma)), b.brownian(b.tau(sigma)))  # W at shared times: identical
    # the coarse increment is the sum of the fine ones it covers (each z times its standard deviation)
    for s, t in itertools.pairwise(coarse):
        inside = [f for f in fine if t <= f <= s]
        total = sum(b.increment(u, v) * b.increment_sd(u, v) for u, v in itertools.pairwise(inside))
        torch.testing.assert_close(a.increment(s, t) * a.increment_sd(s, t), total, rtol=0, atol=2e-6)


def test_increments_are_standard_normal_independent_and_correlated_as_brownian_motion() -> None:
    like = torch.zeros(4, N // 4, dtype=torch.float64)
    src = SeededNoise(1, like, FLOW)  # flow: tau = sigma
    pairs = [(1.0, 0.7), (0.7, 0.5), (0.5, 0.5 - 1e-5), (0.2, 0.01), (0.01, 0.0)]
    zs = [src.increment(s, t).flatten() for s, t in pairs]
    for z in zs:
        assert abs(float(z.var()) - 1.0) < 5 * math.sqrt(2 / N)
        assert abs(float(z.mean())) < 5 / math.sqrt(N)
    corr = torch.corrcoef(torch.stack(zs))
    off = corr - torch.eye(len(zs), dtype=corr.dtype)
    assert float(off.abs().max()) < 5 / math.sqrt(N)  # disjoint intervals: independent
    # nested intervals (0.7 -> 0.5 inside 0.7 -> 0.2): correlation sqrt(0.2 / 0.5)
    r = torch.corrcoef(torch.stack([src.increment(0.7, 0.5).flatten(), src.increment(0.7, 0.2).flatten()]))[0, 1]
    assert float(r) == pytest.approx(math.sqrt(0.2 / 0.5), abs=5 / math.sqrt(N))
    with pytest.raises(ValueError, match="same time"):
        src.increment(0.4, 0.4)
    with pytest.raises(ValueError, match=r"same time\): .*\(VE sigmas above ~1e16 all round to 1\)"):
        SeededNoise(1, like, VE).increment(1e17, 5e16)


def test_initial_noise_and_sde_noise_never_coincide() -> None:
    shape = (2, 4, 32, 32)
    first_step = SeededNoise(5, torch.zeros(shape), VE).increment(14.6, 10.0)
    for initial in (initial_noise(5, shape), torch.randn(shape, generator=torch.Generator().manual_seed(5))):
        assert not torch.equal(initial, first_step)
        r = torch.corrcoef(torch.stack([initial.flatten(), first_step.flatten()]))[0, 1]
        assert abs(float(r)) < 5 / math.sqrt(initial.numel())
    assert initial_noise(5, shape).shape == shape and torch.equal(initial_noise(5, shape), initial_noise(5, shape))


def test_seeded_noise_is_a_k_diffusion_noise_sampler() -> None:
    src = SeededNoise(3, torch.zeros(2, 3, dtype=torch.float16), VE)
    z = src(torch.tensor(2.0), torch.tensor(1.0))
    assert z.shape == (2, 3) and z.dtype == torch.float32  # integrated in float32, like the samplers
    assert torch.equal(z, src(2.0, 1.0))


PINNED = {
    "initial seed 7": [[0.5357995722829614, -0.14992185168596042, -0.23717681248390796],
                       [-0.6542392157857738, 0.5060617265751469, 0.6164651797512313]],
    "VE 14.6 -> 3": [[-1.1417244962967674, 1.0666505477436463, -0.7697751869188483],
                     [0.7214030381602817, -0.016732805339267968, -0.2718551161164309]],
    "VE 3 -> 0.5": [[-0.6856565559198972, 0.43278286409619743, -1.6099954015561582],
                    [0.04350183978492771, 1.3142476764571667, 1.9027015070548228]],
    "Langevin at 3, move 1": [[-0.7410617852153678, 0.1679211788936486, -1.1557910862198455],
                              [0.5733793829179983, -1.3267885017592194, -1.2049767353107403]],
    "flow 0.8 -> 0.3, seeds 11, 4": [[0.4634166975782168, -0.05867915810756875, 0.6700180522064676],
                                     [-0.4160459971789467, -1.2256772580996755, 1.8402271794972984]],
}
"""The noise these seeds have drawn since b6c4707 (float64, CPU). A change here changes every shared seed's image."""


def test_a_seed_gives_the_same_noise_as_in_earlier_releases() -> None:
    """Same seed, same image across versions: the hash constants, key domains, stream salts and tree depth are
    part of the public interface (shared workflows carry only the seed)."""
    like = torch.zeros(2, 3, dtype=torch.float64)
    ve, flow = SeededNoise(7, like, VE), SeededNoise([11, 4], like, FLOW)
    got = {
        "initial seed 7": initial_noise(7, (2, 3), dtype=torch.float64),
        "VE 14.6 -> 3": ve.increment(14.6, 3.0),
        "VE 3 -> 0.5": ve.increment(3.0, 0.5),
        "Langevin at 3, move 1": ve.langevin(3.0, 1),
        "flow 0.8 -> 0.3, seeds 11, 4": flow.increment(0.8, 0.3),
    }
    for name, values in PINNED.items():
        torch.testing.assert_close(got[name], torch.tensor(values, dtype=torch.float64), rtol=1e-12, atol=1e-12,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_noise_prepared_up_front_equals_noise_drawn_as_needed() -> None:
    """The driver prepares a run's Brownian and Langevin keys in one upload; the values are those drawn lazily."""
    like = torch.zeros(2, 3, dtype=torch.float64)
    ahead, lazy = SeededNoise(7, like, VE), SeededNoise(7, like, VE)
    ahead.prepare(increments=[(14.6, 3.0), (3.0, 0.5)], points=[(3.0, 0), (3.0, 1), (0.5, 0)])
    for draw in (lambda src: src.increment(14.6, 3.0), lambda src: src.increment(3.0, 0.5),
                 lambda src: src.langevin(3.0, 0), lambda src: src.langevin(3.0, 1), lambda src: src.langevin(0.5, 0)):
        assert torch.equal(draw(ahead), draw(lazy))


def test_equal_times_have_no_increment_and_an_empty_cell_no_bridge() -> None:
    chain = Chain.of(0.3)
    assert increment_sd(chain, chain) == 0.0
    assert _bridge(0.3, 0.3, 0.3) == (0.0, 0.0)  # a cell whose ends round to one time (tau near 1 in float64)


def test_noise_generated_in_chunks_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large latents (video) generate a step's fields in chunks of bounded memory; the values do not change."""
    like = torch.zeros(2, 3, dtype=torch.float64)
    whole = SeededNoise(7, like, VE).increment(14.6, 0.5)
    monkeypatch.setattr(noise_module, "_CHUNK_ELEMENTS", 12)  # 2 fields per chunk at 2 x 3 elements
    assert torch.equal(SeededNoise(7, like, VE).increment(14.6, 0.5), whole)
