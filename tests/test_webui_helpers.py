"""The WebUI adapter's helpers on their own: batch seeds, progress ticks, the family guard, the job's samplers and
loading the core."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dpmsolver_webui import core, job
from dpmsolver_webui.sampler_fn import batch_seed, make_sampler_function, progress_callback


@pytest.mark.parametrize(("p", "expected"), [
    (SimpleNamespace(seeds=[5, 6]), [5, 6]),  # one per image
    (SimpleNamespace(seeds=[5, 6, 7]), 5),  # not one per image: the first
    (SimpleNamespace(all_seeds=[10, 11, 12, 13], iteration=1, batch_size=2), 12),  # batch 1's first image
    (SimpleNamespace(all_seeds=[10, 11, 12, 13], iteration=5, batch_size=2), 13),  # past the end: the last
    (SimpleNamespace(all_seeds=[10, 11]), 10),
    (SimpleNamespace(all_seeds=[10, 11, 12], iteration=1), 11),  # no batch size: one image per batch
    (SimpleNamespace(all_seeds=[]), None),
    (SimpleNamespace(), None),
], ids=["per image", "first of seeds", "batch start", "clamped", "no iteration", "no batch size", "empty", "none"])
def test_batch_seed(p: SimpleNamespace, expected: Any) -> None:
    assert batch_seed(p, 2) == expected


def ticks(intervals: int, calls: int, total: int | None) -> list[int]:
    """The steps the WebUI's callback sees when the core reports `calls` model calls of `total`."""
    seen: list[int] = []
    report = progress_callback(lambda info: seen.append(info["i"]), intervals)
    assert report is not None
    for call in range(calls):
        report({"i": call, "nfe": call + 1, "total": total} if total else {"i": call})
    return seen


def test_progress_ticks_once_per_sigma_interval() -> None:
    assert ticks(intervals=2, calls=6, total=6) == [0, 1]  # a singlestep sampler: 3 calls per interval
    assert ticks(intervals=1, calls=3, total=3) == [0]
    assert ticks(intervals=2, calls=6, total=4) == [0, 1]  # more calls than announced: the last interval
    assert ticks(intervals=3, calls=3, total=None) == [0, 1, 2]  # no call count: the core's step index
    assert progress_callback(None, 3) is None


@dataclass
class RecordingEntry:
    """A registry entry stand-in that records the options the sampler function passes."""

    name: str = "recording"
    label: str = "Recording"
    description: str = "records its options"
    defaults: dict[str, Any] = field(default_factory=lambda: {"schedule": "ve"})
    received: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, model: Any, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Any = None, callback: Any = None,
                 disable: Any = None, **options: Any) -> torch.Tensor:
        self.received.append(options)
        return x


@pytest.mark.parametrize(("sigmas", "schedule"), [([1.0, 0.5, 0.0], "flow"), ([3.0, 0.5, 0.0], None)])
def test_a_grid_starting_above_one_is_not_sampled_as_a_flow(sigmas: list[float], schedule: str | None) -> None:
    """The model says flow (a 'const' predictor); only a grid that starts at 1 is sampled as one."""
    entry = RecordingEntry()
    model = SimpleNamespace(p=SimpleNamespace(dpmsolver_ext_options={}),
                            inner_model=SimpleNamespace(predictor=SimpleNamespace(prediction_type="const")))
    make_sampler_function(entry)(model, torch.zeros(1, 4), torch.tensor(sigmas))
    assert entry.received[-1].get("schedule") == schedule


@pytest.mark.parametrize(("p", "expected"), [
    (SimpleNamespace(sampler_name="Main", enable_hr=True, hr_sampler_name="Hires"), ["main", "hires"]),
    (SimpleNamespace(sampler_name="Main", enable_hr=True, hr_sampler_name=job.SAME_SAMPLER), ["main"]),
    (SimpleNamespace(sampler_name="Main", enable_hr=True, hr_sampler_name=None), ["main"]),
    (SimpleNamespace(sampler_name="Main", enable_hr=False, hr_sampler_name="Hires"), ["main"]),  # hires fix off
    (SimpleNamespace(sampler_name="Main", hr_sampler_name="Hires"), ["main"]),  # a job without hires fix
    (SimpleNamespace(sampler_name="Euler", enable_hr=True, hr_sampler_name="hires"), ["hires"]),  # not ours
], ids=["hires", "same sampler", "no hires sampler", "hires off", "no enable_hr", "main not ours"])
def test_the_jobs_entries_are_the_main_and_the_hires_sampler(monkeypatch: pytest.MonkeyPatch, p: SimpleNamespace,
                                                              expected: list[str]) -> None:
    for name in ("main", "hires"):
        monkeypatch.setitem(job.ENTRIES, name, name)
        monkeypatch.setitem(job.LABELS, name.title(), name)
    assert job.job_entries(p) == expected


def test_a_core_that_cannot_be_located_is_an_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, core.CORE_MODULE, raising=False)
    monkeypatch.setattr(core.importlib.util, "spec_from_file_location", lambda *args, **kwargs: None)
    with pytest.raises(ImportError, match="cannot load the DPM-Solver core"):
        core.load_core()
