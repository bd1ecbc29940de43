"""`python -m dpmsolver_demo sds`: SDS refinement on the demo networks moves given images toward the digits, the
wide random-order range over-smooths, results are fixed by the seed, and the command writes its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_demo_cli import _run

from dpmsolver_demo.sds import VARIANTS, demo_inputs, greyness, load_training_digits, nearest_digit_distance, refine
from dpmsolver_demo.weights_io import MODEL_NAMES, load_model

pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (requirements-dev.txt)")

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
BY_KEY = {v.key: v for v in VARIANTS}


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_training_digits()


def test_inputs_are_fixed_by_the_seed(digits: torch.Tensor) -> None:
    a, captions = demo_inputs(digits, 0)
    b, _ = demo_inputs(digits, 0)
    c, _ = demo_inputs(digits, 1)
    assert a.shape == (8, 1, 8, 8) and len(captions) == 8
    assert torch.equal(a, b)
    assert not torch.equal(a[:2], c[:2]) and torch.equal(a[2:], c[2:])  # only the noisy inputs draw from the seed
    assert nearest_digit_distance(a, digits).min() > 0.25  # every input is far from the data


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_annealed_sds_moves_every_input_toward_the_digits(name: str, digits: torch.Tensor) -> None:
    model = load_model(name)
    x0, _ = demo_inputs(digits, 0)
    before = nearest_digit_distance(x0, digits)
    for key in ("sds_sgd", "sds_adam"):
        out, calls, _ = refine(model, model.schedule, x0, BY_KEY[key], 60, seed=0)
        after = nearest_digit_distance(out, digits)
        assert calls == 60
        assert (after < before).all(), (key, before, after)
        assert after.mean() < 0.6 * before.mean(), (key, before.mean(), after.mean())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_wide_range_in_random_order_over_smooths(name: str, digits: torch.Tensor) -> None:
    """The same 100 sigmas from 3 to 0.05: annealed, the images end as black-and-white as the digits; in random
    order they stay grey (the mode of a heavily smoothed density) and farther from every digit."""
    model = load_model(name)
    x0, _ = demo_inputs(digits, 0)
    annealed, _, _ = refine(model, model.schedule, x0, BY_KEY["sds_wide"], 100, seed=0)
    shuffled, _, _ = refine(model, model.schedule, x0, BY_KEY["sds_wide_random"], 100, seed=0)
    assert abs(float(greyness(annealed).mean()) - float(greyness(digits).mean())) < 0.03
    assert greyness(shuffled).mean() > greyness(annealed).mean() + 0.05
    assert nearest_digit_distance(shuffled, digits).mean() > nearest_digit_distance(annealed, digits).mean() + 0.03


def test_results_are_fixed_by_the_seed_and_sdi_ignores_it(digits: torch.Tensor) -> None:
    model = load_model("digits_flow")
    x0, _ = demo_inputs(digits, 0)
    sds = BY_KEY["sds_sgd"]
    a, _, _ = refine(model, model.schedule, x0, sds, 10, seed=3)
    b, _, _ = refine(model, model.schedule, x0, sds, 10, seed=3)
    c, _, _ = refine(model, model.schedule, x0, sds, 10, seed=4)
    assert torch.equal(a, b) and not torch.allclose(a, c, atol=1e-3)
    sdi = BY_KEY["sdi_sgd"]
    d, calls, _ = refine(model, model.schedule, x0, sdi, 10, seed=3)
    e, _, _ = refine(model, model.schedule, x0, sdi, 10, seed=4)
    assert calls == 10 * (1 + 4)  # one call per step and 4 for each inversion
    assert torch.equal(d, e)


def test_command_writes_picture_table_and_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: no picture is written")
    rc, text, err = _run(["sds", "--steps", "8", "--out", str(tmp_path), "--seed", "2"])
    assert rc == 0, err
    assert (tmp_path / "sds_before_after.png").read_bytes()[:8] == PNG
    md = (tmp_path / "sds_results.md").read_text(encoding="utf-8")
    assert md.startswith("Regenerate: `python -m dpmsolver_demo sds --steps 8 --out ")
    assert "| digits_flow | SDI, annealed, SGD |" in md and "| digits_eps | before (inputs) |" in text
    res = json.loads((tmp_path / "sds_results.json").read_text(encoding="utf-8"))
    assert res["steps"] == 8 and res["seed"] == 2 and len(res["captions"]) == 8
    assert [p["model"] for p in res["panels"]] == list(MODEL_NAMES)
    for panel in res["panels"]:
        assert [v["key"] for v in panel["variants"]] == [v.key for v in VARIANTS]
        for v in panel["variants"]:
            assert v["model_calls"] == 8 * (5 if v["mode"] == "sdi" else 1)
            assert len(v["distance"]) == 8 and all(d >= 0 for d in v["distance"])
        assert panel["variants"][-1]["seed_change"] == [0.0] * 8  # SDI: no sampling noise


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    for args in (["--steps", "1"], ["--models", "digits_gan"], ["--threads", "0"], ["--no-such-flag"]):
        rc, _, err = _run(["sds", *args, "--out", str(tmp_path), "--no-plots"])
        assert rc == 2, args
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("python -m dpmsolver_demo sds: error:"), err


def test_subcommand_exit_code() -> None:
    proc = subprocess.run([sys.executable, "-m", "dpmsolver_demo", "sds", "--steps", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--steps: 0 is impossible" in proc.stderr
