"""Score distillation (SDS) in sigma space: optimise a clean latent x0 with the gradient lambda(sigma) (x0 - D).

With x_t = alpha x0 + sigma eps and eps_hat = (x_t - alpha D)/sigma, eps_hat - eps = (alpha/sigma)(x0 - D), so every
score-distillation variant is a weight lambda(sigma) times x0 - D(alpha x0 + sigma eps, sigma); the network is
never differentiated and everything runs under torch.inference_mode(). Modes: "sds" (the full gradient), "csd"
(the classifier-free-guidance term only), "sdi" (eps from a DPM-Solver inversion of x0 instead of fresh noise).

The sampler `sample_sds` (registry name dpm_solver_sds) walks the host's sigma grid as the annealing schedule: at
each sigma it calls the model, takes SGD steps x0 <- x0 - lr grad, and re-noises x0 to the next sigma. With
lambda = 1 and lr = 1 the step is x0 <- D, so re-noising with the implied noise eps_hat is DDIM/Euler and with
fresh noise it is the LCM sampler. `sds_refine` is the host-agnostic optimiser for refining a given latent.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import torch

from .driver import Callback, Model, ModelCaller, described, working_dtype
from .inversion import inversion_grid, inversion_plan, invert, ordinary, run_inversion
from .noise import Seed, host_normals, keyed_normals, resolve_seed
from .options import as_integer, parse_options
from .progress import progress_bar
from .schedules import NoiseSchedule, resolve_schedule
from .thresholding import DynamicThreshold

MODES = ("sds", "csd", "sdi")
WEIGHTINGS = ("dreamfusion", "sjc", "uniform")
OPTIMIZERS = ("sgd", "adam")
SAMPLER_NAME = "dpm_solver_sds"
"""Registry name of `sample_sds` (samplers/registry.py), used in its error messages."""
DOMAIN_SDS = 4
"""Key domain of the SDS fresh noise for samplers.noise.keyed_normals (1-3: initial, Brownian, Langevin)."""

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

GuidanceParts = Callable[[], "tuple[torch.Tensor, torch.Tensor, float] | None"]
"""Zero-argument callable: (cond_denoised, uncond_denoised, cfg) of the most recent model call, or None."""

__all__ = [
    "DOMAIN_SDS", "MODES", "OPTIMIZERS", "SAMPLER_NAME", "WEIGHTINGS", "clip_gradient", "count_sds_calls",
    "csd_gradient", "fresh_noise", "fresh_noise_intervals", "implied_noise", "invert", "noised", "sample_sds",
    "sds_gradient", "sds_refine", "sds_weight", "surrogate_loss",
]


def sds_weight(sigma: float, weighting: str, schedule: NoiseSchedule | str) -> float:
    """lambda(sigma): "dreamfusion" alpha sigma/(alpha^2 + sigma^2) (w = sigma_VP^2 times alpha/sigma; VE:
    sigma/(1+sigma^2)), "sjc" alpha/sigma (VE: 1/sigma), "uniform" 1."""
    sched = resolve_schedule(schedule)
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0.0):
        raise ValueError(f"sds_weight: sigma must be a finite number > 0, got {sigma}")
    alpha = sched.alpha(sigma)
    if weighting == "dreamfusion":
        return alpha * sigma / (alpha * alpha + sigma * sigma)
    if weighting == "sjc":
        return alpha / sigma
    if weighting == "uniform":
        return 1.0
    raise ValueError(f"weighting must be one of {', '.join(repr(w) for w in WEIGHTINGS)}, got {weighting!r}")


def noised(x0: torch.Tensor, eps: torch.Tensor, sigma: float, schedule: NoiseSchedule | str) -> torch.Tensor:
    """alpha(sigma) x0 + sigma eps (x0 itself at sigma = 0)."""
    sigma = float(sigma)
    if sigma == 0.0:
        return x0.clone()
    return torch.add(x0 * resolve_schedule(schedule).alpha(sigma), eps, alpha=sigma)


def implied_noise(x_t: torch.Tensor, denoised: torch.Tensor, sigma: float, schedule: NoiseSchedule | str
                  ) -> torch.Tensor:
    """eps_hat = (x_t - alpha D)/sigma, the noise the model's prediction implies (sigma > 0)."""
    alpha = resolve_schedule(schedule).alpha(float(sigma))
    return torch.add(x_t, denoised, alpha=-alpha).mul_(1.0 / float(sigma))


