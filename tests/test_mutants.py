"""The mutation check (dpmsolver_tools/mutants.py): which tokens it changes, and that it tells a test that pins a
behaviour from one that does not."""

from __future__ import annotations

from pathlib import Path

from dpmsolver_tools.mutants import mutants, run

SOURCE = '''"""Module docstring with 1 + 2."""

LIMIT: int = 3
"""An attribute docstring, 4 < 5."""


def clip(value: float, low: float = 0.0) -> float:
    """A docstring, 6 * 7."""
    if not value >= low and value is not None:
        return -low
    return f"{value + 1}" or value ** 2
'''


def test_every_operator_and_constant_of_the_code_and_nothing_else_is_changed() -> None:
    changes = {(m.site.line, m.site.before, m.site.after) for m in mutants(SOURCE)}
    assert changes == {
        (3, "3", "4"),
        (9, "not value >= low and value is not None", "not value >= low or value is not None"),
        (9, "not value >= low", "value >= low"),
        (9, "value >= low", "value > low"),
        (9, "value is not None", "value is None"),
        (10, "-low", "low"),
        (7, "0.0", "1.0"),  # a default value is code, its annotation is not
        (11, "f'{value + 1}' or value ** 2", "f'{value + 1}' and value ** 2"),
        (11, "value ** 2", "value * 2"),
        (11, "2", "3"),
    }  # the docstrings, the annotations and the f-string's `value + 1` are left alone
    assert len(changes) == len(list(mutants(SOURCE)))
    assert all(m.source != SOURCE and "Module docstring" in m.source for m in mutants(SOURCE))


def test_a_pinned_behaviour_kills_its_mutants_and_an_unpinned_one_survives(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\nUNUSED = 2\n")
    (tmp_path / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    one = run(Path("calc.py"), ["test_calc.py"], repo=tmp_path, timeout=120)
    assert {o.site.before: o.status for o in one} == {"a + b": "killed", "2": "survived"}
    assert [o.site.index for o in one] == [0, 1]  # site order: ast.walk is breadth first, so "2" comes first
    both = run(Path("calc.py"), ["test_calc.py"], repo=tmp_path, timeout=120, jobs=2)
    assert [(o.site, o.status) for o in both] == [(o.site, o.status) for o in one]
    assert [o.site.before for o in run(Path("calc.py"), ["test_calc.py"], repo=tmp_path, only=range(1, 2))] == ["a + b"]
    assert (tmp_path / "calc.py").read_text().endswith("UNUSED = 2\n")  # the mutants went to a copy
