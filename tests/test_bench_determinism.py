"""samplers/bench/determinism.py on the CPU (the device run itself: docs/determinism_cuda.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from samplers.bench import determinism

pytest.importorskip("safetensors", reason="the demo networks' weights are safetensors files")


def test_on_the_cpu_the_rows_show_no_difference_except_the_adaptive_trajectory() -> None:
    rows = determinism.compare("cpu", ["dpm_solver_pp_2m_sde", "dpm_solver_pp_adaptive"], models=("digits_flow",))
    sde, adaptive = rows
    assert sde["cpu_vs_device"] == 0.0 and sde["repeat_equal"] and sde["batch_vs_alone"] < 1e-5
    assert adaptive["repeat_equal"] and adaptive["batch_vs_alone"] > 1e-4  # one step size for the whole batch
    assert "| digits_flow | `dpm_solver_pp_2m_sde` | 0.0e+00 | yes |" in determinism.markdown(rows)


def test_the_command_names_a_wrong_sampler_or_device(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        determinism.main(["--samplers", "dpm_solver_9"])
    assert "unknown sampler(s) dpm_solver_9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        determinism.main(["--device", "nodevice"])
    assert "--device 'nodevice' is not available" in capsys.readouterr().err


def test_the_command_writes_a_document_that_renders_from_its_json(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        assert determinism.main(["--device", "cpu", "--samplers", "dpm_solver_pp_2m",
                                 "--out", str(tmp_path / "doc")]) == 0
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    data = json.loads((tmp_path / "doc.json").read_text())
    text = (tmp_path / "doc.md").read_text()
    assert text == determinism.determinism_document(data) == capsys.readouterr().out
    assert text.startswith(f"# Same seed, same image: CPU against cpu\n\ncpu, torch {torch.__version__}, TF32 off; "
                           f"batch {determinism.BATCH}, {determinism.STEPS} steps, seed {determinism.SEED}\n\n")
    assert [(r["model"], r["sampler"]) for r in data["rows"]] == [("digits_eps", "dpm_solver_pp_2m"),
                                                                  ("digits_flow", "dpm_solver_pp_2m")]


@pytest.mark.parametrize("document", ["determinism_cuda.json", "determinism_cuda_tf32.json"])
def test_the_defaults_are_the_settings_the_committed_runs_record(document: str) -> None:
    """The README regenerates docs/determinism_cuda*.md with no size options: the defaults must be theirs."""
    data = json.loads((Path(__file__).resolve().parents[1] / "docs" / document).read_text())
    assert (data["batch"], data["steps"], data["seed"]) == (determinism.BATCH, determinism.STEPS, determinism.SEED)
