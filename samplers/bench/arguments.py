"""Argument types shared by the benchmark commands: comma-separated lists, checked while argparse parses them, so a
wrong value is a usage error that names the option, never a silently empty run."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection


def comma_list(text: str) -> list[str]:
    """The stripped, non-empty items of a comma-separated value, in order."""
    return [item.strip() for item in text.split(",") if item.strip()]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_ints(text: str) -> list[int]:
    """A comma-separated list of integers >= 1, sorted and without repeats."""
    try:
        values = sorted({int(item) for item in comma_list(text)})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def names_in(known: Collection[str], what: str = "sampler") -> Callable[[str], list[str]]:
    """An argparse type: the items of a comma-separated value, at least one, each one of `known` (an unknown one is
    an error that names it and lists `known`)."""

    def parse(text: str) -> list[str]:
        names = comma_list(text)
        if not names:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} names, got {text!r}")
        unknown = [name for name in names if name not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {', '.join(unknown)}; choose from "
                                             f"{', '.join(known)}")
        return names

    return parse
