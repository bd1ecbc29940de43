"""Small safetensors files with string metadata (calibrated grids, learned plans): write, and read with checks.

The `safetensors` package is imported here only, when a file is written or read (ComfyUI and the WebUI ship
it); sampling itself needs torch only. Errors name the file and what was expected, as the caller's error type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import torch

SUFFIX = ".safetensors"


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write `tensors` and `metadata` to `path` (SUFFIX appended when missing, folders created); returns the path."""
    from safetensors.torch import save_file

    target = Path(path)
    if target.suffix != SUFFIX:
        target = target.with_name(target.name + SUFFIX)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(target), metadata=dict(metadata))
    return target


def read_tensors(path: str | Path, *, kind: str, fmt: str, version: int, required: Collection[str],
                 error: type[Exception]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a file written by write_tensors whose metadata says format `fmt`, version `version`
    and which holds the `required` tensors; anything else raises `error` naming the file and the `kind` of file."""
    from safetensors import SafetensorError, safe_open

    source = Path(path)
    if not source.is_file():
        raise error(f"{kind} file {str(source)!r} does not exist")
    try:
        with safe_open(str(source), framework="pt") as handle:
            meta = handle.metadata() or {}
            names = list(handle.keys())  # safe_open handles list their tensors with keys()
            tensors = {k: handle.get_tensor(k) for k in names}
    except (SafetensorError, OSError) as err:
        raise error(f"{str(source)!r} is not a safetensors file: {err}") from None
    missing = sorted(set(required) - set(tensors))
    if meta.get("format") != fmt or missing:
        raise error(f"{str(source)!r} is not a {kind} file (no '{fmt}' metadata, or missing tensors {missing})")
    if meta.get("version") != str(version):
        raise error(f"{str(source)!r} has {kind} format version {meta.get('version')!r}; this version reads "
                    f"{version}")
    return tensors, meta
