"""Stand-in of `modules/sd_schedulers.py`: the Scheduler record, the list per fork and the lookup map.

Only uniform, karras and exponential compute sigmas here; the other entries exist for their names.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from standin_flavor import FLAVOR


@dataclasses.dataclass
class Scheduler:
    name: str
    label: str
    function: Any

    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list | None = None


def uniform(n: int, sigma_min: float, sigma_max: float, inner_model: Any, device: Any) -> torch.Tensor:
    return inner_model.get_sigmas(n).to(device)


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: Any = "cpu") -> torch.Tensor:
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])]).to(device=device, dtype=torch.float32)


def exponential(n: int, sigma_min: float, sigma_max: float, device: Any = "cpu") -> torch.Tensor:
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    return torch.cat([sigmas, sigmas.new_zeros([1])]).to(device=device, dtype=torch.float32)


def not_in_standin(*args: Any, **kwargs: Any) -> torch.Tensor:
    raise NotImplementedError("this scheduler is only named in the stand-in")


schedulers = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", uniform, need_inner_model=True),
    Scheduler("karras", "Karras", karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", exponential),
    Scheduler("polyexponential", "Polyexponential", not_in_standin, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", not_in_standin, need_inner_model=True, aliases=["SGMUniform"]),
    Scheduler("kl_optimal", "KL Optimal", not_in_standin),
    Scheduler("align_your_steps", "Align Your Steps", not_in_standin),
    Scheduler("simple", "Simple", not_in_standin, need_inner_model=True),
    Scheduler("normal", "Normal", not_in_standin, need_inner_model=True),
    Scheduler("ddim", "DDIM", not_in_standin, need_inner_model=True),
    Scheduler("beta", "Beta", not_in_standin, need_inner_model=True),
]

if FLAVOR in ("forge", "reforge"):
    schedulers += [
        Scheduler("turbo", "Turbo", not_in_standin, need_inner_model=True),
        Scheduler("align_your_steps_GITS", "Align Your Steps GITS", not_in_standin),
        Scheduler("align_your_steps_11", "Align Your Steps 11", not_in_standin),
        Scheduler("align_your_steps_32", "Align Your Steps 32", not_in_standin),
    ]
if FLAVOR == "reforge":
    schedulers += [
        Scheduler("cosine", "Cosine", not_in_standin),
        Scheduler("cosine-exponential blend", "Cosine-exponential Blend", not_in_standin),
        Scheduler("karras dynamic", "Karras Dynamic", not_in_standin),
    ]
if FLAVOR == "neo":
    schedulers = [s for s in schedulers if s.name not in ("simple", "normal", "ddim", "beta")] + [
        Scheduler("sdturbo", "SD Turbo", not_in_standin, need_inner_model=True),
        Scheduler("vp", "Variance Preserving", not_in_standin, need_inner_model=True),
        Scheduler("ddim_cfgpp", "CFG++", not_in_standin, need_inner_model=True),
    ]

schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}
