"""Where an RMSE sits (samplers/bench/tail.py) and its table in the comparison report, on numbers worked by hand."""

from __future__ import annotations

import math

import pytest

from samplers.bench import comparison
from samplers.bench.tail import error_tail


@pytest.mark.parametrize("scale", [1.0, 1e-3])  # errors of the benchmark's size: squared sums far below 1
def test_one_dominant_noise_is_found_with_its_shares_and_the_ratio_without_it(scale: float) -> None:
    """Ours: 11 noises at 1 and one at 10 (squared: 11 + 100 = 111); theirs: 2 everywhere, 3 at that noise
    (squared: 44 + 9 = 53). The worst noise holds 100/111 of ours and 9/53 of theirs; without it the ratio is
    sqrt(11 / 44) = 0.5; the 10 worst hold (100 + 9) / 111 of ours and (9 + 9 * 4) / 53 of theirs. Shares and
    ratios do not depend on the errors' scale."""
    ours = [scale * e for e in [1.0] * 5 + [10.0] + [1.0] * 6]
    theirs = [scale * e for e in [2.0] * 5 + [3.0] + [2.0] * 6]
    t = error_tail(ours, theirs)
    assert t["top"] == 10
    worst = (t["ours_worst"], t["theirs_worst"], t["theirs_at_ours_worst"])
    assert worst == pytest.approx((10.0 * scale, 3.0 * scale, 3.0 * scale), rel=1e-12)
    assert t["ours_worst_share"] == pytest.approx(100 / 111)
    assert t["theirs_worst_share"] == t["theirs_share_at_ours_worst"] == pytest.approx(9 / 53)
    assert t["ours_top_share"] == pytest.approx(109 / 111)
    assert t["theirs_top_share"] == pytest.approx(45 / 53)
    assert t["ratio_without_ours_worst"] == pytest.approx(0.5)


def test_the_two_sides_worst_noises_can_differ() -> None:
    ours = [1.0, 5.0] + [1.0] * 10
    theirs = [4.0, 1.0] + [1.0] * 10
    t = error_tail(ours, theirs, top=2)
    assert (t["ours_worst"], t["theirs_worst"], t["theirs_at_ours_worst"]) == (5.0, 4.0, 1.0)
    assert t["theirs_share_at_ours_worst"] == pytest.approx(1 / 27)
    assert t["ratio_without_ours_worst"] == pytest.approx(math.sqrt(11 / 26))
    assert t["ours_top_share"] == pytest.approx(26 / 36) and t["theirs_top_share"] == pytest.approx(17 / 27)


@pytest.mark.parametrize("ours, theirs", [
    ([1.0] * 10, [1.0] * 10),  # no more noises than the few worst: nothing to say
    ([1.0] * 12, [1.0] * 11),  # unpaired
    ([1.0] * 11 + [math.nan], [1.0] * 12),
    ([0.0] * 12, [1.0] * 12),
    ([1.0] * 12, [0.0] * 12),
])
def test_no_tail_without_enough_finite_nonzero_pairs(ours: list[float], theirs: list[float]) -> None:
    assert error_tail(ours, theirs) is None


def test_the_ratio_without_our_worst_is_none_when_their_error_is_all_there() -> None:
    t = error_tail([2.0] + [1.0] * 11, [1.0] + [0.0] * 11)
    assert t["ratio_without_ours_worst"] is None and t["theirs_share_at_ours_worst"] == 1.0


def test_the_comparison_records_the_tail_of_its_rmse_pair_and_reports_it() -> None:
    ours_errors = [1.0] * 5 + [10.0] + [1.0] * 6
    theirs_errors = [2.0] * 5 + [3.0] + [2.0] * 6
    rms = lambda e: math.sqrt(sum(v * v for v in e) / len(e))  # noqa: E731
    ours = {"x": [{"n_steps": 10, "nfe": 10, "rmse": rms(ours_errors), "median_err": 1.0,
                   "sample_errors": ours_errors}]}
    theirs = {"p": [{"n_steps": 20, "nfe": 20, "rmse": rms(theirs_errors), "median_err": 2.0,
                     "sample_errors": theirs_errors}]}
    summary = comparison.compare(ours, theirs, 10, 20)
    assert summary["rmse"]["tail"] == error_tail(ours_errors, theirs_errors)
    assert "tail" not in summary["median_err"]
    cmp = {"our_budget": 10, "their_budget": 20, "cases": {"c": {"data_std": 2.0, "summary": summary}}}
    row = comparison.tail_table(cmp).splitlines()[-1]
    assert row == "| c | x / p | 5.00e+00 (90%); 98% | 1.50e+00 (17%); 85% | 1.50e+00 (17%) | 0.50 |"
    summary["rmse"]["tail"] = None  # a document measured before the tail was recorded: no table
    assert comparison.tail_table(cmp) is None
