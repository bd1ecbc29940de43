"""Seeded, device-independent noise for the stochastic samplers: keyed normals and a Brownian path.

Keyed normals. A normal is a pure function of (stream, domain, node, element): the stream is `seed + sample
index` (so image b of a batch equals image 0 generated alone with seed + b, the WebUI's per-image seeds), the
domain separates uses (initial latent, Brownian path, Langevin corrector), the node names one field within a
domain, and the element is the position within the sample. The integers are mixed with the SplitMix64
finaliser, written with torch int64 operations (wrap-around multiplication, logical shifts as arithmetic
shift plus mask), so the same integers come out on any device, with no host round trip; the two 32-bit halves
of each 64-bit hash give two 23-bit uniforms (exact in float32 and float64) and one Box-Muller pair of normals,
computed in the caller's floating dtype, at least float32 (normals are bounded by sqrt(2 ln 2^23) = 5.6; half
dtypes get the float32 normals rounded). Results on two devices (or in float32 vs float64) agree up to the
rounding of log/sqrt/cos/sin.

Brownian path. W is a standard Brownian motion in the Brownian time tau = 1/(1 + e^lambda) in [0, 1] (tau = sigma
for flow models, sigma/(1+sigma) for VE; it depends on lambda only, so VP and VE scalings of one schedule get the
same noise), built by Brownian-bridge bisection on a tree over u = a/(a + b), a = tau^(1/C), b = (1 - tau)^(1/C), C
= TREE_SCALE, i.e. u = 1/(1 + e^(lambda/C)). W(0) = 0 and W(1) = Z_0; the midpoint u_m of a cell [u_l, u_r] of level
n-1 (node id 2^(n-1) + cell index) gets W(tau_m) = W(tau_l) + p (W(tau_r) - W(tau_l)) + s Z_node, with p = (tau_m -
tau_l)/(tau_r - tau_l) and s^2 = (tau_m - tau_l)(tau_r - tau_m)/(tau_r - tau_l): the exact conditional law of a
Brownian motion between two known values. This goes DEPTH levels deep; a queried tau in a finest cell gets the same
bridge formula with its cell's normal (node id 2^DEPTH + cell index): the exact Brownian-bridge residual. So W(tau)
is one fixed function of (seed, sample, tau): any grid (coarse, fine, split in two calls) sees the same path, and a
coarse step's noise is the sum of the fine steps' it contains.

Why this tree. Every Z costs one keyed-normal field (a hash and a Box-Muller pass over the latent), so the cost of a
step is the number of new fields. (1) Split points uniform in u are uniform in lambda/C near lambda = 0 and widen
smoothly (as 1/(u(1-u))) in the tails, like the grids samplers run (steps spread over lambda in about [-7, 7]); with
DEPTH = 9 levels the finest cells are 4C 2^-9 = 0.031 wide in lambda at lambda = 0 and 0.04 at |lambda| = 4, so
Karras, exponential and shifted-flow grids up to about 100 steps put every point in its own finest cell (a tree
uniform in tau needs about 20 levels for that at small sigma). (2) Consecutive steps of a run share the top of their
chains: the W values of the tree nodes on the last two chains are kept, so a step computes only the nodes below the
level where its chain leaves the previous one (about log2 of the finest cells it spans) plus its residual, all in
one batched hash: about 6 fields per step on a 20-step grid, 4 on a 50-step grid. (3) The residual makes the law
exact: the joint law of W at any set of times with at most one per finest cell is exactly that of a Brownian motion,
so such steps are exactly independent over disjoint intervals. Finer grids get a deeper tree: the samplers `prepare`
every time of a run before drawing, and the tree deepens (`depth_for`, up to MAX_DEPTH) until each time has its own
finest cell. A level-DEPTH cell's residual normal is the normal of its midpoint one level down, so the deeper tree
keeps every node of the shallower one: W is unchanged at those nodes, and only inside the default finest cells does
the path differ, by bridge fluctuations. Two times that still share a finest cell (within 1.5e-8 in lambda, or a time
never prepared) share its bridge and its residual normal, each scaled by its own bridge standard deviation, so W
stays continuous in tau (a time that rounds differently, e.g. one sigma reached through a VP and a VE schedule, gets
the same noise up to that rounding); their increment is still exactly N(0, 1) after division by its exact standard
deviation (`increment_sd`, host-side); only its correlation with the neighbouring steps in that cell is not zero.
The device keeps the tree nodes of the last two chains: at most 2 (depth + 1) latent-sized tensors.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .driver import described
from .options import as_integer
from .schedules import NoiseSchedule

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB

DOMAIN_INITIAL = 1
"""Key domain of the initial latent noise (`initial_noise`)."""
DOMAIN_BROWNIAN = 2
"""Key domain of the Brownian path the SDE and ancestral samplers draw their step noise from."""
DOMAIN_LANGEVIN = 3
"""Key domain of the Langevin corrector's noise."""

