"""samplers/tensorfile.py: files of calibrated grids and learned plans are written where asked (folders made, the
suffix added) and read back only when their metadata and tensors are what the reader expects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samplers.tensorfile import read_tensors, write_tensors


class FileError(ValueError):
    pass


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    return read_tensors(path, kind="test", fmt="dpmsolver_test", version=2, required=("sigmas",), error=FileError)


def test_a_file_is_written_in_new_folders_and_read_back(tmp_path: Path) -> None:
    sigmas = torch.tensor([14.6, 1.0, 0.0], dtype=torch.float64)
    path = write_tensors(tmp_path / "a" / "b" / "grid", {"sigmas": sigmas}, {"format": "dpmsolver_test",
                                                                           "version": "2"})
    assert path == tmp_path / "a" / "b" / "grid.safetensors" and path.is_file()
    tensors, meta = read(path)
    assert torch.equal(tensors["sigmas"], sigmas) and tensors["sigmas"].dtype == torch.float64
    assert meta == {"format": "dpmsolver_test", "version": "2"}
    assert write_tensors(path, {"sigmas": sigmas}, {"format": "dpmsolver_test", "version": "2"}) == path


@pytest.mark.parametrize(("tensors", "metadata", "message"), [
    ({"sigmas": torch.ones(2)}, {"format": "other", "version": "2"}, "is not a test file .no 'dpmsolver_test'"),
    ({"sigmas": torch.ones(2)}, {"version": "2"}, "is not a test file .no 'dpmsolver_test'"),
    ({"other": torch.ones(2)}, {"format": "dpmsolver_test", "version": "2"}, r"missing tensors \['sigmas'\]"),
    ({"sigmas": torch.ones(2)}, {"format": "dpmsolver_test", "version": "3"}, "version '3'; this version reads 2"),
])
def test_a_file_of_another_kind_is_refused_naming_it(tmp_path: Path, tensors: dict[str, torch.Tensor],
                                                      metadata: dict[str, str], message: str) -> None:
    path = write_tensors(tmp_path / "file", tensors, metadata)
    with pytest.raises(FileError, match=f"{path.name}.*{message}"):
        read(path)


def test_a_missing_or_foreign_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileError, match=r"test file .*nothing\.safetensors' does not exist"):
        read(tmp_path / "nothing.safetensors")
    (tmp_path / "text.safetensors").write_text("not tensors")
    with pytest.raises(FileError, match=r"text\.safetensors' is not a safetensors file"):
        read(tmp_path / "text.safetensors")
