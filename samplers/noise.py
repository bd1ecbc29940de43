"""Seeded, device-independent noise for the stochastic samplers: keyed normals and a Brownian path.

Keyed normals. A normal is a pure function of (stream, domain, node, element): the stream is `seed + sample
index` (so image b of a batch equals image 0 generated alone with seed + b, the WebUI's per-image seeds), the
domain separates uses (initial latent, Brownian path, Langevin corrector), the node names one field within a
domain, and the element is the position within the sample. The integers are mixed with the SplitMix64
finaliser, written with torch int64 operations (wrap-around multiplication, logical shifts as arithmetic
shift plus mask), so the same integers come out on any device, with no host round trip; the two 32-bit halves
of each 64-bit hash give two 23-bit uniforms (exact in every float dtype) and one Box-Muller pair of normals,
computed in the caller's floating dtype (normals are bounded by sqrt(2 ln 2^23) = 5.6). Results on two
devices (or in float32 vs float64) agree up to the rounding of log/sqrt/cos/sin.

Brownian path. W is a standard Brownian motion on tau in [0, 1], tau = 1/(1 + e^lambda) = sigma/(alpha + sigma)
(tau = sigma for flow models, sigma/(1+sigma) for VE), built by the Levy-Ciesielski (midpoint-displacement)
construction to DEPTH dyadic levels: W(tau) = Z_0 tau + sum_n Z_(n,k) 2^(-n/2) min(u, 1-u), with k the level-n
cell holding tau and u its position in the cell. Every Z is a keyed normal whose node id is the heap index of
its dyadic interval, so W(tau) is one fixed function of (seed, sample, tau): any grid (coarse, fine, split in
two calls) sees the same path. The step noise is z(s, t) = (W(tau_s) - W(tau_t)) / sd, with sd the exact
standard deviation of that increment of the DEPTH-level path (a host-side sum of squared coefficients), so z is
exactly N(0, 1) and increments over disjoint intervals are independent. tau depends on lambda only, so a
schedule written in another scaling (VP vs VE) gets the same noise.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

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

DEPTH = 20
"""Dyadic levels of the Brownian path: resolution 2^-20 ~ 1e-6 in tau; finer structure is linear."""

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


def _lsr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 lanes (torch's >> is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix64_tensor(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 lanes, wrap-around arithmetic; equals `mix64` bit for bit. Works in place
    on `z` (pass a tensor you own)."""
    t = torch.empty_like(z)
    for shift, mul in ((30, _MUL1), (27, _MUL2)):
        torch.bitwise_right_shift(z, shift, out=t).bitwise_and_((1 << (64 - shift)) - 1)
        z.bitwise_xor_(t).mul_(_signed(mul))
    torch.bitwise_right_shift(z, 31, out=t).bitwise_and_((1 << 33) - 1)
    return z.bitwise_xor_(t)


def stream_key(seed: int, sample: int, domain: int) -> int:
    """64-bit key of one sample's stream in a domain: stream = seed + sample index."""
    stream = (int(seed) + int(sample)) & MASK64
    return mix64(mix64(stream + GOLDEN) ^ ((domain * 0xD1B54A32D192ED03) & MASK64))


def node_key(base: int, node: int) -> int:
    """64-bit key of field `node` within a stream key (host reference of the device computation)."""
    return mix64((base + mix64((node * GOLDEN + 0x632BE59BD9B4E019) & MASK64)) & MASK64)


