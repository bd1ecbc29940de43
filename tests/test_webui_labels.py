"""WebUI labels: readable, never ending with a scheduler word, never colliding with built-in labels or aliases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dpmsolver_webui.labels import (
    KNOWN_BUILTIN_SAMPLERS,
    KNOWN_SCHEDULER_WORDS,
    aliases,
    label_problems,
    webui_label,
)
from dpmsolver_webui.schedule import SCHEDULER_LABEL, SCHEDULER_NAME
from samplers import SAMPLERS

WORDS = (*KNOWN_SCHEDULER_WORDS, SCHEDULER_LABEL, SCHEDULER_NAME)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_registry_label_is_a_valid_webui_label(name: str) -> None:
    entry = SAMPLERS[name]
    assert label_problems(entry.label, WORDS, KNOWN_BUILTIN_SAMPLERS) == []
    assert webui_label(entry, WORDS, KNOWN_BUILTIN_SAMPLERS) == entry.label
    assert aliases(entry) == [entry.name]


def test_labels_and_aliases_are_unique_ignoring_case() -> None:
    names = [n.lower() for e in SAMPLERS.values() for n in (e.label, *aliases(e))]
    assert len(names) == len(set(names))
    assert not set(names) & {b.lower() for b in KNOWN_BUILTIN_SAMPLERS}


@pytest.mark.parametrize(("label", "problem"), [
    ("DPM-Solver++ 2M Karras", "scheduler word 'Karras'"),
    ("DPM-Solver uniform", "scheduler word"),  # reForge strips case-insensitively
    ("DPM-Solver Beta", "scheduler word 'Beta'"),
    ("DPM-Solver logSNR uniform", "scheduler word"),
    ("DPM++ 2M", "collides"),
    ("dpm fast", "collides"),
    ("DPM-Solver, fast", "','"),
    ("DPM-Solver: fast", "':'"),
    (" DPM-Solver", "whitespace"),
])
def test_label_problems_are_detected(label: str, problem: str) -> None:
    problems = label_problems(label, WORDS, KNOWN_BUILTIN_SAMPLERS)
    assert any(problem in p for p in problems), problems


def test_invalid_label_falls_back_to_label_with_registry_name() -> None:
    entry = SimpleNamespace(name="dpm_solver_karras_thing", label="DPM-Solver Karras")
    assert webui_label(entry, WORDS, []) == "DPM-Solver Karras (dpm_solver_karras_thing)"
    taken = SimpleNamespace(name="dpm_solver_x", label="DPM++ 2M")
    assert webui_label(taken, WORDS, KNOWN_BUILTIN_SAMPLERS) == "DPM++ 2M (dpm_solver_x)"
    hopeless = SimpleNamespace(name="a,b", label="A, B")
    with pytest.raises(ValueError, match="no valid WebUI label"):
        webui_label(hopeless, WORDS, [])
