"""The defaults study: how third_order, lower_order_final and solver_type change the error.

Each option is compared pairwise with everything else at its default, per case and budget (or step count),
as an error ratio. Verdicts aggregate ratios by geometric mean over cases (and samplers); a ratio below
1 - TIE means the first setting is better, above 1 + TIE the second, in between counts as a tie.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..registry import SamplerEntry
from .measure import CaseRunner, Measurement

TIE = 0.02
NFE_BUCKETS: tuple[tuple[str, int, float], ...] = (("NFE<=10", 0, 10), ("10<NFE<=25", 10, 25), ("NFE>25", 25, math.inf))


def ratio(a: Measurement | None, b: Measurement | None, stat: str = "rmse") -> float | None:
    """a.stat / b.stat (stat 'rmse' or 'median_err'), None when either is missing, failed or zero."""
    if a is None or b is None:
        return None
    x, y = getattr(a, stat), getattr(b, stat)
    if not (math.isfinite(x) and math.isfinite(y)) or x <= 0 or y <= 0:
        return None
    return x / y


def geomean(values: Sequence[float | None]) -> float | None:
    """Geometric mean of the defined values (None when there are none)."""
    vals = [v for v in values if v is not None]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def summarize(ratios: Sequence[float | None], first: str, second: str) -> dict[str, Any]:
    """Geometric-mean ratio first/second, win counts, and which setting wins."""
    vals = [r for r in ratios if r is not None]
    g = geomean(vals)
    wins_first = sum(r < 1 - TIE for r in vals)
    wins_second = sum(r > 1 + TIE for r in vals)
    if g is None:
        winner = None
    elif g < 1 - TIE:
        winner = first
    elif g > 1 + TIE:
        winner = second
    else:
        winner = "tie"
    return {"geomean_ratio": g, "wins": {first: wins_first, second: wins_second, "tie": len(vals) - wins_first
                                         - wins_second}, "n": len(vals), "winner": winner}


def _with_option(entries: Mapping[str, SamplerEntry], option: str) -> dict[str, SamplerEntry]:
    return {name: e for name, e in entries.items() if option in e.defaults}


def _pairwise_budgets(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int],
                      option: str, first: Any, second: Any) -> list[dict[str, Any]]:
    rows = []
    for runner in runners:
        for name, entry in _with_option(entries, option).items():
            for budget in budgets:
                a = runner.at_budget(entry, budget, {option: first})
                b = runner.at_budget(entry, budget, {option: second})
                rows.append({"case": runner.case.name, "sampler": name, "structure": structure_of(entry),
                             "budget": budget, str(first): a.as_dict() if a else None,
                             str(second): b.as_dict() if b else None,
                             "ratio": ratio(a, b), "ratio_median": ratio(a, b, "median_err")})
    return rows


def _by_bucket(rows: Sequence[dict[str, Any]], first: str, second: str,
               key: Callable[[dict[str, Any]], bool] = lambda r: True, stat: str = "ratio") -> dict[str, Any]:
    return {label: summarize([r[stat] for r in rows if lo < r["budget"] <= hi and key(r)], first, second)
            for label, lo, hi in NFE_BUCKETS}


def _budget_study(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int],
                  option: str, first: Any, second: Any) -> dict[str, Any]:
    """Pairwise comparison at NFE budgets: rows, verdict per NFE bucket (RMSE and median-sample error)."""
    rows = _pairwise_budgets(runners, entries, budgets, option, first, second)
    a, b = str(first), str(second)
    names = list(dict.fromkeys(r["sampler"] for r in rows))
    return {"first": a, "second": b, "rows": rows,
            "verdict": _by_bucket(rows, a, b),
            "verdict_median": _by_bucket(rows, a, b, stat="ratio_median"),
            "by_sampler": {n: _by_bucket(rows, a, b, lambda r, n=n: r["sampler"] == n) for n in names}}


def third_order_study(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int]
                      ) -> dict[str, Any]:
    """(a) third_order 'consistent' vs 'reference' for the samplers that have it (the 3M family)."""
    return _budget_study(runners, entries, budgets, "third_order", "consistent", "reference")


def solver_type_study(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int]
                      ) -> dict[str, Any]:
    """(c) solver_type 'taylor' vs 'dpmsolver' for every sampler that has the option."""
    return _budget_study(runners, entries, budgets, "solver_type", "taylor", "dpmsolver")


def corrector_study(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int]
                    ) -> dict[str, Any]:
    """(d) corrector 'unic' vs 'none' (the multistep predictor alone) for the predictor-corrector samplers."""
    return _budget_study(runners, entries, budgets, "corrector", "unic", "none")


def pc_order_study(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry], budgets: Sequence[int]
                   ) -> dict[str, Any]:
    """(e) order 3 vs 2 for the predictor-corrector samplers (UniC corrector: effective orders 4 and 3)."""
    planned = {n: e for n, e in entries.items() if "corrector" in e.defaults}
    return _budget_study(runners, planned, budgets, "order", 3, 2)


def structure_of(entry: SamplerEntry) -> str:
    """The sampler's step structure (singlestep, multistep, adaptive, ...), or 'other' for a sampler with no spec."""
    spec = entry.spec
    return spec.structure if spec is not None else "other"


