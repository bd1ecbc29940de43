"""Mutation check: does the test suite notice a one-token change to a module?

    python -m dpmsolver_tools.mutants samplers/driver.py --tests tests/test_edges.py,tests/test_pc.py \
        --json /tmp/driver_mutants.json

Each mutant changes one operator or constant of the module's code (docstrings, annotations and f-strings are left
alone): + <-> -, * <-> /, ** -> *, // -> /, % -> //, < <-> <=, > <-> >=, == <-> !=, is <-> is not, in <-> not in,
and <-> or, a unary minus or `not` dropped, an integer n -> n + 1, a float f -> 2f (0 -> 1), True <-> False.
The repository is copied to a scratch folder once; every mutant is written there in turn and the tests run with
`pytest -x`. A mutant the tests pass is a survivor: either a change that means the same (a tolerance doubled, a
`strict=True` dropped) or a behaviour no test pins. Results: docs/mutation.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

BINARY_SWAPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                                  ast.Pow: ast.Mult, ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv}
COMPARE_SWAPS: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                                   ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
                                   ast.In: ast.NotIn, ast.NotIn: ast.In}
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Site:
    """Where a mutant changes the module: its index among the sites, its line, the expression before and after."""

    index: int
    line: int
    before: str
    after: str


@dataclass
class Mutant:
    """One changed token and the whole mutated module's source."""

    site: Site
    source: str


@dataclass
class Outcome:
    """What the tests made of a mutant: 'killed', 'survived' or 'timeout', and the seconds they took."""

    site: Site
    status: str
    seconds: float


def _untouchable(tree: ast.AST) -> set[int]:
    """ids of the nodes left alone: docstrings, annotations and f-strings."""
    nodes: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
            nodes += [a.annotation for a in every if a is not None and a.annotation is not None]
            nodes += [node.returns] if node.returns is not None else []
        if isinstance(node, ast.AnnAssign | ast.JoinedStr):
            nodes.append(node.annotation if isinstance(node, ast.AnnAssign) else node)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            nodes.append(node)  # docstrings of modules, classes, functions and attributes
    return {id(inner) for outer in nodes for inner in ast.walk(outer)}


def _is_site(node: ast.AST) -> bool:
    """Whether a mutant may change this node (an operator or constant of a kind the module docstring lists)."""
    if isinstance(node, ast.BinOp | ast.AugAssign):
        return type(node.op) in BINARY_SWAPS
    if isinstance(node, ast.Compare):
        return len(node.ops) == 1 and type(node.ops[0]) in COMPARE_SWAPS
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub | ast.Not)
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float, bool)
    return isinstance(node, ast.BoolOp)


def _sites(tree: ast.AST) -> list[ast.AST]:
    """The nodes a mutant may change, in a fixed order (ast.walk's)."""
    skip = _untouchable(tree)
    return [node for node in ast.walk(tree) if id(node) not in skip and _is_site(node)]


def _changed(node: ast.AST) -> ast.AST:
    """The site with its one token changed (a unary operator: its operand)."""
    if isinstance(node, ast.BinOp | ast.AugAssign):
        node.op = BINARY_SWAPS[type(node.op)]()
    elif isinstance(node, ast.Compare):
        node.ops = [COMPARE_SWAPS[type(node.ops[0])]()]
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):
        return node.operand
    elif isinstance(node.value, bool):
        node.value = not node.value
    elif isinstance(node.value, int):
        node.value += 1
    else:
        node.value = node.value * 2 if node.value != 0 else 1.0
    return node


class _Replace(ast.NodeTransformer):
    """Puts `new` where `old` was."""

    def __init__(self, old: ast.AST, new: ast.AST) -> None:
        self.old, self.new = old, new

    def visit(self, node: ast.AST) -> ast.AST:
        return self.new if node is self.old else self.generic_visit(node)


def mutants(source: str) -> Iterator[Mutant]:
    """Every mutant of a module's source, each a whole module (ast.unparse of the changed tree)."""
    for index in range(len(_sites(ast.parse(source)))):
        tree = ast.parse(source)
        old = _sites(tree)[index]
        before = ast.unparse(old)
        new = _changed(old)
        after = ast.unparse(new)
        tree = ast.fix_missing_locations(_Replace(old, new).visit(tree))
        yield Mutant(Site(index, old.lineno, before, after), ast.unparse(tree))


def _worker_copy(repo: Path, scratch: Path, name: str) -> Path:
    """A scratch copy of `repo` (no git data, no caches) for one worker."""
    copy = scratch / name
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache"))
    return copy


def run(module: Path, tests: list[str], repo: Path = REPO, timeout: float = 300.0, jobs: int = 1,
        only: range | None = None) -> list[Outcome]:
    """Run `tests` (pytest -x, in scratch copies of `repo`) against every mutant of `module` (relative to repo).

    `jobs` workers each own a copy and take the next mutant from a shared queue, one thread per torch process;
    `only` keeps the mutants whose site index lies in it. Outcomes come back in site order.
    """
    pending: queue.Queue[Mutant] = queue.Queue()
    source = (repo / module).read_text()
    for mutant in mutants(source):
        if only is None or mutant.site.index in only:
            pending.put(mutant)
    outcomes: list[Outcome] = []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no stale bytecode of a same-size mutant
    if jobs > 1:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # the workers share the cores
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]

    def work(copy: Path) -> None:
        target = copy / module
        while True:
            try:
                mutant = pending.get_nowait()
            except queue.Empty:
                return
            target.write_text(mutant.source)
            start = time.monotonic()
            try:
                done = subprocess.run(command, cwd=copy, env=env, capture_output=True, timeout=timeout)
                status = "killed" if done.returncode != 0 else "survived"
            except subprocess.TimeoutExpired:
                status = "timeout"
            site = mutant.site
            outcomes.append(Outcome(site, status, round(time.monotonic() - start, 1)))
            print(f"{status:8} line {site.line}: {site.before[:70]}  ->  {site.after[:70]}", flush=True)

    with tempfile.TemporaryDirectory(prefix="dpmsolver-mutants-") as scratch:
        copies = [_worker_copy(repo, Path(scratch), f"repo{k}") for k in range(jobs)]
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(work, copies))
    return sorted(outcomes, key=lambda o: o.site.index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", type=Path, help="the module to mutate, relative to the repository root")
    parser.add_argument("--tests", required=True, help="comma-separated test files or node ids (most telling first)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant before it counts as hung")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once, each in its own copy")
    parser.add_argument("--sites", help="only the site indices START:STOP (a Python slice; either end may be left out)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be a whole number >= 1, got {args.jobs}")
    only = None
    if args.sites:
        start, colon, stop = args.sites.partition(":")
        if not colon or not all(end.isdigit() for end in (start, stop) if end):
            parser.error(f"--sites must be START:STOP with whole numbers, got {args.sites!r}")
        only = range(int(start or 0), int(stop) if stop else sys.maxsize)
    outcomes = run(args.module, args.tests.split(","), timeout=args.timeout, jobs=args.jobs, only=only)
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("killed", "survived", "timeout")}
    print(f"{args.module}: {len(outcomes)} mutants, " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