def _node_keys(bases: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """(B, K) int64 keys node_key(bases[b], nodes[k]) computed on the device."""
    salt = mix64_tensor(nodes * _signed(GOLDEN) + _signed(0x632BE59BD9B4E019))
    return mix64_tensor(bases[:, None] + salt[None, :])


def _normals_from_keys(keys: torch.Tensor, counters: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """(*keys.shape, n) standard normals: element pair m of field `key` hashes key + m*GOLDEN.

    The 64-bit hash is read as two 32-bit lanes (little-endian, as on every CPU and GPU torch runs on); the
    low 23 bits of each become the mantissa of a float32 in [1, 2), giving uniforms u in [0, 1) that are exact
    in any float dtype. Box-Muller: r = sqrt(-2 log(1 - u_even)), normals r cos(2 pi u_odd), r sin(2 pi u_odd).
    """
    z = mix64_tensor(keys[..., None] + counters)
    lanes = z.view(torch.int32).bitwise_and_(0x7FFFFF).bitwise_or_(0x3F800000)
    u = lanes.view(torch.float32).to(dtype).sub_(1.0).unflatten(-1, (-1, 2))
    radius = torch.log1p(-u[..., 0]).mul_(-2.0).sqrt_()
    angle = u[..., 1].mul_(2.0 * math.pi)
    out = torch.empty((*angle.shape, 2), dtype=dtype, device=angle.device)
    torch.cos(angle, out=out[..., 0]).mul_(radius)
    torch.sin(angle, out=out[..., 1]).mul_(radius)
    return out.reshape(*keys.shape, -1)[..., :n]


def _counters(n: int, device: torch.device) -> torch.Tensor:
    pairs = (n + 1) // 2
    return torch.arange(pairs, dtype=torch.int64, device=device) * _signed(GOLDEN)


def keyed_normals(seed: int, batch: int, shape: Sequence[int], domain: int, node: int, *,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normals of shape (batch, *shape): field `node` of `domain`, sample b on stream seed + b."""
    device = torch.device(device)
    n = math.prod(shape)
    bases = torch.tensor([_signed(stream_key(seed, b, domain)) for b in range(batch)], dtype=torch.int64)
    keys = _node_keys(bases.to(device), torch.tensor([node], dtype=torch.int64, device=device))
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


def brownian_terms(tau: float, depth: int = DEPTH) -> dict[int, float]:
    """{node id: coefficient} with W(tau) = sum coef * Z_node (zero coefficients left out).

    Node 0 carries W(1) (coefficient tau); node 2^n + k is the midpoint displacement of dyadic cell k of level n.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"Brownian time must lie in [0, 1], got {tau}")
    terms = {0: tau} if tau > 0.0 else {}
    for level in range(depth):
        scaled = tau * (1 << level)
        cell = min(int(scaled), (1 << level) - 1)
        u = scaled - cell
        coef = 2.0 ** (-level / 2) * min(u, 1.0 - u)
        if coef != 0.0:
            terms[(1 << level) + cell] = coef
    return terms


def increment_sd(a: dict[int, float], b: dict[int, float]) -> float:
    """Exact standard deviation of W(a) - W(b) for the term dicts of two times."""
    return math.sqrt(sum((a.get(k, 0.0) - b.get(k, 0.0)) ** 2 for k in a.keys() | b.keys()))


def _float_bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(value)))[0] & MASK64


