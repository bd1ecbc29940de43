"""samplers/bench/report.py beyond what the committed documents exercise (tests/test_docs_rendered.py renders every
one of them): the number formats at their edges, and the overhead section's warning for a loaded machine."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from samplers.bench.report import fmt_err, fmt_ratio, overhead_section

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_an_error_is_three_significant_digits_and_a_failure_says_so() -> None:
    assert fmt_err(1.23456e-3) == "1.23e-03"
    assert fmt_err(None) == fmt_err(math.inf) == fmt_err(math.nan) == "fail"


def test_a_ratio_has_two_decimals_between_0_01_and_100_and_an_exponent_outside() -> None:
    assert (fmt_ratio(0.01), fmt_ratio(99.994), fmt_ratio(100.0), fmt_ratio(0.00999)) == ("0.01", "99.99", "1.0e+02",
                                                                                           "1.0e-02")
    assert fmt_ratio(None) == "—"


def test_the_overhead_section_warns_when_the_multithreaded_model_call_was_slowed_by_load() -> None:
    """More than 3x the 1-thread model call at 2 threads: the machine was busy, the 2-thread columns are unreliable."""
    res = json.loads((DOCS / "bench.json").read_text())
    threads = {r["threads"]: r for r in res["overhead"]}
    assert "Warning" not in overhead_section(res)
    single = threads[1]["model_us_per_call"]
    for factor, warned in ((3.0, False), (3.5, True)):
        loaded = copy.deepcopy(res)
        next(r for r in loaded["overhead"] if r["threads"] == 2)["model_us_per_call"] = factor * single
        text = overhead_section(loaded)
        assert ("Warning: the bare model call took" in text) == warned, factor
        if warned:
            assert f"took {factor * single:.0f} µs at 2 threads vs {single:.0f} µs at 1 thread" in text


def test_the_accuracy_section_notes_a_grid_whose_last_sigma_moves_from_two_distinct_values_on() -> None:
    """On flow 'simple' grids the last nonzero sigma depends on the step count: the note appears as soon as a
    case's cells have two distinct values, and not with one."""
    from samplers.bench.report import accuracy_section

    res = json.loads((DOCS / "bench.json").read_text())
    flow = res["accuracy"]["flow_mixture/simple"]
    lasts = sorted({c["sigma_last"] for cells in flow.values() for c in cells}, reverse=True)
    for kept, noted in ((lasts[:2], True), (lasts[:1], False)):
        res["accuracy"] = {"flow_mixture/simple": {label: [c for c in cells if c["sigma_last"] in kept]
                                                   for label, cells in flow.items()}}
        text = accuracy_section(res)
        assert ("Note: on this grid the last nonzero sigma depends on the step count" in text) == noted, kept
        if noted:
            assert f"({lasts[0]:.3g} down to {lasts[1]:.3g} here)" in text


def test_a_study_bucket_without_data_says_so() -> None:
    from samplers.bench.report import _bucket_lines

    some = {"n": 1, "wins": {"a": 1, "b": 0, "tie": 0}, "geomean_ratio": 0.5, "winner": "a"}
    assert _bucket_lines({"NFE <= 10": {"n": 0}, "NFE > 10": some}, "a", "b") == [
        "- NFE <= 10: no data",
        "- NFE > 10: a/b error ratio (geometric mean) 0.50; a better in 1/1, b in 0, ties 0 -> **a**"]


def test_the_overhead_table_takes_plan_times_from_the_thread_cpu_time_run() -> None:
    """Plan building is pure Python, so its column comes from the run timed in thread CPU time, not wall clock."""
    res = json.loads((DOCS / "bench.json").read_text())
    assert [r["clock"] for r in res["overhead"]] == ["wall clock", "thread CPU time"]
    for entry in res["overhead"][0]["samplers"].values():
        if entry.get("plan_us_per_run") is not None:
            entry["plan_us_per_run"] = 987654.0
    text = overhead_section(res)
    assert "987654" not in text
    cpu = next(e["plan_us_per_run"] for e in res["overhead"][1]["samplers"].values() if e.get("plan_us_per_run"))
    assert f"| {cpu:.0f} |" in text