def fresh_noise(seed: Seed, like: torch.Tensor, node: int) -> torch.Tensor:
    """Standard normals shaped like `like`: sample b on its stream (noise.sample_streams), field `node` of
    DOMAIN_SDS."""
    return keyed_normals(seed, like.shape[0], tuple(like.shape[1:]), DOMAIN_SDS, int(node),
                         dtype=like.dtype, device=like.device)


def sds_gradient(x0: torch.Tensor, denoised: torch.Tensor, sigma: float, weighting: str,
                 schedule: NoiseSchedule | str) -> torch.Tensor:
    """lambda(sigma) (x0 - D)."""
    return torch.sub(x0, denoised).mul_(sds_weight(sigma, weighting, schedule))


def csd_gradient(cond_denoised: torch.Tensor, uncond_denoised: torch.Tensor, sigma: float, weighting: str,
                 schedule: NoiseSchedule | str, cfg: float) -> torch.Tensor:
    """The guidance term of the CFG gradient: lambda(sigma) (-cfg) (D_cond - D_uncond).

    With D_cfg = D_uncond + cfg (D_cond - D_uncond), x0 - D_cfg = (x0 - D_uncond) - cfg (D_cond - D_uncond): CSD keeps
    the second part, so a descent step x0 <- x0 - lr grad moves x0 by +lr lambda cfg (D_cond - D_uncond), towards
    what the condition adds (in eps terms: lambda' (eps_cond - eps_uncond), as in the CSD paper).
    """
    return torch.sub(cond_denoised, uncond_denoised).mul_(-float(cfg) * sds_weight(sigma, weighting, schedule))


def surrogate_loss(grad: torch.Tensor) -> torch.Tensor:
    """0.5 mean(g^2) over the batch (0-d, float32 or wider): the loss 0.5 |x0 - sg(x0 - g)|^2 per element, whose
    gradient in x0 is g."""
    return grad.to(torch.promote_types(grad.dtype, torch.float32)).square().mean().mul_(0.5)