DEPTH = 9
"""Bisection levels of the Brownian tree (2^9 finest cells in u, 0.031 wide in lambda at lambda = 0)."""
MAX_DEPTH = 30
"""Deepest tree a run's times can ask for (`depth_for`): cells 1.5e-8 wide in lambda at lambda = 0 (wider in the
tails, as e^(|lambda|/4)), finer than the 1e-6 in lambda under which sigmas are merged (samplers/sigmas.py)."""

TREE_SCALE = 4.0
"""C in the tree coordinate u = 1/(1 + e^(lambda/C)): cells uniform in lambda/C near lambda = 0."""

_CHUNK_ELEMENTS = 1 << 22
"""Largest number of int64 hash lanes generated at once (bounds the temporary memory to ~100 MB)."""


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 torch stores."""
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def mix64(value: int) -> int:
    """SplitMix64 finaliser on a Python int (the host-side reference of `mix64_tensor`)."""
    z = value & MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & MASK64
    return z ^ (z >> 31)


def mix64_tensor(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 lanes, wrap-around arithmetic; equals `mix64` bit for bit. Works in place
    on `z` (pass a tensor you own)."""
    t = torch.empty_like(z)
    for shift, mul in ((30, _MUL1), (27, _MUL2)):
        torch.bitwise_right_shift(z, shift, out=t).bitwise_and_((1 << (64 - shift)) - 1)
        z.bitwise_xor_(t).mul_(_signed(mul))
    torch.bitwise_right_shift(z, 31, out=t).bitwise_and_((1 << 33) - 1)
    return z.bitwise_xor_(t)


Seed = int | Sequence[int]
"""One seed (sample b on stream seed + b) or a host's per-image seeds (sample b on stream seeds[b])."""


def sample_streams(seed: Seed, batch: int) -> list[int]:
    """The stream of each sample: seed + b, so image b of a batch equals image 0 made alone with seed + b; or the
    per-image seeds as given (the WebUI's, which repeat one seed under variation seeds), one per sample."""
    if not isinstance(seed, Sequence):
        return [int(seed) + b for b in range(batch)]
    streams = [int(s) for s in seed]
    if len(streams) != batch:
        raise ValueError(f"seed: {len(streams)} per-image seeds for a batch of {batch}; give one per image")
    return streams


def stream_key(stream: int, domain: int) -> int:
    """64-bit key of one sample's stream in a domain."""
    return mix64(mix64((int(stream) & MASK64) + GOLDEN) ^ ((domain * 0xD1B54A32D192ED03) & MASK64))


def stream_bases(seed: Seed, batch: int, domain: int) -> torch.Tensor:
    """The (batch,) int64 stream keys of a batch in a domain, on the host (sample_streams, then stream_key)."""
    return torch.tensor([_signed(stream_key(stream, domain)) for stream in sample_streams(seed, batch)],
                        dtype=torch.int64)


def node_key(base: int, node: int) -> int:
    """64-bit key of field `node` within a stream key (host reference of the device computation)."""
    return mix64((base + mix64((node * GOLDEN + 0x632BE59BD9B4E019) & MASK64)) & MASK64)


