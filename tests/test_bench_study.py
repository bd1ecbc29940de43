"""The defaults study's arithmetic and verdicts (samplers/bench/study.py), on measurements made up to test them.

A fake runner returns chosen errors per (sampler, setting, budget or steps), so every ratio, geometric mean,
win count, bucket and threshold has an exact expected value.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from samplers.bench import study
from samplers.bench.measure import Measurement


def m(rmse: float, median: float | None = None, nfe: int = 10) -> Measurement:
    return Measurement(n_steps=nfe, nfe=nfe, rmse=rmse, rel_rmse=rmse, median_err=rmse if median is None else median)


def entry(name: str, option: str, structure: str | None) -> Any:
    spec = None if structure is None else SimpleNamespace(structure=structure)
    return SimpleNamespace(name=name, defaults={option: None, "schedule": "ve"}, spec=spec)


class FakeRunner:
    """errors[(sampler, setting)] = {budget or steps: rmse}; the median error is half the RMSE. A budget missing
    from the table is one no grid fits (None)."""

    def __init__(self, name: str, errors: dict[tuple[str, Any], dict[int, float]], option: str) -> None:
        self.case = SimpleNamespace(name=name)
        self.errors, self.option = errors, option

    def at_budget(self, e: Any, budget: int, options: dict[str, Any]) -> Measurement | None:
        rmse = self.errors.get((e.name, options[self.option]), {}).get(budget)
        return None if rmse is None else m(rmse, rmse / 2, budget)

    def run(self, e: Any, n: int, options: dict[str, Any]) -> Measurement:
        return m(self.errors[(e.name, options[self.option])][n], nfe=n)


def test_ratio_is_a_over_b_when_both_are_finite_and_positive() -> None:
    assert study.ratio(m(2.0), m(8.0)) == 0.25
    assert study.ratio(m(2.0, median=3.0), m(8.0, median=2.0), "median_err") == 1.5
    for a, b in [(None, m(1.0)), (m(1.0), None), (m(math.inf), m(1.0)), (m(1.0), m(math.nan)), (m(0.0), m(1.0)),
                 (m(1.0), m(0.0)), (m(-1.0), m(1.0))]:
        assert study.ratio(a, b) is None, (a, b)


def test_geomean_of_the_defined_values() -> None:
    assert study.geomean([2.0, None, 8.0]) == pytest.approx(4.0, rel=1e-15)
    assert study.geomean([None]) is None and study.geomean([]) is None


@pytest.mark.parametrize(("ratios", "winner", "wins"), [
    ([0.5, 0.99, 1.5, None], "a", {"a": 1, "b": 1, "tie": 1}),
    ([0.975], "a", {"a": 1, "b": 0, "tie": 0}),
    ([0.985], "tie", {"a": 0, "b": 0, "tie": 1}),
    ([1.015], "tie", {"a": 0, "b": 0, "tie": 1}),
    ([1.025], "b", {"a": 0, "b": 1, "tie": 0}),
    ([None], None, {"a": 0, "b": 0, "tie": 0}),
])
def test_summary_counts_wins_beyond_the_tie_band_and_names_the_winner(ratios: list[float | None], winner: str | None,
                                                                      wins: dict[str, int]) -> None:
    """A ratio below 1 - 0.02 is a win for the first setting, above 1 + 0.02 for the second; the winner goes by the
    geometric mean of the defined ratios."""
    assert study.TIE == 0.02
    s = study.summarize(ratios, "a", "b")
    assert s["winner"] == winner and s["wins"] == wins and s["n"] == sum(r is not None for r in ratios)
    assert s["geomean_ratio"] == study.geomean(ratios)


def test_budgets_fall_into_the_nfe_buckets_above_their_low_end_up_to_their_high_end() -> None:
    buckets = study.NFE_BUCKETS
    assert buckets == (("NFE<=10", 0, 10), ("10<NFE<=25", 10, 25), ("NFE>25", 25, math.inf))
    rows = [{"budget": b, "ratio": r, "sampler": s} for b, r, s in
            [(10, 0.5, "x"), (11, 2.0, "x"), (25, 8.0, "y"), (26, 0.25, "y")]]
    by = study._by_bucket(rows, "a", "b")
    assert {k: (v["n"], v["geomean_ratio"]) for k, v in by.items()} == {
        "NFE<=10": (1, 0.5), "10<NFE<=25": (2, pytest.approx(4.0)), "NFE>25": (1, 0.25)}
    only_y = study._by_bucket(rows, "a", "b", lambda r: r["sampler"] == "y")
    assert [v["n"] for v in only_y.values()] == [0, 1, 1]


def test_a_budget_study_compares_each_sampler_with_the_option_at_each_budget() -> None:
    samplers = {n: entry(n, o, s) for n, o, s in [("p", "opt", "multistep"), ("q", "opt", "singlestep"),
                                                    ("r", "other", "multistep")]}
    errors = {("p", "on"): {8: 1.0, 20: 1.0}, ("p", "off"): {8: 2.0, 20: 0.5},
              ("q", "on"): {8: 3.0}, ("q", "off"): {8: 3.0}}
    res = study._budget_study([FakeRunner("c1", errors, "opt")], samplers, [8, 20], "opt", "on", "off")
    assert res["first"] == "on" and res["second"] == "off"
    rows = {(r["sampler"], r["budget"]): r for r in res["rows"]}
    assert set(rows) == {("p", 8), ("p", 20), ("q", 8), ("q", 20)}  # r has no such option
    assert rows[("p", 8)]["ratio"] == 0.5 and rows[("p", 8)]["ratio_median"] == 0.5
    assert rows[("p", 8)]["structure"] == "multistep" and rows[("p", 8)]["case"] == "c1"
    assert rows[("p", 8)]["on"]["rmse"] == 1.0 and rows[("p", 8)]["off"]["rmse"] == 2.0
    assert rows[("q", 20)]["ratio"] is None and rows[("q", 20)]["on"] is None  # no grid fits: no ratio
    assert res["verdict"]["NFE<=10"]["winner"] == "on" and res["verdict"]["NFE<=10"]["wins"]["tie"] == 1
    assert res["verdict"]["10<NFE<=25"]["winner"] == "off"
    assert res["verdict_median"] == res["verdict"]  # the fake's median errors are half the RMSEs
    assert list(res["by_sampler"]) == ["p", "q"]
    assert res["by_sampler"]["q"]["NFE<=10"]["winner"] == "tie"


def test_the_pc_order_study_compares_order_3_with_2_for_the_predictor_correctors_only() -> None:
    pc, plain = entry("pc", "order", "multistep"), entry("plain", "order", "multistep")
    pc.defaults["corrector"] = "unic"
    errors = {("pc", 3): {10: 1.0}, ("pc", 2): {10: 4.0}, ("plain", 3): {10: 1.0}, ("plain", 2): {10: 1.0}}
    res = study.pc_order_study([FakeRunner("c", errors, "order")], {"pc": pc, "plain": plain}, [10])
    assert (res["first"], res["second"]) == ("3", "2")
    assert [(r["sampler"], r["ratio"]) for r in res["rows"]] == [("pc", 0.25)]


def test_structure_of_names_the_spec_or_other() -> None:
    assert study.structure_of(entry("x", "y", "adaptive")) == "adaptive"
    assert study.structure_of(entry("x", "y", None)) == "other"


def test_threshold_is_the_on_below_rule_that_misfits_the_least() -> None:
    def s(g: float | None, winner: str | None) -> dict[str, Any]:
        return {"geomean_ratio": g, "winner": winner}

    t = study._threshold([5, 10, 20], {5: s(0.5, "True"), 10: s(0.9, "True"), 20: s(1.2, "False")})
    assert t == {"helps_at": [5, 10], "hurts_at": [20], "suggested_below": 20}
    # on everywhere but at 10, where it hurts a little: 'on below 21' misfits by |log 1.01| only
    t = study._threshold([5, 10, 20], {5: s(0.5, "True"), 10: s(1.01, "tie"), 20: s(0.8, "True")})
    assert t == {"helps_at": [5, 20], "hurts_at": [], "suggested_below": 21}
    assert study._threshold([5, 10], {5: s(None, None), 10: s(1.0, "tie")})["suggested_below"] == 5  # ties: lowest
    assert study._threshold([], {}) == {"helps_at": [], "hurts_at": [], "suggested_below": None}


def test_lower_order_final_study_at_equal_steps_and_at_equal_nfe() -> None:
    samplers = {n: entry(n, "lower_order_final", s) for n, s in [("m", "multistep"), ("s", "singlestep")]}
    errors = {("m", True): {4: 1.0, 8: 2.0, 10: 1.0}, ("m", False): {4: 4.0, 8: 1.0, 10: 2.0},
              ("s", True): {4: 1.0, 8: 1.0, 10: 1.0}, ("s", False): {4: 2.0, 8: 1.0, 10: 1.0}}
    res = study.lower_order_final_study([FakeRunner("c", errors, "lower_order_final")], samplers, [4, 8],
                                        budgets=[10])
    assert len(res["rows"]) == 4 and (res["first"], res["second"]) == ("True", "False")
    at4, at8 = res["per_step"]["4"], res["per_step"]["8"]
    assert at4["samplers"]["m"]["geomean_ratio"] == 0.25 and at4["samplers"]["s"]["geomean_ratio"] == 0.5
    assert set(at4["groups"]) == {"all", "multistep", "singlestep"}
    assert at4["groups"]["all"]["geomean_ratio"] == pytest.approx(math.sqrt(0.125))
    assert at8["groups"]["multistep"]["winner"] == "False" and at8["groups"]["singlestep"]["winner"] == "tie"
    assert at8["groups_median"]["multistep"]["geomean_ratio"] == 2.0
    assert res["verdict"]["multistep"] == {"helps_at": [4], "hurts_at": [8], "suggested_below": 8}
    assert res["verdict"]["singlestep"]["helps_at"] == [4] and res["verdict_median"]["all"]["helps_at"] == [4]
    equal = res["equal_nfe"]
    assert [(r["sampler"], r["budget"], r["ratio"]) for r in equal["rows"]] == [("m", 10, 0.5), ("s", 10, 1.0)]
    assert set(equal["by_structure"]) == {"multistep", "singlestep"}
    assert equal["by_structure"]["multistep"]["NFE<=10"]["geomean_ratio"] == 0.5
    assert "equal_nfe" not in study.lower_order_final_study(
        [FakeRunner("c", errors, "lower_order_final")], samplers, [4])
