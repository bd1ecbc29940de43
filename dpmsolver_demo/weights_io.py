"""Reading and writing the demo weights: the safetensors format (written here from its public spec, so the
demo needs no package beyond torch), SHA-256 verification against `weights/SHA256SUMS`, and model loading.

File layout (safetensors): an 8-byte little-endian header length N, N bytes of JSON
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`, then the raw
little-endian tensor bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SUMS_FILE = "SHA256SUMS"
MODEL_NAMES = ("digits_eps", "digits_flow")

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32}
_NAMES = {v: k for k, v in _DTYPES.items()}


class WeightsError(RuntimeError):
    """A weights file is missing, malformed, or does not match its recorded SHA-256 checksum."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Write `tensors` (contiguous CPU copies, sorted by name) and string `metadata` as a safetensors file."""
    if sys.byteorder != "little":
        raise WeightsError("writing safetensors needs a little-endian machine")
    header: dict[str, Any] = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in _NAMES:
            raise WeightsError(f"tensor {name}: dtype {t.dtype} is not supported")
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: ({name: tensor}, metadata). Raises WeightsError on a malformed file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        if n > len(data) - 8:
            raise ValueError("header length beyond the end of the file")
        header = json.loads(data[8:8 + n].decode("utf-8"))
        metadata = {str(k): str(v) for k, v in header.pop("__metadata__", {}).items()}
        body = memoryview(data)[8 + n:]
        tensors = {}
        for name, info in header.items():
            begin, end = info["data_offsets"]
            dtype = _DTYPES[info["dtype"]]
            if not 0 <= begin <= end <= len(body):
                raise ValueError(f"tensor {name} lies outside the file")
            if end > begin:
                flat = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype)
            else:
                flat = torch.empty(0, dtype=dtype)
            tensors[name] = flat.reshape(info["shape"])
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError, RuntimeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors file ({exc})") from None
    return tensors, metadata


def recorded_checksums(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, str]:
    """{file name: sha256} from weights/SHA256SUMS (the `sha256sum` format)."""
    sums: dict[str, str] = {}
    path = Path(weights_dir) / SUMS_FILE
    if not path.exists():
        return sums
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def verify(path: str | Path, name: str) -> str:
    """Check the file's SHA-256 against the checksum recorded for model `name`; returns the digest."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights of {name} not found at {path}: restore them with `git checkout -- "
                           "dpmsolver_demo/weights` or train them with `python -m dpmsolver_demo.train`")
    expected = recorded_checksums().get(f"{name}.safetensors")
    if expected is None:
        raise WeightsError(f"no SHA-256 recorded for {name} in {WEIGHTS_DIR / SUMS_FILE}")
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"checksum mismatch for {name} weights {path}: SHA-256 {actual[:16]}... but "
                           f"{expected[:16]}... is recorded in dpmsolver_demo/weights/{SUMS_FILE} (file corrupted "
                           "or modified: restore it with `git checkout -- dpmsolver_demo/weights` or retrain with "
                           "`python -m dpmsolver_demo.train`)")
    return actual


@dataclass
class DemoModel:
    """A loaded demo model: the sigma-space `model(x, sigma) -> D`, its family ('ve' or 'flow'), its sigma
    range, the bare network, and the file's metadata."""

    name: str
    model: Any
    schedule: str
    sigma_min: float
    sigma_max: float
    net: torch.nn.Module
    metadata: dict[str, str]
    sha256: str

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        return self.model(x, sigma, **extra_args)


def load_model(name: str, path: str | Path | None = None, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu") -> DemoModel:
    """Load demo model `name` (one of MODEL_NAMES) after checking its SHA-256; `path` overrides the file (its
    checksum must still match the recorded one)."""
    if name not in MODEL_NAMES:
        raise WeightsError(f"unknown demo model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    file = Path(path) if path is not None else weights_path(name)
    digest = verify(file, name)
    tensors, meta = load_safetensors(file)
    return from_tensors(name, tensors, meta, dtype=dtype, device=device, sha256=digest, source=str(file))


def from_tensors(name: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str],
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", sha256: str = "",
                 source: str = "tensors") -> DemoModel:
    """Build the network from a state dict and the file's metadata, wrapped for sigma space (no checksum)."""
    from .net import NetConfig, TinyUNet
    from .wrappers import DiscreteEpsModel, FlowVModel, sd_alphas_cumprod

    try:
        config = NetConfig(**json.loads(meta["config"]))
        net = TinyUNet(config)
        net.load_state_dict(dict(tensors), strict=True)
        schedule = json.loads(meta["schedule"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{source}: weights or metadata do not fit the demo network ({exc})") from None
    net = net.to(device=device, dtype=dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    meta = dict(meta)
    if schedule["type"] == "sd_discrete":
        abar = sd_alphas_cumprod(schedule["timesteps"], schedule["beta_start"], schedule["beta_end"])
        wrapped: Any = DiscreteEpsModel(net, abar)
        return DemoModel(name, wrapped, "ve", wrapped.sigma_min, wrapped.sigma_max, net, meta, sha256)
    wrapped = FlowVModel(net, schedule["timestep_scale"])
    return DemoModel(name, wrapped, "flow", wrapped.sigma_min, 1.0, net, meta, sha256)
