"""The host description stored with benchmark results (samplers/bench/machine.py)."""

from __future__ import annotations

import io
import os
import platform
from typing import Any

import pytest
import torch

from samplers.bench import machine


def test_cpu_model_is_the_whole_model_name_line(monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Example CPU @ 2.20GHz: stepping 7 \n"
    monkeypatch.setattr(machine, "open", lambda *args, **kwargs: io.StringIO(cpuinfo), raising=False)
    assert machine.cpu_model() == "Example CPU @ 2.20GHz: stepping 7"


@pytest.mark.parametrize(("processor", "expected"), [("", "x86_64"), ("i386", "i386")])
def test_cpu_model_without_proc_cpuinfo_asks_the_platform(monkeypatch: pytest.MonkeyPatch, processor: str,
                                                         expected: str) -> None:
    def no_file(*args: Any, **kwargs: Any) -> io.StringIO:
        raise OSError("no /proc here")

    monkeypatch.setattr(machine, "open", no_file, raising=False)
    monkeypatch.setattr(machine.platform, "processor", lambda: processor)
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert machine.cpu_model() == expected


def test_machine_info_names_the_versions_and_threads() -> None:
    info = machine.machine_info()
    assert info["python"] == platform.python_version() and info["torch"] == torch.__version__
    assert info["cpu_count"] == os.cpu_count() and info["torch_threads"] == torch.get_num_threads()
    assert info["platform"] == platform.platform() and info["cpu"]
