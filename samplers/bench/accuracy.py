"""Error vs NFE budget for every deterministic sampler on every case (the main accuracy tables)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..registry import SamplerEntry
from .measure import CaseRunner


def deterministic(entries: Mapping[str, SamplerEntry]) -> dict[str, SamplerEntry]:
    """Entries that solve the ODE (`stochastic` False): the only ones an ODE error table can rank."""
    return {name: e for name, e in entries.items() if not getattr(e, "stochastic", False)}


def run_accuracy(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int]
                 ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{case: {sampler: [{budget, n_steps, nfe, rmse, rel_rmse, sigma_last}, ...]}} with default options.

    Each budget uses the largest grid (n intervals) whose exact model-call count fits; budgets nothing fits
    are left out.
    """
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for runner in runners:
        rows: dict[str, list[dict[str, Any]]] = {}
        for name, entry in entries.items():
            cells = []
            for budget in budgets:
                m = runner.at_budget(entry, budget)
                if m is not None:
                    cells.append({"budget": budget, **m.as_dict(), "sigma_last": runner.sigma_last(m.n_steps)})
            rows[name] = cells
        table[runner.case.name] = rows
    return table