class SeededNoise:
    """The samplers' default noise: Brownian increments and Langevin normals, keyed by seed and sample.

    Callable as a k-diffusion noise sampler, `noise(sigma, sigma_next)` (floats or 0-d tensors; tensors on an
    accelerator cost a host sync there, so the samplers pass floats). The samplers call `prepare` once with
    every time they will need, so the loop itself makes no host transfers.
    """

    def __init__(self, seed: int, like: torch.Tensor, schedule: NoiseSchedule, depth: int = DEPTH,
                 dtype: torch.dtype | None = None) -> None:
        self.seed = int(seed)
        self.schedule = schedule
        self.depth = depth
        self.batch = like.shape[0]
        self.sample_shape = tuple(like.shape[1:])
        self.numel = math.prod(self.sample_shape)
        self.device = like.device
        self.dtype = dtype or torch.promote_types(like.dtype, torch.float32)
        self._counters = _counters(self.numel, self.device)
        self._bases = {domain: torch.tensor([_signed(stream_key(self.seed, b, domain)) for b in range(self.batch)],
                                            dtype=torch.int64).to(self.device)
                       for domain in (DOMAIN_BROWNIAN, DOMAIN_LANGEVIN)}
        self._terms: dict[float, dict[int, float]] = {}
        self._keys: dict[tuple[int, Any], torch.Tensor] = {}
        self._w_cache: OrderedDict[float, torch.Tensor] = OrderedDict()

    # -- preparation: all node keys reach the device in one transfer ---------------------------------------
    def tau(self, sigma: float) -> float:
        return tau_of_lambda(self.schedule.lambda_(float(sigma)))

    def prepare(self, increments: Iterable[tuple[float, float]] = (),
                points: Iterable[tuple[float, int]] = ()) -> None:
        """Compute on the host and move to the device at once the keys for these increments (sigma pairs) and
        Langevin points (sigma, iteration)."""
        wanted: list[tuple[int, Any, list[int]]] = []
        for pair in increments:
            for sigma in pair:
                tau = self.tau(sigma)
                if (DOMAIN_BROWNIAN, tau) not in self._keys and tau > 0.0:
                    terms = self._terms.setdefault(tau, brownian_terms(tau, self.depth))
                    wanted.append((DOMAIN_BROWNIAN, tau, list(terms)))
        for sigma, iteration in points:
            key = (float(sigma), int(iteration))
            if (DOMAIN_LANGEVIN, key) not in self._keys:
                wanted.append((DOMAIN_LANGEVIN, key, [self._langevin_node(*key)]))
        self._upload(wanted)

    def _upload(self, wanted: list[tuple[int, Any, list[int]]]) -> None:
        unique = list({(d, k): nodes for d, k, nodes in wanted}.items())
        if not unique:
            return
        flat = torch.tensor([_signed(n) for _, nodes in unique for n in nodes], dtype=torch.int64).to(self.device)
        at = 0
        for (domain, key), nodes in unique:
            self._keys[(domain, key)] = _node_keys(self._bases[domain], flat[at:at + len(nodes)])
            at += len(nodes)

    @staticmethod
    def _langevin_node(sigma: float, iteration: int) -> int:
        return mix64(_float_bits(sigma) ^ mix64(iteration + 1))

    # -- evaluation ------------------------------------------------------------------------------------------
    def _fields(self, keys: torch.Tensor, coefs: Sequence[float]) -> torch.Tensor:
        """sum_k coefs[k] * normals(keys[:, k]), accumulated level by level in a fixed order."""
        out = torch.zeros((self.batch, self.numel), dtype=self.dtype, device=self.device)
        per_chunk = max(1, _CHUNK_ELEMENTS // max(1, self.batch * self.numel))
        for start in range(0, keys.shape[1], per_chunk):
            z = _normals_from_keys(keys[:, start:start + per_chunk], self._counters, self.numel, self.dtype)
            for j in range(z.shape[1]):
                out.add_(z[:, j], alpha=coefs[start + j])
        return out

    def brownian(self, tau: float) -> torch.Tensor:
        """W(tau) per sample, shape (B, numel) (cached for the last few times)."""
        if tau in self._w_cache:
            self._w_cache.move_to_end(tau)
            return self._w_cache[tau]
        if tau == 0.0:
            value = torch.zeros((self.batch, self.numel), dtype=self.dtype, device=self.device)
        else:
            if (DOMAIN_BROWNIAN, tau) not in self._keys:
                self._terms.setdefault(tau, brownian_terms(tau, self.depth))
                self._upload([(DOMAIN_BROWNIAN, tau, list(self._terms[tau]))])
            value = self._fields(self._keys[(DOMAIN_BROWNIAN, tau)], list(self._terms[tau].values()))
        self._w_cache[tau] = value
        while len(self._w_cache) > 4:
            self._w_cache.popitem(last=False)
        return value

    def increment(self, sigma: float, sigma_next: float) -> torch.Tensor:
        """Standard normal z(sigma, sigma_next) = (W(tau(sigma)) - W(tau(sigma_next))) / sd, shaped like x."""
        a, b = self.tau(sigma), self.tau(sigma_next)
        if a == b:
            raise ValueError(f"no Brownian increment between sigma={sigma} and sigma={sigma_next} (same time)")
        ta = self._terms.setdefault(a, brownian_terms(a, self.depth)) if a > 0 else {}
        tb = self._terms.setdefault(b, brownian_terms(b, self.depth)) if b > 0 else {}
        diff = self.brownian(a) - self.brownian(b)
        return diff.mul_(1.0 / increment_sd(ta, tb)).reshape(self.batch, *self.sample_shape)

    def langevin(self, sigma: float, iteration: int) -> torch.Tensor:
        """Fresh standard normals for Langevin iteration `iteration` at `sigma` (their own key domain)."""
        key = (float(sigma), int(iteration))
        if (DOMAIN_LANGEVIN, key) not in self._keys:
            self.prepare(points=[key])
        z = self._fields(self._keys[(DOMAIN_LANGEVIN, key)], [1.0])
        return z.reshape(self.batch, *self.sample_shape)

    def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
        return self.increment(float(sigma), float(sigma_next))


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
        z = self.sampler(sigma, sigma_next)
        return z.to(device=self.fallback.device, dtype=self.fallback.dtype)

    def langevin(self, sigma: float, iteration: int) -> torch.Tensor:
        return self.fallback.langevin(sigma, iteration)


def resolve_seed(option: Any, extra_args: dict[str, Any] | None) -> int:
    """The seed: the `seed` option, else extra_args['seed'] (ComfyUI passes it), else 0."""
    if option is not None:
        return int(option)
    if extra_args and extra_args.get("seed") is not None:
        return int(extra_args["seed"])
    return 0


def make_noise(options: dict[str, Any], extra_args: dict[str, Any] | None, like: torch.Tensor,
               schedule: NoiseSchedule) -> SeededNoise | HostNoise:
    """The noise source of one sampler call from its options (`seed`, `noise_sampler`)."""
    seeded = SeededNoise(resolve_seed(options.get("seed"), extra_args), like, schedule)
    sampler = options.get("noise_sampler")
    return seeded if sampler is None else HostNoise(sampler, seeded)
