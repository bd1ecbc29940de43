"""Every relative link in README.md and docs/*.md points to a file of the repository and, where it names an anchor
in a Markdown file, to a heading of that file (GitHub's anchor rule), so moving a section cannot strand a link."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors of a Markdown file's headings; a repeated one gets '-1', '-2', ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(page.read_text()):
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            base = anchor(heading.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def test_the_anchor_rule() -> None:
    assert anchor("Against ComfyUI's built-in samplers: 10 model calls vs 20") == (
        "against-comfyuis-built-in-samplers-10-model-calls-vs-20")
    assert anchor("See it work: `python -m dpmsolver_demo`") == "see-it-work-python--m-dpmsolver_demo"
    assert anchor("A correction: RMSE verdicts on 128 noises") == "a-correction-rmse-verdicts-on-128-noises"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for line in _prose(page.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{target}: no such file")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{target}: no such heading")
    assert not broken, broken
