"""Make the repository root importable as in a host checkout (`import samplers`)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config: object) -> None:
    """The tests use small tensors: one thread avoids oversubscription on a loaded 2-core machine."""
    import torch

    torch.set_num_threads(1)
