"""samplers/bench/syncs.py off CUDA: the per-step split of the counts, the table, and the clear refusal without a
CUDA device (the counting itself: tests/test_cuda.py); and the benches' shared publish()."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from samplers.bench import syncs


def test_per_step_splits_the_counts_into_a_slope_and_a_fixed_cost() -> None:
    assert syncs.per_step({10: 3, 20: 3}) == {"per_step": 0.0, "per_run_fixed": 3.0}
    assert syncs.per_step({10: 24, 20: 44}) == {"per_step": 2.0, "per_run_fixed": 4.0}


def test_table_lists_both_sides() -> None:
    result = {"steps": [10, 20], "ours": {"a": {"10": 2, "20": 2, "per_step": 0.0, "per_run_fixed": 2.0}},
              "comfyui": {"b": {"10": 12, "20": 22, "per_step": 1.0, "per_run_fixed": 2.0}}}
    result["ours"]["c"] = {"10": 9, "20": 9, "per_step": 0.0, "per_run_fixed": 9.0, "adaptive": True}
    rows = syncs.syncs_table(result).splitlines()
    assert rows[2] == "| ours | `a` | 2 | 2 | 0 | 2 |"
    assert rows[3] == "| ours | `c` | 9 | 9 | — (one per attempt) | 9 |"
    assert rows[4] == "| ComfyUI | `b` | 12 | 22 | 1 | 2 |"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_the_command_says_what_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        syncs.main([])
    assert "must be an available CUDA device" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="device 'cpu'"):
        syncs.measure_syncs("cpu")


def test_the_counter_counts_each_sync_warning_and_restores_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off CUDA, torch's warn mode is stood in for: every warning with the sync text counts, even repeated from one
    line, the one-off prototype notice does not, and the mode goes back to "default" when the run fails too."""
    modes: list[str] = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def run() -> None:
        warnings.warn("Sync debug mode is a prototype feature", UserWarning, stacklevel=1)
        for _ in range(3):
            warnings.warn(f"Operation {syncs.SYNC_WARNING}", UserWarning, stacklevel=1)

    assert syncs.count_syncs(run) == 3 and modes == ["warn", "default"]
    with pytest.raises(ZeroDivisionError):
        syncs.count_syncs(lambda: 1 / 0)
    assert modes[2:] == ["warn", "default"]


def test_a_device_other_than_cuda_is_refused_where_cuda_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="device 'cpu' must be an available CUDA device"):
        syncs.measure_syncs("cpu")


def test_the_command_prints_the_table_of_a_measurement(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    result = {"device": "GPU", "torch": "2.x", "shape": [1, 4, 128, 128], "steps": [10, 20],
              "ours": {"a": {"10": 2, "20": 2, "per_step": 0.0, "per_run_fixed": 2.0}}, "comfyui": {}}
    monkeypatch.setattr(syncs, "measure_syncs", lambda device: result)
    assert syncs.main([]) == 0
    assert capsys.readouterr().out == syncs.syncs_document(result)


def test_publish_prints_and_writes_the_json_and_the_markdown(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """samplers.bench.report.publish and document, shared by the syncs, ksampler and determinism commands."""
    from samplers.bench.report import document, publish

    text = document("Title", "header line", "| a |")
    assert text == "# Title\n\nheader line\n\n| a |\n"
    publish(str(tmp_path / "doc"), text, {"x": 1})
    assert capsys.readouterr().out == text
    assert (tmp_path / "doc.md").read_text() == text
    assert (tmp_path / "doc.json").read_text() == '{\n "x": 1\n}\n'
    publish(None, "t\n", {})
    assert capsys.readouterr().out == "t\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json", "doc.md"]