def clip_gradient(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Per-sample L2 clip: each grad[b] scaled to norm at most max_norm; max_norm <= 0 returns grad unchanged."""
    if max_norm <= 0.0:
        return grad
    norms = grad.reshape(grad.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (grad.dim() - 1)))
    return grad * (max_norm / norms.clamp_min(max_norm))


class _Step:
    """One optimisation step's gradient: the mode, weighting and clip applied to the latest model call."""

    def __init__(self, mode: str, weighting: str, schedule: NoiseSchedule, grad_clip: float,
                 guidance_parts: GuidanceParts | None, work: torch.dtype) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(repr(w) for w in WEIGHTINGS)}, got {weighting!r}")
        if mode == "csd" and guidance_parts is None:
            raise ValueError("mode 'csd' needs guidance_parts: a zero-argument callable returning (cond_denoised, "
                             "uncond_denoised, cfg) of the latest model call (the CFG guidance term is all CSD uses)")
        if guidance_parts is not None and not callable(guidance_parts):
            raise ValueError(f"guidance_parts must be None or a zero-argument callable, got {guidance_parts!r}")
        self.mode, self.weighting, self.schedule = mode, weighting, schedule
        self.grad_clip, self.guidance_parts, self.work = grad_clip, guidance_parts, work

    def gradient(self, x0: torch.Tensor, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
        if self.mode == "csd":
            assert self.guidance_parts is not None
            parts = self.guidance_parts()
            if parts is None:
                raise ValueError("mode 'csd': guidance_parts returned None for the latest model call (no conditional/"
                                 "unconditional pair: is CFG active, with cfg != 1?)")
            cond, uncond, cfg = _checked_parts(parts, denoised)
            grad = csd_gradient(cond.to(self.work), uncond.to(self.work), sigma, self.weighting, self.schedule, cfg)
        else:
            grad = sds_gradient(x0, denoised, sigma, self.weighting, self.schedule)
        return clip_gradient(grad, self.grad_clip)

    def sgd(self, x0: torch.Tensor, denoised: torch.Tensor, sigma: float, lr: float) -> torch.Tensor:
        """x0 - lr grad; unclipped sds/sdi steps as lerp(x0, D, lr lambda), exact (x0 <- D) at lr lambda = 1."""
        if self.mode != "csd" and self.grad_clip <= 0.0:
            return torch.lerp(x0, denoised, lr * sds_weight(sigma, self.weighting, self.schedule))
        return torch.add(x0, self.gradient(x0, denoised, sigma), alpha=-lr)


def _checked_parts(parts: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """guidance_parts' (cond_denoised, uncond_denoised, cfg), checked: two tensors of the model output's shape and a
    real number (a batch-1 pair was broadcast to every image)."""
    if not isinstance(parts, tuple | list) or len(parts) != 3:
        got = f"{len(parts)} items" if isinstance(parts, tuple | list) else f"a {type(parts).__name__}"
        raise ValueError(f"mode 'csd': guidance_parts must return (cond_denoised, uncond_denoised, cfg), got {got}")
    cond, uncond, cfg = parts
    for label, part in (("cond_denoised", cond), ("uncond_denoised", uncond)):
        if not isinstance(part, torch.Tensor) or part.shape != like.shape:
            raise ValueError(f"mode 'csd': guidance_parts returned {label} of {described(part)}; expected a tensor "
                             f"of the model output's shape {tuple(like.shape)}")
    scalar = isinstance(cfg, numbers.Real) or (isinstance(cfg, torch.Tensor) and cfg.numel() == 1)
    if isinstance(cfg, bool) or not scalar:
        raise ValueError(f"mode 'csd': guidance_parts returned cfg {cfg!r}; expected a real number")
    return cond, uncond, float(cfg)


def _sigma_row(values: list[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).to(device)


# -- the sampler ---------------------------------------------------------------------------------------------

def count_sds_calls(grid: Sequence[float], opts: dict[str, Any]) -> int:
    """Model calls of `sample_sds` on a distinct descending grid: one per optimisation step (inner steps at every
    sigma > 0 of the grid but the last), plus in mode sdi `sds_inversion_steps` per re-noising to a sigma > 0."""
    steps = (len(grid) - 1) * opts["sds_inner_steps"]
    if opts["sds_mode"] != "sdi":
        return steps
    renoise = steps - (1 if grid[-1] == 0.0 else 0)
    return steps + renoise * opts["sds_inversion_steps"]


def fresh_noise_intervals(grid: Sequence[float], inner: int) -> list[tuple[float, float]]:
    """(sigma, sigma_next) queries of a host noise sampler, one per fresh-noise draw of `sample_sds`, in draw order.

    Draws: `inner` per interval (s, t) of the grid, none for the final re-noising to t = 0. They take disjoint
    sub-intervals (equal in sigma) of the grid's positive part, so Brownian increments give independent normals
    and no query leaves [smallest sigma > 0, grid[0]] (the range a host's Brownian tree covers): interval (s, t > 0)
    is cut into `inner` parts, and when the grid ends at 0 the last interval with t > 0 into 2 inner - 1, its
    last inner - 1 parts serving the final interval. With inner = 1 the queries are the grid's intervals (s, t > 0),
    as for SDE samplers. A grid [s, 0] has no interval to cut: its inner - 1 draws are missing from the list.
    """
    positive = [(s, t) for s, t in pairwise(grid) if t > 0.0]
    queries: list[tuple[float, float]] = []
    for i, (s, t) in enumerate(positive):
        last = i == len(positive) - 1 and grid[-1] == 0.0
        parts = 2 * inner - 1 if last else inner
        cuts = [s + (t - s) * k / parts for k in range(parts)] + [t]
        queries += list(pairwise(cuts))
    return queries


def sample_sds(model: Model, x: torch.Tensor, grid: list[float], opts: dict[str, Any], *,
               extra_args: dict[str, Any] | None = None, callback: Callback | None = None,
               disable: bool | None = None, sigma_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SDS along a distinct descending grid (len >= 2) from x noised at grid[0]; returns x at grid[-1].

    At sigma_i (inner step k): D = model(x_t, sigma_i); x0 starts as the first call's D, and every call takes the
    step x0 <- x0 - lr grad (a no-op on that first call except in mode csd); then x_t <- alpha(s) x0 + s eps with
    s = sigma_(i+1) after the last inner step (sigma_i before), eps the implied noise (x_t - alpha D)/sigma_i or
    fresh normals (sds_noise: the host's noise_sampler on the sub-intervals of `fresh_noise_intervals`, else keyed
    normals of the seed), or in mode sdi the inversion of x0 to s.
    """
    schedule: NoiseSchedule = opts["schedule"]
    mode, inner, lr = opts["sds_mode"], opts["sds_inner_steps"], opts["sds_lr"]
    if mode == "csd" and opts["guidance_parts"] is None:
        raise ValueError(f"{SAMPLER_NAME}: option sds_mode 'csd' needs the option guidance_parts (a zero-argument "
                         "callable returning (cond_denoised, uncond_denoised, cfg) of the latest model call), and "
                         "none was given when sampling started: the host must fill it from its CFG hook (ComfyUI's "
                         "DPM-Solver sampler functions do)")
    transform = DynamicThreshold(opts["threshold_quantile"], opts["threshold_max"]) if opts["thresholding"] else None
    total = count_sds_calls(grid, opts)
    seed = resolve_seed(opts["seed"], extra_args)
    noise_sampler = opts["noise_sampler"] if opts["sds_noise"] == "fresh" and mode != "sdi" else None
    queries = fresh_noise_intervals(grid, inner) if noise_sampler is not None else []
    inv_steps = opts["sds_inversion_steps"]
    with torch.inference_mode(), progress_bar(total=total, disable=disable) as bar:
        caller = ModelCaller(model, x, extra_args=extra_args, callback=callback, bar=bar, total=total,
                             transform=transform, sigma_dtype=sigma_dtype)
        step = _Step(mode, opts["sds_weighting"], schedule, opts["sds_grad_clip"], opts["guidance_parts"],
                     caller.work)
        sigma_row = _sigma_row(grid[:-1], sigma_dtype, x.device)
        plans = {}
        if mode == "sdi":
            for s in {t for t in grid if t > 0.0}:
                plans[s] = inversion_plan(inversion_grid(s, schedule, inv_steps), schedule, 2)
            inv_sigmas = {s: _sigma_row([st.sigma for st in p.stages if st.evaluate], sigma_dtype, x.device)
                          for s, p in plans.items()}
        x_t = x.to(caller.work)
        x0: torch.Tensor | None = None
        n = 0
        for i, (s, t) in enumerate(pairwise(grid)):
            for k in range(inner):
                denoised = caller.evaluate(x_t, sigma_row[i], s, i)
                x0 = step.sgd(denoised if x0 is None else x0, denoised, s, lr)  # first call: x0 <- D - lr grad
                caller.notify(x_t, sigma_row[i], denoised, i, {"x0": x0})
                target = t if k == inner - 1 else s
                if target == 0.0:
                    x_t = x0
                elif mode == "sdi":
                    calls = iter(inv_sigmas[target])
                    eps = run_inversion(lambda y, sig, _, i=i, calls=calls, x0=x0: caller(
                        y, next(calls), sig, i, {"x0": x0, "inversion": True}), x0, plans[target], schedule, target)
                    x_t = noised(x0, eps, target, schedule)
                else:
                    if opts["sds_noise"] == "implied":
                        eps = implied_noise(x_t, denoised, s, schedule)
                    elif n < len(queries):
                        eps = host_normals(noise_sampler, *queries[n], x_t.shape, x_t.device, x_t.dtype)
                    else:
                        eps = fresh_noise(seed, x_t, n)
                    x_t = noised(x0, eps, target, schedule)
                n += 1
        caller.finish(x_t)
        out = x_t.to(x.dtype)
    return ordinary(out)


# -- refining a latent ---------------------------------------------------------------------------------------

def _annealing_sigmas(sigmas: Sequence[float] | torch.Tensor, schedule: NoiseSchedule) -> list[float]:
    values = [float(v) for v in (sigmas.reshape(-1).tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if not values:
        raise ValueError("sds_refine: sigmas (the annealing schedule) must not be empty")
    for i, v in enumerate(values):
        if not (math.isfinite(v) and 0.0 < v <= schedule.sigma_max):
            raise ValueError(f"sds_refine: sigmas must lie in (0, {schedule.sigma_max}] (the '{schedule.name}' "
                             f"schedule), but sigmas[{i}] = {v}")
    return values


class _Adam:
    """Adam on x0 (betas ADAM_BETAS, eps ADAM_EPS, bias-corrected): x0 <- x0 - lr m_hat/(sqrt(v_hat) + eps)."""

    def __init__(self) -> None:
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.n = 0

    def step(self, x0: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
        b1, b2 = ADAM_BETAS
        self.n += 1
        self.m = grad * (1 - b1) if self.m is None else self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v = grad * grad * (1 - b2) if self.v is None else self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v / (1 - b2**self.n)).sqrt_().add_(ADAM_EPS)
        return torch.addcdiv(x0, self.m, denom, value=-lr / (1 - b1**self.n))


def sds_refine(model: Model, x0: torch.Tensor, sigmas: Sequence[float] | torch.Tensor,
               schedule: NoiseSchedule | str, *, extra_args: dict[str, Any] | None = None, mode: str = "sds",
               weighting: str = "dreamfusion", lr: float = 0.05, optimizer: str = "sgd", inner_steps: int = 1,
               grad_clip: float = 0.0, seed: int = 0, guidance_parts: GuidanceParts | None = None,
               callback: Callback | None = None, inversion_steps: int = 4, disable: bool | None = True
               ) -> torch.Tensor:
    """Refine x0 by len(sigmas) * inner_steps steps of score distillation; sigmas is the annealing schedule.

    Step n at sigma: eps = fresh keyed normals (node n; mode sdi: the order-2 DPM-Solver inversion of x0 to sigma,
    `inversion_steps` model calls), D = model(alpha x0 + sigma eps, sigma), grad = lambda(sigma)(x0 - D) (csd: the
    guidance term), clipped per sample to grad_clip, then an SGD (x0 <- x0 - lr grad) or Adam step. No gradient
    flows through the network; runs under torch.inference_mode(). The callback gets each model call; an
    optimisation step's payload adds "x0" (the latent after the step), "grad" (the clipped gradient the step used)
    and "loss" (`surrogate_loss(grad)`, a 0-d tensor on x0's device: no host sync); the calls of an sdi inversion
    carry "x0" (the latent being inverted) and "inversion": True. Returns the refined x0 in its dtype.
    """
    sched = resolve_schedule(schedule)
    try:
        seed = as_integer(seed)  # one seed: the batch's images use seed, seed + 1, ...
    except TypeError:
        raise ValueError(f"sds_refine: seed must be an integer, got {seed!r}") from None
    opts = parse_options("sds_refine", ("sds_lr", "sds_inner_steps", "sds_grad_clip", "sds_inversion_steps", "seed"),
                         {"sds_lr": lr, "sds_inner_steps": inner_steps, "sds_grad_clip": grad_clip,
                          "sds_inversion_steps": inversion_steps, "seed": seed})
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"sds_refine: optimizer must be one of {', '.join(repr(o) for o in OPTIMIZERS)}, "
                         f"got {optimizer!r}")
    values = _annealing_sigmas(sigmas, sched)
    per_step = 1 + (opts["sds_inversion_steps"] if mode == "sdi" else 0)
    total = len(values) * opts["sds_inner_steps"] * per_step
    with torch.inference_mode(), progress_bar(total=total, disable=disable) as bar:
        caller = ModelCaller(model, x0, extra_args=extra_args, callback=callback, bar=bar, total=total,
                             sigma_dtype=working_dtype(x0.dtype))
        try:
            step = _Step(mode, weighting, sched, opts["sds_grad_clip"], guidance_parts, caller.work)
        except ValueError as err:
            raise ValueError(f"sds_refine: {err}") from None
        adam = _Adam() if optimizer == "adam" else None
        distinct_sigmas = sorted(set(values))
        sigma_rows = dict(zip(distinct_sigmas, _sigma_row(distinct_sigmas, caller.sigma_dtype, x0.device),
                              strict=True))
        plans = {s: inversion_plan(inversion_grid(s, sched, opts["sds_inversion_steps"]), sched, 2)
                 for s in distinct_sigmas} if mode == "sdi" else {}
        x = x0.to(caller.work)
        n = 0
        for i, s in enumerate(values):
            for _ in range(opts["sds_inner_steps"]):
                if mode == "sdi":
                    eps = run_inversion(lambda y, sig, _, i=i, x=x: caller(
                        y, caller.sigma_tensor(sig), sig, i, {"x0": x, "inversion": True}), x, plans[s], sched, s)
                else:
                    eps = fresh_noise(opts["seed"], x, n)
                x_t = noised(x, eps, s, sched)
                denoised = caller.evaluate(x_t, sigma_rows[s], s, i)
                grad = step.gradient(x, denoised, s)
                x = torch.add(x, grad, alpha=-opts["sds_lr"]) if adam is None else adam.step(x, grad, opts["sds_lr"])
                caller.notify(x_t, sigma_rows[s], denoised, i, {"x0": x, "grad": grad, "loss": surrogate_loss(grad)}
                              if caller.callback is not None else None)
                n += 1
        caller.finish(x)
        out = x.to(x0.dtype)
    return ordinary(out)


def parse_sds_options(name: str, defaults: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The sampler's options, validated one by one. Mode csd is accepted without guidance_parts here (hosts fill
    that option from their CFG hook when sampling starts); `sample_sds` reports it missing before any model call."""
    return parse_options(name, defaults, options)
