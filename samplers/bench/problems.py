"""Analytic test problems with exact denoisers for sigma-space samplers.

Conventions (k-diffusion style): a model is called ``model(x, sigma_vec, **extra_args) -> D`` with
``x`` of shape ``(B, ...)`` and ``sigma_vec`` of shape ``(B,)``; ``D`` is the data prediction E[x0 | x].

Families ("schedules"):

* ``"ve"``:   x = x0 + sigma * eps,             alpha(sigma) = 1;
* ``"flow"``: x = (1 - sigma) * x0 + sigma * eps, alpha(sigma) = 1 - sigma, sigma in (0, 1].

In both families the probability-flow ODE is dx/dsigma = (x - D(x, sigma)) / sigma.

This module imports with torch only; numpy/scipy are imported lazily where needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Family = Literal["ve", "flow"]
Model = Callable[..., torch.Tensor]

SD_SIGMA_MIN, SD_SIGMA_MAX = 0.029, 14.6
"""Stable Diffusion's sigma range (SD1.x/SDXL's 1000-step table, rounded): the VE problems' and the timing grids'."""
SEED = 20240611  # fixed seed: every problem is identical across runs and machines


def alpha_of(sigma: torch.Tensor, family: str) -> torch.Tensor:
    """Signal scale alpha(sigma): 1 for "ve", 1 - sigma for "flow"."""
    if family == "ve":
        return torch.ones_like(sigma)
    if family == "flow":
        return 1.0 - sigma
    raise ValueError(f"unknown family {family!r} (expected 've' or 'flow')")


def _sigma_column(sigma_vec: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Turn a scalar / (B,) sigma into a (B, 1) tensor with x's dtype and device."""
    s = torch.as_tensor(sigma_vec, dtype=like.dtype, device=like.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(batch)
    if s.numel() != batch:
        raise ValueError(f"sigma_vec has {s.numel()} entries, expected 1 or batch size {batch}")
    return s.reshape(batch, 1)


@dataclass
class GaussianMixture:
    """Diagonal Gaussian mixture p(x0) = sum_k w_k N(x0; mu_k, diag(s_k^2)) with an exact denoiser.

    ``means`` and ``stds`` are (K, d), ``weights`` is (K,) (normalised on construction), all stored as
    float64 (pass float64 tensors or Python lists: float32 inputs carry ~1e-8 rounding into the
    parameters); ``family`` selects alpha(sigma). Instances are callable as models.
    """

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor
    family: str = "ve"

    def __post_init__(self) -> None:
        self.means = torch.as_tensor(self.means, dtype=torch.float64).clone()
        self.stds = torch.as_tensor(self.stds, dtype=torch.float64).clone()
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64).clone().reshape(-1)
        if self.means.ndim == 1:  # a single component given as (d,)
            self.means = self.means[None]
        if self.stds.ndim == 1:
            self.stds = self.stds[None]
        self.stds = self.stds.expand_as(self.means).clone()
        if self.means.ndim != 2 or self.weights.shape[0] != self.means.shape[0]:
            raise ValueError("means/stds must be (K, d) and weights (K,)")
        if not bool((self.stds > 0).all()):
            raise ValueError("all component stds must be > 0")
        if not bool((self.weights > 0).all()):
            raise ValueError("all weights must be > 0")
        self.weights = self.weights / self.weights.sum()
        alpha_of(torch.zeros(()), self.family)  # validates the family name

    @property
    def dim(self) -> int:
        """Data dimension d."""
        return int(self.means.shape[1])

    @property
    def n_components(self) -> int:
        """Number of mixture components K."""
        return int(self.means.shape[0])

    def mean(self) -> torch.Tensor:
        """Mixture mean sum_k w_k mu_k, shape (d,), float64."""
        return self.weights @ self.means

    def denoise(self, x: torch.Tensor, sigma_vec: torch.Tensor | float) -> torch.Tensor:
        """Exact posterior mean E[x0 | x] for x = alpha*x0 + sigma*eps, computed in x's dtype.

        Per component: x ~ N(alpha mu_k, alpha^2 s_k^2 + sigma^2), and
        D_k = mu_k + alpha s_k^2 / (alpha^2 s_k^2 + sigma^2) * (x - alpha mu_k);
        D = sum_k r_k D_k with responsibilities r_k = softmax_k(log w_k + log N(x; alpha mu_k, var_k)).
        Finite at alpha = 0 (returns the mixture mean) and at sigma = 0 (returns x, since s_k > 0).
        """
        batch = x.shape[0]
        shape = x.shape
        xf = x.reshape(batch, -1)
        if xf.shape[1] != self.dim:
            raise ValueError(f"x has {xf.shape[1]} features per row, mixture dimension is {self.dim}")
        dt, dev = x.dtype, x.device
        sigma = _sigma_column(sigma_vec, batch, xf)  # (B, 1)
        alpha = alpha_of(sigma, self.family)  # (B, 1)
        mu = self.means.to(dtype=dt, device=dev)  # (K, d)
        s2 = self.stds.to(dtype=dt, device=dev) ** 2  # (K, d)
        logw = self.weights.to(dtype=dt, device=dev).log()  # (K,)

        a = alpha[:, :, None]  # (B, 1, 1)
        var = a * a * s2[None] + (sigma * sigma)[:, :, None]  # (B, K, d)
        resid = xf[:, None, :] - a * mu[None]  # (B, K, d)
        loglik = -0.5 * ((resid * resid) / var + var.log()).sum(-1)  # (B, K); 2*pi constant dropped
        resp = torch.softmax(loglik + logw[None], dim=-1)  # (B, K)
        d_k = mu[None] + (a * s2[None] / var) * resid  # (B, K, d)
        out = (resp[:, :, None] * d_k).sum(1)
        return out.reshape(shape)

    def __call__(self, x: torch.Tensor, sigma_vec: torch.Tensor | float, **extra_args: Any) -> torch.Tensor:
        """Model interface: ``model(x, sigma_vec, **extra_args) -> D``; extra args are ignored."""
        return self.denoise(x, sigma_vec)

    def sample_data(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Draw n samples x0 ~ mixture, shape (n, d): pick k ~ w, then x0 = mu_k + s_k * z."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k] * z).to(dtype)

    def prior_noise(
        self,
        n: int,
        sigma_max: float,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Exact draws of x at sigma_max: x = alpha(sigma_max) * x0 + sigma_max * eps, with x0 ~ data."""
        x0 = self.sample_data(n, generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        alpha = float(alpha_of(torch.tensor(float(sigma_max), dtype=torch.float64), self.family))
        return (alpha * x0 + float(sigma_max) * eps).to(dtype)


@dataclass
class GuidedMixture:
    """Classifier-free guidance on exact denoisers: D = D_u + scale * (D_c - D_u).

    ``uncond`` and ``cond`` share components (typically differ only in weights) and family.
    """

    uncond: GaussianMixture
    cond: GaussianMixture
    scale: float

    def __post_init__(self) -> None:
        if self.uncond.family != self.cond.family or self.uncond.dim != self.cond.dim:
            raise ValueError("uncond and cond mixtures must share family and dimension")

    @property
    def family(self) -> str:
        """Shared family of both mixtures."""
        return self.uncond.family

    @property
    def dim(self) -> int:
        """Shared data dimension d."""
        return self.uncond.dim

    def denoise(self, x: torch.Tensor, sigma_vec: torch.Tensor | float) -> torch.Tensor:
        """Guided prediction D_u + scale * (D_c - D_u)."""
        d_u = self.uncond.denoise(x, sigma_vec)
        d_c = self.cond.denoise(x, sigma_vec)
        return d_u + self.scale * (d_c - d_u)

    def __call__(self, x: torch.Tensor, sigma_vec: torch.Tensor | float, **extra_args: Any) -> torch.Tensor:
        """Model interface; extra args are ignored."""
        return self.denoise(x, sigma_vec)


def gaussian_exact_flow(
    x_start: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    mean: torch.Tensor | float,
    std: torch.Tensor | float,
    family: str,
) -> torch.Tensor:
    """Exact probability-flow ODE solution for data x0 ~ N(mu, diag(s^2)), elementwise per dimension.

    x(sigma) = alpha mu + sqrt(alpha^2 s^2 + sigma^2) * (x_start - alpha_0 mu) / sqrt(alpha_0^2 s^2 + s0^2)
    with alpha = alpha(sigma), alpha_0 = alpha(sigma_start), s0 = sigma_start: the standardised
    residual (x - alpha mu) / sqrt(alpha^2 s^2 + sigma^2) is conserved along the flow.
    ``mean``/``std`` broadcast against one row of ``x_start`` (``x_start.shape[1:]`` or flattened (d,)).
    """
    batch = x_start.shape[0]
    xf = x_start.reshape(batch, -1)
    dt, dev = xf.dtype, xf.device
    mu = torch.as_tensor(mean, dtype=dt, device=dev).reshape(-1) if torch.is_tensor(mean) else mean
    s = torch.as_tensor(std, dtype=dt, device=dev).reshape(-1) if torch.is_tensor(std) else std
    s0 = torch.tensor(float(sigma_start), dtype=dt, device=dev)
    s1 = torch.tensor(float(sigma_end), dtype=dt, device=dev)
    a0, a1 = alpha_of(s0, family), alpha_of(s1, family)
    std0 = torch.sqrt(a0 * a0 * s * s + s0 * s0)
    std1 = torch.sqrt(a1 * a1 * s * s + s1 * s1)
    out = a1 * mu + std1 * (xf - a0 * mu) / std0
    return out.reshape(x_start.shape)


def reference_solution(
    model: Model,
    x_start: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    extra_args: dict[str, Any] | None = None,
) -> torch.Tensor:
    """High-accuracy solution of dx/dsigma = (x - D(x, sigma)) / sigma from sigma_start to sigma_end.

    Requires ``sigma_end > 0``: the ODE is singular at sigma = 0, so a sampler ending at 0 should be
    compared by integrating to its last positive sigma and letting the caller apply the final
    denoise ``D(x, sigma_last)`` itself.

    Integration variable: u = log(sigma) for both families, giving dx/du = x - D(x, e^u). In sigma the
    right-hand side scales like 1/sigma, so DOP853 would need geometrically shrinking steps as sigma
    falls (14.6 -> 0.029 is a factor 500); in u the dynamics have O(1) rates over the whole range.
    Measured on ``ve_mixture`` (B=64, d=16, tol 1e-12): ~700 RHS calls in u versus ~1100 in sigma,
    same answer to ~5e-12.
    For "flow" the start sigma = 1 is just u = 0 (no singularity there; alpha = 0 is handled by the
    model), and near sigma -> 0 flow behaves like VE, where log sigma is the natural clock.

    The whole batch is flattened into one state vector (one model call per RHS evaluation) and solved
    with scipy's DOP853 in float64. Returns a float64 tensor shaped like ``x_start``.
    """
    import numpy as np
    from scipy.integrate import solve_ivp

    if not (sigma_start > 0 and sigma_end > 0):
        raise ValueError("reference_solution requires sigma_start > 0 and sigma_end > 0")
    extra = extra_args or {}
    shape = tuple(x_start.shape)
    batch = shape[0]
    device = x_start.device
    y0 = x_start.detach().to(dtype=torch.float64).reshape(-1).cpu().numpy()
    if sigma_start == sigma_end:
        return torch.as_tensor(y0, dtype=torch.float64).reshape(shape).to(device)

    def rhs(u: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).reshape(shape).to(device)
        sig = torch.full((batch,), math.exp(u), dtype=torch.float64, device=device)
        with torch.no_grad():
            d = model(x, sig, **extra).to(torch.float64)
        return (x - d).reshape(-1).cpu().numpy()

    sol = solve_ivp(
        rhs,
        (math.log(sigma_start), math.log(sigma_end)),
        y0,
        method="DOP853",
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:
        raise RuntimeError(f"reference_solution: solve_ivp failed: {sol.message}")
    return torch.as_tensor(sol.y[:, -1].copy(), dtype=torch.float64).reshape(shape).to(device)


@dataclass
class Problem:
    """A benchmark problem: an exact model plus its noise range.

    ``data`` is the mixture whose noised samples start the sampler (for guided problems the
    conditional mixture); ``shift`` is the flow time-shift the 'simple' grid should use.
    """

    name: str
    family: str
    model: Model
    sigma_max: float
    sigma_min: float
    dim: int
    data: GaussianMixture | None = None
    shift: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def prior_noise(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Exact draws of x at sigma_max (seeded with SEED + 1 when no generator is given)."""
        if self.data is None:
            raise ValueError("problem has no data mixture")
        if generator is None:
            generator = torch.Generator().manual_seed(SEED + 1)
        return self.data.prior_noise(n, self.sigma_max, generator, dtype=dtype)

    @property
    def flow_shift(self) -> float:
        """The time shift of a flow problem's grids, sigma = s t / (1 + (s - 1) t); a flow problem must have one."""
        if self.shift is None:
            raise ValueError(f"problem {self.name}: a {self.family} problem has no flow time shift")
        return self.shift


_STD_LEVELS: Sequence[float] = (0.1, 0.2, 0.3, 0.45, 0.6)
_MEAN_NORMS: Sequence[float] = (1.0, 1.25, 1.5, 1.75, 2.0)
_WEIGHTS: Sequence[float] = (0.3, 0.25, 0.2, 0.15, 0.1)
_COND_WEIGHTS: Sequence[float] = (0.02, 0.6, 0.02, 0.34, 0.02)  # favours components 1 and 3


def _mixture_params(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed 5-component layout: random unit directions scaled to norms 1..2, stds 0.1..0.6 per comp.

    Each component's per-dimension std is its level times a factor in [0.7, 1.3].
    """
    g = torch.Generator().manual_seed(SEED)
    k = len(_MEAN_NORMS)
    dirs = torch.randn(k, dim, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    means = dirs * torch.tensor(_MEAN_NORMS, dtype=torch.float64)[:, None]
    jitter = 0.7 + 0.6 * torch.rand(k, dim, generator=g, dtype=torch.float64)
    stds = torch.tensor(_STD_LEVELS, dtype=torch.float64)[:, None] * jitter
    return means, stds


def ve_mixture(cfg_scale: float | None = None, dim: int = 16) -> Problem:
    """VE mixture problem on Stable Diffusion's range sigma in [0.029, 14.6]; optional CFG.

    With ``cfg_scale`` the model is GuidedMixture(uncond, cond, cfg_scale) where ``cond`` has the same
    components but most weight on two of them.
    """
    means, stds = _mixture_params(dim)
    uncond = GaussianMixture(means, stds, torch.tensor(_WEIGHTS, dtype=torch.float64), family="ve")
    if cfg_scale is None:
        return Problem("ve_mixture", "ve", uncond, SD_SIGMA_MAX, SD_SIGMA_MIN, dim, data=uncond)
    cond = GaussianMixture(means, stds, torch.tensor(_COND_WEIGHTS, dtype=torch.float64), family="ve")
    model = GuidedMixture(uncond, cond, float(cfg_scale))
    return Problem(f"ve_mixture_cfg{cfg_scale:g}", "ve", model, SD_SIGMA_MAX, SD_SIGMA_MIN, dim, data=cond)


def flow_mixture(dim: int = 16, shift: float = 3.0) -> Problem:
    """Rectified-flow mixture problem, sigma in (0, 1] (sigma_max = 1 is pure noise), time shift 3.

    sigma_min = shift*t/(1 + (shift - 1)*t) at t = 1/1000, the smallest sigma of a shifted
    1000-step training grid; the sampler's 'simple' grid decides the actual schedule.
    """
    means, stds = _mixture_params(dim)
    mix = GaussianMixture(means, stds, torch.tensor(_WEIGHTS, dtype=torch.float64), family="flow")
    t = 1.0 / 1000.0
    sigma_min = shift * t / (1.0 + (shift - 1.0) * t)
    return Problem("flow_mixture", "flow", mix, 1.0, sigma_min, dim, data=mix, shift=float(shift))
