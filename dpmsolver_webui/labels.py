"""WebUI labels and aliases for the registry's samplers, and the rules a label must satisfy.

The WebUI writes `Sampler: <label>` into the infotext and, when reading one back, strips a trailing
`" " + <scheduler label, name or alias>` off the sampler name (old infotexts wrote "DPM++ 2M Karras"); reForge
does so case-insensitively. A label ending with a scheduler word would therefore lose its end. An unknown
label silently falls back to the default sampler, and commas, colons, quotes or newlines in a label force
quoting in the infotext. The word lists below are collected from the sources of A1111 1.9/1.10, lllyasviel
Forge, reForge and Forge Classic/Neo (`modules/sd_schedulers.py`, `modules/sd_samplers_*.py`); the host's
own lists are checked as well at registration time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

KNOWN_SCHEDULER_WORDS: tuple[str, ...] = (
    # A1111 1.9/1.10 (label, name, aliases)
    "Automatic", "automatic", "Uniform", "uniform", "Karras", "karras", "Exponential", "exponential",
    "Polyexponential", "polyexponential", "SGM Uniform", "sgm_uniform", "SGMUniform", "KL Optimal", "kl_optimal",
    "Align Your Steps", "align_your_steps", "Simple", "simple", "Normal", "normal", "DDIM", "ddim", "Beta", "beta",
    # lllyasviel Forge
    "Turbo", "turbo", "Align Your Steps GITS", "align_your_steps_GITS", "Align Your Steps 11", "align_your_steps_11",
    "Align Your Steps 32", "align_your_steps_32",
    # reForge
    "Sinusoidal SF", "sinusoidal_sf", "Invcosinusoidal SF", "invcosinusoidal_sf", "React Cosinusoidal DynSF",
    "react_cosinusoidal_dynsf", "Align Your Steps Custom", "align_your_steps_custom", "Cosine", "cosine",
    "Cosine-exponential Blend", "cosine-exponential blend", "Phi", "phi", "Laplace", "laplace", "Karras Dynamic",
    "karras dynamic", "Karras Exponential", "karras_exponential",
    # Forge Classic / Neo
    "SD Turbo", "sdturbo", "Variance Preserving", "vp", "CFG++", "ddim_cfgpp", "Flux2", "flux2",
)
"""Scheduler labels, names and aliases of the supported WebUI forks (a label must not end with one)."""

KNOWN_BUILTIN_SAMPLERS: tuple[str, ...] = (
    # A1111 1.10 (k-diffusion, timesteps, LCM) with aliases
    "DPM++ 2M", "k_dpmpp_2m", "DPM++ SDE", "k_dpmpp_sde", "DPM++ 2M SDE", "k_dpmpp_2m_sde", "DPM++ 2M SDE Heun",
    "k_dpmpp_2m_sde_heun", "DPM++ 2S a", "k_dpmpp_2s_a", "DPM++ 3M SDE", "k_dpmpp_3m_sde", "Euler a", "k_euler_a",
    "k_euler_ancestral", "Euler", "k_euler", "LMS", "k_lms", "Heun", "k_heun", "DPM2", "k_dpm_2", "DPM2 a",
    "k_dpm_2_a", "DPM fast", "k_dpm_fast", "DPM adaptive", "k_dpm_ad", "Restart", "restart", "DDIM", "ddim",
    "DDIM CFG++", "ddim_cfgpp", "PLMS", "plms", "UniPC", "unipc", "LCM", "k_lcm",
    # older labels with the scheduler in the name (A1111 <= 1.8, early Forge Classic)
    "LMS Karras", "DPM2 Karras", "DPM2 a Karras", "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras",
    "DPM++ 2M SDE Karras", "DPM++ 2M SDE Exponential", "DPM++ 3M SDE Karras", "DPM++ 3M SDE Exponential",
    # lllyasviel Forge
    "HeunPP2", "heunpp2", "IPNDM", "ipndm", "IPNDM_V", "ipndm_v", "DEIS", "deis", "DDPM", "ddpm",
    # reForge (part of its alter-sampler list)
    "Euler A2", "Euler Dy", "Euler SMEA Dy", "Euler Negative", "Euler Negative Dy", "DPM++ SDE Classic", "ER SDE",
    "Kohaku_LoNyu_Yog", "Euler CFG++", "Euler Ancestral CFG++", "DPM++ 2M CFG++", "DPM++ 2M DY", "DPM++ 3M DY",
    "RES Multistep", "RES Solver", "SA-Solver", "SA-Solver-Pece", "DPM++ 2M Turbo", "DPM++ 2M Comfy",
    "DPM++ 2S Ancestral Comfy", "Gradient Estimation", "SEEDS 2 DP", "SEEDS 3 DP", "Custom Sampler",
    # Forge Neo
    "DPM++ 2s a RF", "Flux Realistic", "Res Multistep", "Kohaku LoNyu Yog",
)
"""Built-in sampler labels and aliases of the supported forks (ours must differ, ignoring case)."""

FORBIDDEN_CHARACTERS = (",", ":", '"', "\n", "\r")
"""Characters that would force quoting (or break parsing) of `Sampler: <label>` in the infotext."""


class Labelled(Protocol):
    """What this module needs of a registry entry."""

    name: str
    label: str


def label_problems(label: str, scheduler_words: Iterable[str], taken: Iterable[str]) -> list[str]:
    """Why `label` cannot be a WebUI sampler label (empty list when it can).

    `scheduler_words` are scheduler labels, names and aliases; `taken` are existing sampler labels and
    aliases. Both comparisons ignore case, as reForge's infotext parser and `samplers_map` do.
    """
    problems: list[str] = []
    if not label or label != label.strip():
        problems.append("is empty or has leading/trailing whitespace")
    bad = [c for c in FORBIDDEN_CHARACTERS if c in label]
    if bad:
        problems.append(f"contains {', '.join(repr(c) for c in bad)}")
    lowered = label.lower()
    for word in scheduler_words:
        if word and lowered.endswith(" " + word.lower()):
            problems.append(f"ends with the scheduler word {word!r}")
            break
    taken_lower = {t.lower() for t in taken}
    if lowered in taken_lower:
        problems.append("collides with an existing sampler label or alias")
    return problems


def webui_label(entry: Labelled, scheduler_words: Iterable[str], taken: Iterable[str]) -> str:
    """The entry's own label when valid, else `"<label> (<registry name>)"`; raises ValueError if neither is."""
    words, existing = tuple(scheduler_words), tuple(taken)
    candidates = (entry.label, f"{entry.label} ({entry.name})")
    for candidate in candidates:
        if not label_problems(candidate, words, existing):
            return candidate
    raise ValueError(
        f"no valid WebUI label for sampler {entry.name}: {entry.label!r} "
        f"{'; '.join(label_problems(entry.label, words, existing))}"
    )


def aliases(entry: Labelled) -> list[str]:
    """Stable aliases: the registry name (used by the API's sampler map, the X/Y/Z plot and old infotexts)."""
    return [entry.name]