def lower_order_final_study(runners: Sequence[CaseRunner], entries: Mapping[str, SamplerEntry],
                            steps: Sequence[int], budgets: Sequence[int] = ()) -> dict[str, Any]:
    """(b) lower_order_final True vs False at equal step counts (grid intervals), per sampler and case.

    For singlestep samplers True also saves model calls (the lowered steps need fewer), so at equal steps
    it is compared at a smaller NFE: the rows record both NFEs, and `equal_nfe` repeats the comparison at
    the NFE budgets (each setting with the largest grid that fits).
    """
    chosen = _with_option(entries, "lower_order_final")
    rows = []
    for runner in runners:
        for name, entry in chosen.items():
            for n in steps:
                a = runner.run(entry, n, {"lower_order_final": True})
                b = runner.run(entry, n, {"lower_order_final": False})
                rows.append({"case": runner.case.name, "sampler": name, "structure": structure_of(entry),
                             "n_steps": n, "True": a.as_dict(), "False": b.as_dict(), "ratio": ratio(a, b),
                             "ratio_median": ratio(a, b, "median_err")})
    per_step: dict[str, Any] = {}
    groups = ["all", *sorted({r["structure"] for r in rows})]
    for n in steps:
        at_n = [r for r in rows if r["n_steps"] == n]
        per_step[str(n)] = {
            "samplers": {s: summarize([r["ratio"] for r in at_n if r["sampler"] == s], "True", "False")
                         for s in chosen},
            "groups": {g: summarize([r["ratio"] for r in at_n if g in ("all", r["structure"])], "True", "False")
                       for g in groups},
        }
        per_step[str(n)]["groups_median"] = {
            g: summarize([r["ratio_median"] for r in at_n if g in ("all", r["structure"])], "True", "False")
            for g in groups}
    verdict = {g: _threshold(steps, {n: per_step[str(n)]["groups"][g] for n in steps}) for g in groups}
    verdict_median = {g: _threshold(steps, {n: per_step[str(n)]["groups_median"][g] for n in steps})
                      for g in groups}
    out = {"first": "True", "second": "False", "rows": rows, "per_step": per_step, "verdict": verdict,
           "verdict_median": verdict_median}
    if budgets:
        equal = _budget_study(runners, chosen, budgets, "lower_order_final", True, False)
        equal["by_structure"] = {g: _by_bucket(equal["rows"], "True", "False", lambda r, g=g: r["structure"] == g)
                                 for g in groups[1:]}
        out["equal_nfe"] = equal
    return out


def _threshold(steps: Sequence[int], summaries: Mapping[int, dict[str, Any]]) -> dict[str, Any]:
    """Step counts where True wins, and the threshold 'on below T' that matches the studied range best."""
    helps = [n for n in steps if summaries[n]["winner"] == "True"]
    hurts = [n for n in steps if summaries[n]["winner"] == "False"]

    def misfit(t: int) -> float:  # summed |log ratio| of the step counts the rule 'on iff n < t' gets wrong
        total = 0.0
        for n in steps:
            g = summaries[n]["geomean_ratio"]
            if g is not None and (n < t) != (g < 1):
                total += abs(math.log(g))
        return total

    candidates = [*steps, max(steps) + 1] if steps else []
    best = min(candidates, key=lambda t: (misfit(t), t)) if candidates else None
    return {"helps_at": helps, "hurts_at": hurts, "suggested_below": best}


def current_threshold() -> int | None:
    """The core's LOWER_ORDER_FINAL_BELOW, when it still has one (read for the report only)."""
    from .. import deterministic

    return getattr(deterministic, "LOWER_ORDER_FINAL_BELOW", None)
