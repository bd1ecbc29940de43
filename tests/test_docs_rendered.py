"""Every committed benchmark document is exactly what its command's renderer makes of the JSON written beside it,
so the markdown in docs/ (and the README figures read from it) cannot drift from the measured data, and a change to
a renderer shows up here as a changed document instead of going unnoticed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dpmsolver_demo import sds_cli
from samplers.bench import calibrated, cli, determinism, flowgrids, ksampler, learned, syncs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _with_newline(render: Callable[[Any], str]) -> Callable[[Any], str]:
    """A renderer whose command writes (or prints) its text followed by one newline."""
    return lambda res: render(res) + "\n"


# document stem -> what its command writes into the .md, given the .json (see each module's main)
RENDERERS: dict[str, Callable[[Any], str]] = {
    **{stem: _with_newline(cli.markdown) for stem in (
        "bench", "bench_networks", "comparison", "comparison_networks", "comparison_lownfe",
        "comparison_lownfe_networks", "comparison_lownfe_131072/flow_mixture_simple",
        "comparison_lownfe_131072/ve_mixture_karras", "comparison_lownfe_131072/ve_mixture_exponential",
        *(f"comparison_lownfe_32768/{case}" for case in (
            "flow_mixture_simple", "ve_mixture_karras", "ve_mixture_exponential", "ve_mixture_cfg7.5_karras",
            "ve_mixture_cfg7.5_exponential")))},
    "calibrated": _with_newline(calibrated.report),
    "calibrated_networks": _with_newline(calibrated.report),
    "learned": _with_newline(learned.report),
    "flow_lownfe": flowgrids.report,
    "determinism_cuda": determinism.determinism_document,
    "determinism_cuda_tf32": determinism.determinism_document,
    "ksampler_cuda": ksampler.ksampler_document,
    "ksampler_cuda_1024": ksampler.ksampler_document,
    "syncs_cuda": syncs.syncs_document,
    "sds_results": sds_cli.results_document,
}
# documents with no JSON of their own: hand-written, or written from data the JSON does not hold
NOT_RENDERED = {"lownfe_tried", "mutation", "speed_cuda"}


def test_every_document_in_docs_is_listed() -> None:
    stems = {str(path.relative_to(DOCS).with_suffix("")) for path in DOCS.rglob("*.md")}
    assert stems == set(RENDERERS) | NOT_RENDERED
    assert all((DOCS / f"{stem}.json").is_file() for stem in RENDERERS)


@pytest.mark.parametrize("stem", sorted(RENDERERS))
def test_a_document_is_the_rendering_of_its_json(stem: str) -> None:
    data = json.loads((DOCS / f"{stem}.json").read_text())
    assert RENDERERS[stem](data) == (DOCS / f"{stem}.md").read_text()
