"""Distribution statistics of sampled batches: what the stochastic samplers are for.

An SDE sampler does not follow the ODE, so its error against the ODE solution means nothing; what matters is
whether its samples follow the data distribution. On the mixture problems (exact denoisers, exact prior
draws at sigma_max) every sampler turns N fixed initial noises (and, for the stochastic ones, a fixed seed)
into N samples, compared with the known mixture: mean error, variance error, and the total variation distance
between the mode proportions (each sample assigned to its most likely component) and the mixture weights.
N exact draws from the mixture give the statistical floor of each number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..registry import SamplerEntry
from .cases import Case, all_cases
from .problems import SEED, GaussianMixture

NOISE_SEED = 0
"""Seed of the samplers' own noise (the `seed` option)."""

REFERENCES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("dpm_solver_pp_2m", "DPM-Solver++ 2M (ODE)", {}),
    ("dpm_solver_pp_pc", "DPM-Solver++ PC (UniC)", {}),
    ("dpm_solver_pp_pc", "DPM-Solver++ PC (Langevin)", {"corrector": "langevin"}),
)
"""Rows besides the stochastic entries: the ODE baseline and the predictor-corrector's two correctors."""


def mixture_stats(samples: torch.Tensor, mix: GaussianMixture) -> dict[str, float]:
    """mean error (RMS over dimensions of the mean's error / data std), variance error (RMS over dimensions of
    relative variance error) and mode TV (total variation between assigned-mode proportions and weights)."""
    x = samples.to(torch.float64).reshape(samples.shape[0], -1)
    w = mix.weights
    mean = w @ mix.means
    var = (w[:, None] * (mix.stds**2 + mix.means**2)).sum(0) - mean**2
    std = math.sqrt(float(var.mean()))
    mean_err = float(((x.mean(0) - mean) ** 2).mean().sqrt()) / std
    var_err = float(((x.var(0) / var - 1.0) ** 2).mean().sqrt())
    resid = (x[:, None, :] - mix.means[None]) / mix.stds[None]
    loglik = -0.5 * (resid**2).sum(-1) - mix.stds.log().sum(-1)[None] + w.log()[None]
    counts = torch.bincount(loglik.argmax(1), minlength=mix.n_components).to(torch.float64)
    tv = 0.5 * float((counts / x.shape[0] - w).abs().sum())
    return {"mean_err": mean_err, "var_err": var_err, "mode_tv": tv}


def distribution_cases() -> list[Case]:
    """The unguided mixtures (their data distribution is known): VE on Karras, flow on 'simple'."""
    return [c for c in all_cases() if c.name in ("ve_mixture/karras", "flow_mixture/simple")]


def run_distribution(entries: Mapping[str, SamplerEntry], steps: Sequence[int], samples: int) -> dict[str, Any]:
    """{config, cases: {case: {floor, rows: {row: {label, sampler, options, cells: [...]}}}}}."""
    rows: list[tuple[str, str, SamplerEntry, dict[str, Any]]] = [
        (name, e.label, e, {}) for name, e in entries.items() if e.stochastic]
    for name, label, options in REFERENCES:
        if name in entries:
            key = name if not options else f"{name}:" + ",".join(f"{k}={v}" for k, v in options.items())
            rows.append((key, label, entries[name], options))
    out: dict[str, Any] = {"samples": samples, "steps": list(steps), "noise_seed": NOISE_SEED,
                           "initial_noise": "problems.SEED + 1",
                           "floor_seed": "problems.SEED + 2", "cases": {}}
    for case in distribution_cases():
        mix = case.problem.data
        assert mix is not None
        x0 = case.problem.prior_noise(samples, dtype=torch.float64)
        data = mix.sample_data(samples, torch.Generator().manual_seed(SEED + 2))
        table: dict[str, Any] = {"floor": mixture_stats(data, mix), "rows": {}}
        for key, label, entry, options in rows:
            cells = []
            for n in steps:
                sigmas = case.grid(n)
                opts = {"schedule": case.schedule, **options}
                if "seed" in entry.defaults:
                    opts["seed"] = NOISE_SEED
                with torch.no_grad():
                    out_x = entry(case.problem.model, x0.clone(), sigmas, disable=True, **opts)
                cells.append({"n_steps": n, "nfe": entry.count_model_calls(sigmas, **opts),
                              **mixture_stats(out_x, mix)})
            table["rows"][key] = {"label": label, "sampler": entry.name, "options": options, "cells": cells}
        out["cases"][case.name] = table
    return out
