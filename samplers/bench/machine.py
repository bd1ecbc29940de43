"""Host description stored with benchmark results: versions, CPU model, thread counts."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch


def cpu_model() -> str:
    """The CPU's marketing name when the OS exposes it, else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """torch/python versions, platform, CPU, logical CPUs and torch's intra-op threads."""
    return {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