def _node_keys(bases: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """(B, K) int64 keys node_key(bases[b], nodes[k]) computed on the device."""
    salt = mix64_tensor(nodes * _signed(GOLDEN) + _signed(0x632BE59BD9B4E019))
    return mix64_tensor(bases[:, None] + salt[None, :])


def _normals_from_keys(keys: torch.Tensor, counters: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """(*keys.shape, n) standard normals: element pair m of field `key` hashes key + m*GOLDEN.

    The low 23 bits of each 32-bit half of the 64-bit hash give uniforms u = bits * 2^-23 in [0, 1), exact in
    float32 and float64 (half dtypes get the float32 normals, rounded). Box-Muller: r = sqrt(-2 log(1 - u_low)),
    normals r cos(2 pi u_high), r sin(2 pi u_high) (elements 2m and 2m + 1). The halves are masked while still in
    int64 lanes, so every operation runs on contiguous memory, and the 2^-23 scale is folded into the next
    multiplication (exact: a power of two).
    """
    work = torch.promote_types(dtype, torch.float32)  # half dtypes: computed in float32, then rounded
    z = mix64_tensor(keys[..., None] + counters)
    high = torch.bitwise_right_shift(z, 32).bitwise_and_(0x7FFFFF).to(work)
    radius = torch.log1p(z.bitwise_and_(0x7FFFFF).to(work).mul_(-(2.0**-23))).mul_(-2.0).sqrt_()
    angle = high.mul_(2.0 * math.pi * 2.0**-23)
    out = torch.empty((*angle.shape, 2), dtype=work, device=angle.device)
    torch.mul(torch.cos(angle), radius, out=out[..., 0])
    torch.mul(torch.sin(angle), radius, out=out[..., 1])
    return out.reshape(*keys.shape, -1)[..., :n].to(dtype)


def _counters(n: int, device: torch.device) -> torch.Tensor:
    pairs = (n + 1) // 2
    return torch.arange(pairs, dtype=torch.int64, device=device) * _signed(GOLDEN)


def keyed_normals(seed: Seed, batch: int, shape: Sequence[int], domain: int, node: int, *,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normals of shape (batch, *shape): field `node` of `domain`, sample b on its stream
    (sample_streams)."""
    device = torch.device(device)
    n = math.prod(shape)
    bases = stream_bases(seed, batch, domain).to(device)
    keys = _node_keys(bases, torch.tensor([_signed(node)], dtype=torch.int64, device=device))
    return _normals_from_keys(keys, _counters(n, device), n, dtype).reshape(batch, *shape)


def initial_noise(seed: int, shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Initial latent noise of shape (B, ...) from the seed, in its own key domain (never equal to SDE noise)."""
    return keyed_normals(seed, shape[0], shape[1:], DOMAIN_INITIAL, 0, dtype=dtype, device=device)


def tau_of_lambda(lam: float) -> float:
    """Brownian time tau = 1/(1 + e^lambda) in [0, 1]: 0 at sigma = 0, 1 where alpha = 0."""
    if lam >= 0:
        e = math.exp(-lam)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(lam))


def tree_coordinate(tau: float) -> float:
    """u = a/(a + b), a = tau^(1/C), b = (1 - tau)^(1/C): the tree's coordinate, 1/(1 + e^(lambda/C)) in lambda."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"Brownian time must lie in [0, 1], got {tau}")
    t, r = tau ** (1.0 / TREE_SCALE), (1.0 - tau) ** (1.0 / TREE_SCALE)
    return t / (t + r)


def tau_of_coordinate(u: float) -> float:
    """Inverse of `tree_coordinate`: tau = u^C/(u^C + (1-u)^C)."""
    a, b = u**TREE_SCALE, (1.0 - u) ** TREE_SCALE
    return a / (a + b)


def depth_for(taus: Iterable[float], least: int = DEPTH, most: int = MAX_DEPTH) -> int:
    """The smallest depth >= `least` (and <= `most`) at which the Brownian times `taus` lie in distinct finest
    cells: cell index floor(u 2^depth) of each u = tree_coordinate(tau), 0 < tau < 1."""
    coordinates = {tree_coordinate(tau) for tau in taus if 0.0 < tau < 1.0}
    depth = least
    while depth < most and len({min(int(u * (1 << depth)), (1 << depth) - 1) for u in coordinates}) < len(coordinates):
        depth += 1
    return depth


def _bridge(tau: float, tau_l: float, tau_r: float) -> tuple[float, float]:
    """(p, s): W(tau) = W(tau_l) + p (W(tau_r) - W(tau_l)) + s Z, the Brownian bridge between tau_l and tau_r."""
    width = tau_r - tau_l
    if width <= 0.0:
        return 0.0, 0.0
    tau = min(max(tau, tau_l), tau_r)
    p = (tau - tau_l) / width
    return p, math.sqrt(max(0.0, (tau - tau_l) * (tau_r - tau) / width))


@dataclass(frozen=True)
class Chain:
    """Where Brownian time `tau` sits in the tree: its finest cell and the bisection nodes above it.

    points[n] (n = 1..depth) is the position (in units of 2^-depth) of the level-n node m_n, the midpoint of the
    level-(n-1) cell holding tau, and steps[n] = (position of the cell's left end, of its right end, p, s) of the
    bridge that gives W(m_n); nodes[n] is its node id (nodes[0] = 0 is W(1)). `bridge` = (left, right, p, s)
    of tau in its finest cell, `residual` the node id of that cell's residual normal (2^depth + cell index).
    """

    tau: float
    nodes: tuple[int, ...]
    points: tuple[int, ...]
    steps: tuple[tuple[int, int, float, float], ...]
    bridge: tuple[int, int, float, float]
    residual: int

    @classmethod
    def of(cls, tau: float, depth: int = DEPTH) -> Chain:
        u = tree_coordinate(tau)
        full = 1 << depth
        cell = min(int(u * full), full - 1)
        lo, hi = 0, full
        nodes, points, steps = [0], [full], [(0, full, 1.0, 1.0)]  # W(1) = Z_0 (its entry in steps is unused)
        for level in range(depth):
            mid = (lo + hi) // 2
            p, s = _bridge(tau_of_coordinate(mid / full), tau_of_coordinate(lo / full), tau_of_coordinate(hi / full))
            nodes.append((1 << level) + lo // (full >> level))
            points.append(mid)
            steps.append((lo, hi, p, s))
            lo, hi = (lo, mid) if cell < mid else (mid, hi)
        p, s = _bridge(tau, tau_of_coordinate(lo / full), tau_of_coordinate(hi / full))
        return cls(tau, tuple(nodes), tuple(points), tuple(steps), (lo, hi, p, s), full + cell)

    def coordinate_time(self, point: int) -> float:
        return tau_of_coordinate(point / (1 << (len(self.nodes) - 1)))


def brownian_terms(tau: float, depth: int = DEPTH) -> dict[int, float]:
    """{node id: coefficient} with W(tau) = sum coef * Z_node (host reference of `SeededNoise.brownian`)."""
    chain = Chain.of(tau, depth)  # validates tau
    if tau == 0.0:
        return {}
    known: dict[int, dict[int, float]] = {0: {}}

    def bridge(left: int, right: int, p: float, s: float, node: int) -> dict[int, float]:
        out: dict[int, float] = {}
        for k, c in known[left].items():
            out[k] = out.get(k, 0.0) + (1.0 - p) * c
        for k, c in known[right].items():
            out[k] = out.get(k, 0.0) + p * c
        if s != 0.0:
            out[node] = out.get(node, 0.0) + s
        return out

    known[chain.points[0]] = {0: 1.0}
    for node, point, (left, right, p, s) in zip(chain.nodes[1:], chain.points[1:], chain.steps[1:], strict=True):
        known[point] = bridge(left, right, p, s, node)
    lo, hi, p, s = chain.bridge
    return {k: c for k, c in bridge(lo, hi, p, s, chain.residual).items() if c != 0.0}


def increment_sd(a: Chain, b: Chain) -> float:
    """Exact standard deviation of W(a.tau) - W(b.tau).

    In different finest cells the tree and residuals give the Brownian law exactly: sqrt|tau_a - tau_b|. In one
    cell of width d: W = W_l + p (W_r - W_l) + s Z_cell, so Var = (p_a - p_b)^2 d + (s_a - s_b)^2.
    """
    if a.tau == b.tau:
        return 0.0
    if a.bridge[:2] != b.bridge[:2]:
        return math.sqrt(abs(a.tau - b.tau))
    width = a.coordinate_time(a.bridge[1]) - a.coordinate_time(a.bridge[0])
    return math.sqrt((a.bridge[2] - b.bridge[2]) ** 2 * width + (a.bridge[3] - b.bridge[3]) ** 2)


def _float_bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(value)))[0] & MASK64


class SeededNoise:
    """The samplers' default noise: Brownian increments and Langevin normals, keyed by seed and sample.

    Callable as a k-diffusion noise sampler, `noise(sigma, sigma_next)` (floats or 0-d tensors; tensors on an
    accelerator cost a host sync there, so the samplers pass floats). The samplers call `prepare` once with
    every time they will need, so the loop itself makes no host transfers: the node keys of every prepared time
    reach the device in one transfer, and the loop only slices them.
    """

    def __init__(self, seed: Seed, like: torch.Tensor, schedule: NoiseSchedule, depth: int = DEPTH,
                 dtype: torch.dtype | None = None) -> None:
        self.seed: Seed = tuple(int(s) for s in seed) if isinstance(seed, Sequence) else int(seed)
        self.schedule = schedule
        self.depth = depth
        self.batch = like.shape[0]
        self.sample_shape = tuple(like.shape[1:])
        self.numel = math.prod(self.sample_shape)
        self.device = like.device
        self.dtype = dtype or torch.promote_types(like.dtype, torch.float32)
        self._counters = _counters(self.numel, self.device)
        self._bases = {domain: stream_bases(self.seed, self.batch, domain).to(self.device)
                       for domain in (DOMAIN_BROWNIAN, DOMAIN_LANGEVIN)}
        self._chains: dict[float, Chain] = {}
        self._keys: dict[tuple[int, Any], torch.Tensor] = {}
        self._w_cache: OrderedDict[float, torch.Tensor] = OrderedDict()
        self._tree: dict[int, torch.Tensor] = {}
        self._recent: list[tuple[int, ...]] = []

    # -- preparation: all node keys reach the device in one transfer ---------------------------------------
    def tau(self, sigma: float) -> float:
        return tau_of_lambda(self.schedule.lambda_(float(sigma)))

    def chain(self, tau: float) -> Chain:
        """The tree chain of Brownian time tau (cached)."""
        if tau not in self._chains:
            self._chains[tau] = Chain.of(tau, self.depth)
        return self._chains[tau]

    def prepare(self, increments: Iterable[tuple[float, float]] = (),
                points: Iterable[tuple[float, int]] = ()) -> None:
        """Compute on the host and move to the device at once the keys for these increments (sigma pairs) and
        Langevin points (sigma, iteration). The first preparation, before any time was placed in the tree, deepens
        the tree until its increments' times lie in distinct finest cells (`depth_for`), so that steps are
        independent on any grid; the deeper tree keeps every node of the shallower one."""
        taus = [self.tau(sigma) for pair in increments for sigma in pair]
        if not self._chains:
            self.depth = depth_for(taus, self.depth)
        wanted: list[tuple[int, Any, list[int]]] = []
        for tau in taus:
            if (DOMAIN_BROWNIAN, tau) not in self._keys and tau > 0.0:
                chain = self.chain(tau)
                wanted.append((DOMAIN_BROWNIAN, tau, [*chain.nodes, chain.residual]))
        for sigma, iteration in points:
            key = (float(sigma), int(iteration))
            if (DOMAIN_LANGEVIN, key) not in self._keys:
                wanted.append((DOMAIN_LANGEVIN, key, [self._langevin_node(*key)]))
        self._upload(wanted)

    def _upload(self, wanted: list[tuple[int, Any, list[int]]]) -> None:
        unique = list({(d, k): nodes for d, k, nodes in wanted}.items())
        if not unique:
            return
        unique.sort(key=lambda item: item[0][0])  # one key computation per domain
        flat = torch.tensor([_signed(n) for _, nodes in unique for n in nodes], dtype=torch.int64).to(self.device)
        at = 0
        for domain in dict.fromkeys(d for (d, _), _ in unique):
            group = [(key, nodes) for (d, key), nodes in unique if d == domain]
            size = sum(len(nodes) for _, nodes in group)
            keys = _node_keys(self._bases[domain], flat[at:at + size])
            start = 0
            for key, nodes in group:
                self._keys[(domain, key)] = keys[:, start:start + len(nodes)]
                start += len(nodes)
            at += size

    @staticmethod
    def _langevin_node(sigma: float, iteration: int) -> int:
        return mix64(_float_bits(sigma) ^ mix64(iteration + 1))

    # -- evaluation ------------------------------------------------------------------------------------------
    def _normals(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, K, numel) normals of the K fields `keys` (B, K), generated in chunks of bounded memory."""
        per_chunk = max(1, _CHUNK_ELEMENTS // max(1, self.batch * self.numel))
        if keys.shape[1] <= per_chunk:
            return _normals_from_keys(keys, self._counters, self.numel, self.dtype)
        return torch.cat([_normals_from_keys(keys[:, start:start + per_chunk], self._counters, self.numel, self.dtype)
                          for start in range(0, keys.shape[1], per_chunk)], dim=1)

    def _node_value(self, step: tuple[int, int, float, float], z: torch.Tensor | None) -> torch.Tensor:
        """W at a tree node or a queried time: the bridge between its cell's ends (W(0) = 0) plus s * z."""
        left, right, p, s = step
        w_right = self._tree[right]
        out = torch.mul(w_right, p) if left == 0 else torch.lerp(self._tree[left], w_right, p)
        if s != 0.0:
            assert z is not None
            out.add_(z, alpha=s)
        return out

    def brownian(self, tau: float) -> torch.Tensor:
        """W(tau) per sample, shape (B, numel) (cached for the last few times)."""
        if tau in self._w_cache:
            self._w_cache.move_to_end(tau)
            return self._w_cache[tau]
        if tau == 0.0:
            value = torch.zeros((self.batch, self.numel), dtype=self.dtype, device=self.device)
        else:
            value = self._walk(tau)
        self._w_cache[tau] = value
        while len(self._w_cache) > 4:
            self._w_cache.popitem(last=False)
        return value

    def _walk(self, tau: float) -> torch.Tensor:
        """W(tau) from the tree: the chain's nodes from the first one not kept, and the residual, in one hash."""
        chain = self.chain(tau)
        if (DOMAIN_BROWNIAN, tau) not in self._keys:
            self._upload([(DOMAIN_BROWNIAN, tau, [*chain.nodes, chain.residual])])
        levels = 1 if tau == 1.0 else len(chain.points)  # W(1) is the root itself
        first = next((n for n in range(levels) if chain.points[n] not in self._tree), levels)
        residual = levels > 1 and chain.bridge[3] != 0.0
        keys = self._keys[(DOMAIN_BROWNIAN, tau)]
        z = self._normals(torch.cat([keys[:, first:levels], keys[:, -1:]], dim=1) if residual
                          else keys[:, first:levels]) if residual or first < levels else None
        for j, n in enumerate(range(first, levels)):
            assert z is not None
            point = chain.points[n]
            self._tree[point] = z[:, j].clone() if n == 0 else self._node_value(chain.steps[n], z[:, j])
        self._keep(chain.points[:levels])
        if levels == 1:
            return self._tree[chain.points[0]]
        return self._node_value(chain.bridge, z[:, -1] if residual and z is not None else None)

    def _keep(self, points: tuple[int, ...]) -> None:
        """Keep only the tree nodes on the last two chains (a sweep over decreasing times reuses their tops)."""
        self._recent = [*self._recent[-1:], points]
        keep = {p for chain in self._recent for p in chain}
        for point in [p for p in self._tree if p not in keep]:
            del self._tree[point]

    def increment_sd(self, sigma: float, sigma_next: float) -> float:
        """Exact standard deviation of W(tau(sigma)) - W(tau(sigma_next)) (see `increment_sd`)."""
        return increment_sd(self.chain(self.tau(sigma)), self.chain(self.tau(sigma_next)))

    def increment(self, sigma: float, sigma_next: float) -> torch.Tensor:
        """Standard normal z(sigma, sigma_next) = (W(tau(sigma)) - W(tau(sigma_next))) / sd, shaped like x."""
        a, b = self.tau(sigma), self.tau(sigma_next)
        if a == b:
            raise ValueError(f"no Brownian increment between sigma={sigma} and sigma={sigma_next} (same time): their "
                             "Brownian times 1/(1 + e^lambda) are equal in float64 (VE sigmas above ~1e16 all round "
                             "to 1)")
        sd = self.increment_sd(sigma, sigma_next)
        diff = torch.sub(self.brownian(a), self.brownian(b))
        return diff.mul_(1.0 / sd).reshape(self.batch, *self.sample_shape)

    def langevin(self, sigma: float, iteration: int) -> torch.Tensor:
        """Fresh standard normals for Langevin iteration `iteration` at `sigma` (their own key domain)."""
        key = (float(sigma), int(iteration))
        if (DOMAIN_LANGEVIN, key) not in self._keys:
            self.prepare(points=[key])
        z = self._normals(self._keys[(DOMAIN_LANGEVIN, key)])[:, 0]
        return z.reshape(self.batch, *self.sample_shape)

    def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
        return self.increment(float(sigma), float(sigma_next))


def host_normals(sampler: Callable[[Any, Any], torch.Tensor], sigma: float, sigma_next: float,
                 shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The host noise sampler's draw for (sigma, sigma_next), checked to be a tensor of x's `shape`, on `device` in
    `dtype` (its values are checked with the sampler's result: driver._FiniteGuard)."""
    z = sampler(sigma, sigma_next)
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != tuple(shape):
        raise ValueError(f"noise_sampler returned {described(z)} for (sigma={float(sigma):.6g}, sigma_next="
                         f"{float(sigma_next):.6g}); expected a tensor of x's shape {tuple(shape)}")
    return z.to(device=device, dtype=dtype)


class HostNoise:
    """A host's noise sampler `(sigma, sigma_next) -> tensor like x` for the step noise; Langevin normals come
    from the seeded generator (a noise sampler has no notion of a noise draw at a single sigma)."""

    def __init__(self, sampler: Callable[[Any, Any], torch.Tensor], fallback: SeededNoise) -> None:
        self.sampler = sampler
        self.fallback = fallback

    def prepare(self, increments: Iterable[tuple[float, float]] = (),
                points: Iterable[tuple[float, int]] = ()) -> None:
        self.fallback.prepare(points=points)

    def increment(self, sigma: float, sigma_next: float) -> torch.Tensor:
        seeded = self.fallback
        return host_normals(self.sampler, sigma, sigma_next, (seeded.batch, *seeded.sample_shape), seeded.device,
                            seeded.dtype)

    def langevin(self, sigma: float, iteration: int) -> torch.Tensor:
        return self.fallback.langevin(sigma, iteration)


def resolve_seed(option: Any, extra_args: dict[str, Any] | None) -> Seed:
    """The seed: the `seed` option (one seed or per-image seeds), else extra_args['seed'] (ComfyUI passes it), else
    0."""
    if option is not None:
        return option
    if extra_args and extra_args.get("seed") is not None:
        seed = extra_args["seed"]
        try:
            return as_integer(seed)
        except TypeError:
            raise ValueError(f"extra_args['seed'] must be an integer, got {seed!r}") from None
    return 0


def make_noise(options: dict[str, Any], extra_args: dict[str, Any] | None, like: torch.Tensor,
               schedule: NoiseSchedule) -> SeededNoise | HostNoise:
    """The noise source of one sampler call from its options (`seed`, `noise_sampler`)."""
    seeded = SeededNoise(resolve_seed(options.get("seed"), extra_args), like, schedule)
    sampler = options.get("noise_sampler")
    return seeded if sampler is None else HostNoise(sampler, seeded)
