"""The README's issue-8 verdicts are the committed comparison documents' figures (ratio and 95% interval per case and
statistic, in bold where met), so a re-measured document cannot leave the README behind, or the other way round."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from samplers.bench.report import fmt_ratio

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TABLE_ROWS = {
    "VE, Karras": ("comparison_lownfe.json", "ve_mixture/karras"),
    "VE, exponential": ("comparison_lownfe.json", "ve_mixture/exponential"),
    "VE, CFG 7.5, Karras": ("comparison_lownfe.json", "ve_mixture_cfg7.5/karras"),
    "VE, CFG 7.5, exponential": ("comparison_lownfe.json", "ve_mixture_cfg7.5/exponential"),
    "flow, shift 3, σ 1 → 0.136": ("comparison_lownfe.json", "flow_mixture/simple"),
    "demo digits_eps, Karras": ("comparison_lownfe_networks.json", "digits_eps/karras"),
    "demo digits_eps, exponential": ("comparison_lownfe_networks.json", "digits_eps/exponential"),
    "demo digits_flow, σ 1 → 0.136": ("comparison_lownfe_networks.json", "digits_flow/simple"),
}
"""The rows of the README's table 'ours / ComfyUI' and the document and case each one reports."""
LARGE = {
    "open by RMSE": (("ve_mixture/karras", "ve_mixture/exponential", "flow_mixture/simple"), False),
    "CFG": (("ve_mixture_cfg7.5/karras", "ve_mixture_cfg7.5/exponential"), True),
}
"""The cases measured again on 32768 noises (docs/comparison_lownfe_32768/<case>.json), in the README's sentences
on them: (cases in the sentence's order, whether their RMSE goal is met there; the median goal is met in all)."""


def _summary(document: Path, case: str) -> dict[str, Any]:
    return json.loads(document.read_text())["comparison"]["cases"][case]["summary"]


def _verdict(entry: dict[str, Any], bold: bool = True, suffix: str = "") -> str:
    """'ratio (low–high)' (suffix after the ratio, e.g. '×'), the ratio in bold where the goal is met."""
    ratio = fmt_ratio(entry["ratio"]) + suffix
    low, high = entry["interval"]
    return f"{f'**{ratio}**' if bold and entry['met'] else ratio} ({fmt_ratio(low)}–{fmt_ratio(high)})"


def _readme() -> str:
    return (ROOT / "README.md").read_text()


@pytest.mark.parametrize("label", sorted(TABLE_ROWS))
def test_the_table_row_is_the_documents_verdict(label: str) -> None:
    document, case = TABLE_ROWS[label]
    summary = _summary(DOCS / document, case)
    rows = [line for line in _readme().splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"README: {len(rows)} table rows for {label!r}"
    last = rows[0].rstrip(" |").rsplit("|", 1)[1].strip()
    assert last == f"{_verdict(summary['rmse'])}; {_verdict(summary['median_err'])}"


def _listing(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


@pytest.mark.parametrize("group", sorted(LARGE))
def test_the_32768_noise_verdicts_are_stated(group: str) -> None:
    """The README's sentence on a group's 32768-noise run lists the RMSE ratios with their intervals, then the
    median ratios, in LARGE's order; the verdicts are what the sentence's wording says."""
    cases, rmse_met = LARGE[group]
    text = re.sub(r"\s+", " ", _readme())
    summaries = [_summary(DOCS / "comparison_lownfe_32768" / f"{case.replace('/', '_')}.json", case) for case in cases]
    rmse = _listing([_verdict(s["rmse"], bold=False, suffix="×") for s in summaries])
    median = _listing([f"{fmt_ratio(s['median_err']['ratio'])}×" for s in summaries])
    assert f"{rmse} by RMSE, and {median} by median" in text
    assert all(s["rmse"]["met"] == rmse_met for s in summaries)
    assert all(s["median_err"]["met"] for s in summaries)
