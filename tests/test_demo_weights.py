"""Demo weights: the safetensors reader/writer, SHA-256 verification (a corrupted copy fails clearly), metadata,
reproducible training, and that `import samplers` stays torch-only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dpmsolver_demo import train
from dpmsolver_demo.net import NetConfig
from dpmsolver_demo.weights_io import (
    MODEL_NAMES,
    WeightsError,
    from_tensors,
    load_model,
    load_safetensors,
    recorded_checksums,
    save_safetensors,
    sha256_file,
    weights_path,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_committed_weights_match_recorded_checksums(name: str) -> None:
    path = weights_path(name)
    assert path.stat().st_size < 2_000_000
    assert recorded_checksums()[path.name] == sha256_file(path)
    model = load_model(name)
    assert model.sha256 == sha256_file(path)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_metadata_describes_the_model(name: str) -> None:
    _, meta = load_safetensors(weights_path(name))
    for key in ("prediction", "schedule", "dataset", "training_command", "model_version", "config", "training"):
        assert meta.get(key), key
    assert meta["training_command"].startswith("python -m dpmsolver_demo.train")
    assert "load_digits" in meta["dataset"]
    schedule = json.loads(meta["schedule"])
    if name == "digits_eps":
        assert meta["prediction"].startswith("eps")
        assert schedule == {"type": "sd_discrete", "timesteps": 1000, "beta_schedule": "scaled_linear",
                            "beta_start": 0.00085, "beta_end": 0.012}
    else:
        assert meta["prediction"].startswith("v (velocity v = eps - x0)")
        assert schedule["type"] == "rectified_flow"


def _copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / f"{name}.safetensors"
    dst.write_bytes(weights_path(name).read_bytes())
    return dst


def test_corrupted_copy_fails_with_clear_message(tmp_path: Path) -> None:
    path = _copy(tmp_path, "digits_eps")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in a weight
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"checksum mismatch for digits_eps weights .*SHA-256") as err:
        load_model("digits_eps", path=path)
    assert "git checkout -- dpmsolver_demo/weights" in str(err.value)
    assert "python -m dpmsolver_demo.train" in str(err.value)


def test_truncated_and_missing_files_fail(tmp_path: Path) -> None:
    path = _copy(tmp_path, "digits_flow")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_model("digits_flow", path=path)
    with pytest.raises(WeightsError, match="not found"):
        load_model("digits_flow", path=tmp_path / "nothing.safetensors")
    with pytest.raises(WeightsError, match="unknown demo model"):
        load_model("digits_gan")
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        load_safetensors(path)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    tensors = {"b": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": torch.tensor([1.5], dtype=torch.float64),
               "empty": torch.zeros(0, 4)}
    path = tmp_path / "t.safetensors"
    save_safetensors(path, tensors, {"k": "v"})
    back, meta = load_safetensors(path)
    assert meta == {"k": "v"}
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert header_len % 8 == 0


def test_the_header_is_padded_to_8_bytes_and_written_in_one_order(tmp_path: Path) -> None:
    """The tensor data starts 8-byte aligned whatever the header's length, and the same tensors and metadata give
    the same bytes whatever order the metadata was given in (the committed weights' SHA-256 depends on it)."""
    tensors = {"w": torch.arange(3, dtype=torch.float32)}
    for extra in range(8):
        path = tmp_path / f"pad{extra}.safetensors"
        save_safetensors(path, tensors, {"k": "v" * extra})
        assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0, extra
        assert torch.equal(load_safetensors(path)[0]["w"], tensors["w"])
    save_safetensors(tmp_path / "ab.safetensors", tensors, {"a": "1", "b": "2"})
    save_safetensors(tmp_path / "ba.safetensors", tensors, {"b": "2", "a": "1"})
    assert (tmp_path / "ab.safetensors").read_bytes() == (tmp_path / "ba.safetensors").read_bytes()


def test_a_file_of_metadata_only_loads_and_a_header_past_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.safetensors"
    save_safetensors(path, {}, {"k": "v"})  # the header is the whole file after its length
    assert load_safetensors(path) == ({}, {"k": "v"})
    data = path.read_bytes()
    path.write_bytes((len(data) - 4).to_bytes(8, "little") + data[8:])  # 4 bytes longer than what follows
    with pytest.raises(WeightsError, match="header length beyond the end of the file"):
        load_safetensors(path)


def test_state_dicts_that_do_not_fit_the_network_are_refused() -> None:
    tensors, meta = load_safetensors(weights_path("digits_eps"))
    missing = dict(tensors)
    missing.pop(next(iter(missing)))
    extra = {**tensors, "spare.weight": torch.zeros(1)}
    for bad in (missing, extra):
        with pytest.raises(WeightsError, match="do not fit the demo network"):
            from_tensors("digits_eps", bad, meta)


@pytest.mark.parametrize(("name", "schedule", "sigma_min", "sigma_max"),
                         [("digits_eps", "ve", 0.029168, 14.614646), ("digits_flow", "flow", 0.002994, 1.0)])
def test_loaded_models_are_frozen_and_say_their_sigma_range(name: str, schedule: str, sigma_min: float,
                                                             sigma_max: float) -> None:
    model = load_model(name)
    assert model.schedule == schedule
    assert model.sigma_min == pytest.approx(sigma_min, rel=1e-4) and model.sigma_max == pytest.approx(sigma_max, 1e-6)
    assert (model.sigma_min, model.sigma_max) == (model.model.sigma_min, model.model.sigma_max)
    assert not any(p.requires_grad for p in model.net.parameters())  # no autograd graph through the weights
    assert not model.net.training


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_default_architecture_is_the_committed_one(name: str) -> None:
    """`python -m dpmsolver_demo.train` at its defaults builds the network the committed weights were trained as."""
    _, meta = load_safetensors(weights_path(name))
    assert json.loads(meta["config"]) == NetConfig().as_dict()


def test_files_read_by_the_safetensors_package() -> None:
    st = pytest.importorskip("safetensors.torch")
    ours, _ = load_safetensors(weights_path("digits_eps"))
    theirs = st.load_file(str(weights_path("digits_eps")))
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_training_is_reproducible() -> None:
    torch.set_num_threads(1)
    cfg = train.TrainConfig(steps=4, batch=8, warmup=2)
    data = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    small = NetConfig(ch=8, emb=16, freq=4, groups=4)
    for kind in ("eps", "flow"):
        a, info_a = train.train_one(kind, cfg, small, data, log_every=0)
        b, info_b = train.train_one(kind, cfg, small, data, log_every=0)
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), kind
        assert info_a["final_loss"] == info_b["final_loss"]
        meta = train.metadata(kind, cfg, small, info_a["final_loss"], threads=1)
        assert "seconds" not in json.loads(meta["training"])  # no timings: the file must be reproducible


def test_samplers_import_stays_torch_only() -> None:
    code = ("import sys, samplers, samplers.bench.cli; "
            "bad = [m for m in ('dpmsolver_demo', 'sklearn', 'scipy', 'matplotlib') if m in sys.modules]; "
            "print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
