"""The README's sampler guide is what `samplers.bench.guide` renders from the committed benchmark documents, and the
guide refuses a pick, a figure or a 'same as the host' that the documents do not support."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from samplers.bench import guide

ROOT = Path(__file__).resolve().parents[1]


def test_readme_holds_the_rendered_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert guide.render() in readme, "README's guide differs from `python -m samplers.bench.guide`: paste its output"


def test_the_guide_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    guide.main([])
    assert capsys.readouterr().out.strip() == guide.render()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A copy of the documents the guide reads, to be edited by a test."""
    for name in (guide.ANALYTIC, guide.NETWORKS, guide.NETWORK_BENCH, guide.GUIDANCE):
        shutil.copy(guide.DOCS / name, tmp_path / name)
    return tmp_path


def _edit(docs: Path, name: str, change: Callable[[dict[str, Any]], Any]) -> None:
    data = json.loads((docs / name).read_text())
    change(data)
    (docs / name).write_text(json.dumps(data))


def _runs(data: dict[str, Any], case: str, side: str, label: str) -> list[dict[str, Any]]:
    return data["comparison"]["cases"][case][f"{side}_runs"][label]


def _scale(runs: list[dict[str, Any]], n_steps: int, factor: float) -> None:
    for r in runs:
        if r["n_steps"] == n_steps:
            r["median_err"] *= factor


def test_the_copy_renders_as_the_committed_documents(docs: Path) -> None:
    assert guide.render(docs) == guide.render()


def test_a_run_on_a_shorter_ode_does_not_count(docs: Path) -> None:
    # a singlestep run at 10 calls on the flow 'simple' grid ends higher (fewer steps): even a tiny error is no win
    def shorter_and_better(d: dict[str, Any]) -> None:
        runs = _runs(d, "flow_mixture/simple", "ours", "DPM-Solver++ 3S")
        short = next(r for r in runs if r["nfe"] <= 10 and r["n_steps"] < 10)
        short["median_err"] = 1e-12
    _edit(docs, guide.ANALYTIC, shorter_and_better)
    assert guide.render(docs) == guide.render()


def test_adaptive_runs_do_not_contest_a_step_count(docs: Path) -> None:
    def perfect(d: dict[str, Any]) -> None:
        for r in _runs(d, "ve_mixture/karras", "ours", "DPM-Solver++ adaptive"):
            r["median_err"] = 1e-12
    _edit(docs, guide.ANALYTIC, perfect)
    assert guide.render(docs) == guide.render()


@pytest.mark.parametrize(("document", "case", "side", "label", "steps", "factor", "refusal"), [
    # DPM-Solver 3M 10x worse at 10 steps on the digits network's Karras grid: DPM-Solver 2M beats it there
    (guide.NETWORKS, "digits_eps/karras", "ours", "DPM-Solver 3M", 10, 10.0,
     r"digits_eps: .* beats DPM-Solver 3M at 10 calls"),
    # the flow pick beaten at 40 steps on the flow mixture, a count its row ('10 steps or more') claims
    (guide.ANALYTIC, "flow_mixture/simple", "ours", "DPM-Solver 3M", 40, 100.0,
     r"flow_mixture: .* beats DPM-Solver 3M at 40 calls"),
    # our DPM-Solver++ 2M no longer the host's DPM++ 2M on one SD-type case
    (guide.ANALYTIC, "ve_mixture/exponential", "ours", "DPM-Solver++ 2M", 10, 1.001,
     r"ve_mixture/exponential: DPM-Solver\+\+ 2M .* differs"),
])
def test_an_unsupported_claim_is_refused(docs: Path, document: str, case: str, side: str, label: str, steps: int,
                                         factor: float, refusal: str) -> None:
    _edit(docs, document, lambda d: _scale(_runs(d, case, side, label), steps, factor))
    with pytest.raises(guide.GuideClaimError, match=refusal):
        guide.render(docs)


def test_the_figures_follow_the_documents(docs: Path) -> None:
    # ComfyUI's euler twice as bad on the flow mixture at 10 steps: 3.0x becomes 6.0x
    before = guide.render(docs)
    _edit(docs, guide.ANALYTIC, lambda d: _scale(_runs(d, "flow_mixture/simple", "theirs", "euler"), 10, 2.0))
    after = guide.render(docs)
    assert "has 3.0× (flow mixture)" in before and "has 6.0× (flow mixture)" in after


def test_the_stochastic_pick_is_the_closest_to_the_data(docs: Path) -> None:
    def swap(d: dict[str, Any]) -> None:
        rows = d["network_distribution"]["models"]["digits_eps"]["rows"]
        for c in rows["dpm_solver_pp_3m_sde"]:
            if c["budget"] == 10:
                c["fd"] = 0.1
    _edit(docs, guide.NETWORK_BENCH, swap)
    row = next(line for line in guide.render(docs).splitlines() if line.startswith("| variety"))
    assert "DPM-Solver++ 3M SDE (`dpm_solver_pp_3m_sde`, SD-type)" in row and "0.10 on the digits network" in row


def test_a_guidance_scale_where_3m_loses_is_refused(docs: Path) -> None:
    def beaten(d: dict[str, Any]) -> None:
        karras = d["median_error_over_data_std"]["12"]["karras"]
        karras["dpm_solver_pp_3m"]["8"] = karras["dpm_solver_3m"]["8"] / 2
    _edit(docs, guide.GUIDANCE, beaten)
    with pytest.raises(guide.GuideClaimError, match="CFG 12, Karras, 8 steps: dpm_solver_pp_3m beats dpm_solver_3m"):
        guide.render(docs)


def test_the_guidance_document_is_measured_again() -> None:
    committed = json.loads((guide.DOCS / guide.GUIDANCE).read_text())
    measured = guide.measure_guidance(committed["samples"])

    def flat(table: dict[str, Any]) -> dict[tuple[str, ...], float]:
        return {(cfg, grid, name, steps): e for cfg, by_grid in table.items() for grid, by_name in by_grid.items()
                for name, by_steps in by_name.items() for steps, e in by_steps.items()}
    assert flat(measured["median_error_over_data_std"]) == pytest.approx(
        flat(committed["median_error_over_data_std"]), rel=1e-6)


def test_against_their_best_leaves_out_the_samplers_that_skip_the_denoise(docs: Path) -> None:
    def their_best_halved_and_dpm_fast_perfect(d: dict[str, Any]) -> None:
        # ipndm on the CFG mixture's Karras grid is ComfyUI's best at 10 steps there (our 3M has 0.70x its error)
        _scale(_runs(d, "ve_mixture_cfg7.5/karras", "theirs", "ipndm"), 10, 0.5)
        for r in _runs(d, "ve_mixture_cfg7.5/karras", "theirs", "dpm_fast"):
            r["median_err"] = 1e-12
    before = guide.render(docs)
    _edit(docs, guide.ANALYTIC, their_best_halved_and_dpm_fast_perfect)
    after = guide.render(docs)
    assert "SD1.x / SDXL at 10 steps 0.70–1.06×" in before
    assert "SD1.x / SDXL at 10 steps 0.83–1.40×" in after
