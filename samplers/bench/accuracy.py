"""Error vs NFE budget for every deterministic sampler on every case (the main accuracy tables)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..registry import SamplerEntry
from .measure import ADAPTIVE_GRID, ATOL_PER_RTOL, RTOL_LADDER, CaseRunner


def deterministic(entries: Mapping[str, SamplerEntry]) -> dict[str, SamplerEntry]:
    """Entries that solve the ODE (`stochastic` False): the only ones an ODE error table can rank. Score
    distillation (`solves_ode` False) is left out: it optimises a latent and equals DDIM only at its defaults."""
    return {name: e for name, e in entries.items() if not e.stochastic and e.solves_ode}


def run_accuracy(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int]
                 ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{case: {sampler: [{budget, n_steps, nfe, rmse, rel_rmse, sigma_last}, ...]}} with default options.

    Each budget uses the largest grid (n intervals) whose exact model-call count fits; budgets nothing fits
    are left out. Adaptive samplers: the run of the tolerance ladder with the most model calls within the
    budget (so their NFE is what they achieved; `rtol` is recorded in the cell).
    """
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for runner in runners:
        rows: dict[str, list[dict[str, Any]]] = {}
        for name, entry in entries.items():
            cells = []
            for budget in budgets:
                m = runner.at_budget(entry, budget)
                if m is not None:
                    n = ADAPTIVE_GRID if m.rtol is not None else m.n_steps
                    cells.append({"budget": budget, **m.as_dict(), "sigma_last": runner.sigma_last(n)})
            rows[name] = cells
        table[runner.case.name] = rows
    return table


def run_adaptive(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], orders: Sequence[int]
                 ) -> dict[str, Any]:
    """{case: {"<name> order <k> <controller>": [cell per rtol of the ladder]}}: tolerance vs NFE vs error."""
    table: dict[str, Any] = {}
    for runner in runners:
        rows: dict[str, Any] = {}
        for name, entry in entries.items():
            for order in orders:
                for controller in ("standard", "pid"):
                    runs = runner.ladder(entry, {"order": order, "controller": controller})
                    rows[f"{name} order {order} {controller}"] = {
                        "sampler": name, "order": order, "controller": controller,
                        "cells": [{"rtol": m.rtol, "atol": m.rtol * ATOL_PER_RTOL if m.rtol else None, **m.as_dict()}
                                  for m in runs]}
        table[runner.case.name] = rows
    ladder = runners[0].rtols if runners else RTOL_LADDER
    return {"ladder": list(ladder), "atol_per_rtol": ATOL_PER_RTOL, "grid_steps": ADAPTIVE_GRID,
            "cases": table}
