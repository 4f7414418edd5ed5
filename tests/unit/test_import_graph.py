"""The modules of mailbot/, db/ and scheduler/ import each other without a cycle, and db/ (the
tables, the engine, the dialect, the migrations) imports nothing of mailbot/ or scheduler/.

What counts as an import: every ``import`` and ``from … import`` statement in the file, wherever
it stands. At module level, and also inside a function (the CLI imports its commands' modules
lazily, and an import moved into a function to break a cycle is still a cycle: it only hides
it until the function runs) and under ``if TYPE_CHECKING:`` (a cycle of types is a cycle of
ideas). Read from the source with ``ast``; nothing is imported.

``from package import name`` depends on ``package.name`` when that is a module, else on the
package (its ``__init__``). Importing a submodule also runs its parent package's
``__init__``, which re-exports the submodules: that edge, the one every package has, is not
counted; an explicit import of the package from one of its own submodules is.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mailbot", "db", "scheduler")


@dataclass(frozen=True)
class Import:
    target: str  # the module imported
    path: str  # where, for the message: the file from the repository root
    line: int


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root`` by dotted name (a package by its own)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, list[Import]]:
    """Each module's imports of modules of ``packages`` (itself left out)."""
    known = modules(root, packages)
    graph: dict[str, list[Import]] = {}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        edges = graph.setdefault(name, [])
        for line, imported in _imported_names(path, name, is_package):
            target = _module_of(imported, known)
            edge = Import(target or "", path.relative_to(root).as_posix(), line)
            if target is not None and target != name and edge not in edges:
                edges.append(edge)
    return graph


def _imported_names(path: Path, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for every name imported anywhere in the file."""
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = here
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _module_of(name: str, known: Mapping[str, Path]) -> str | None:
    """The module ``name`` is, or is in (``a.b.c`` → ``a.b`` when ``c`` is a name in it)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def cycles(graph: Mapping[str, list[Import]]) -> list[list[str]]:
    """The import cycles: each group of modules that reach one another (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for edge in graph.get(module, []):
            if edge.target not in index:
                visit(edge.target)
                low[module] = min(low[module], low[edge.target])
            elif edge.target in on_stack:
                low[module] = min(low[module], index[edge.target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def describe(group: list[str], graph: Mapping[str, list[Import]]) -> str:
    """The imports that close a cycle, each with its file and line."""
    members = set(group)
    return "; ".join(
        f"{edge.path}:{edge.line} imports {edge.target}"
        for module in group
        for edge in graph[module]
        if edge.target in members
    )


# --- the repository ----------------------------------------------------------------------------


def test_the_graph_holds_every_module_and_what_each_imports() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert {"mailbot.web", "mailbot.review.cancel", "db.dialect", "scheduler.sync"} <= set(graph)
    targets = {edge.target for edge in graph["mailbot.review.cancel"]}
    # Module-level imports, a module named by ``from package import module``, a package
    # (``from mailbot.applications import …`` is the module; ``mailbot.review`` the package).
    assert {"mailbot.applications", "mailbot.notices", "scheduler.job_rows"} <= targets
    cli_targets = {edge.target for edge in graph["mailbot.cli.applications"]}
    assert "mailbot.review" in cli_targets  # imported inside a command's function


def test_no_module_of_mailbot_db_or_scheduler_is_in_an_import_cycle() -> None:
    graph = import_graph(ROOT, PACKAGES)
    found = cycles(graph)
    assert found == [], "import cycles: " + " | ".join(describe(g, graph) for g in found)


def test_db_imports_nothing_of_mailbot_or_scheduler() -> None:
    upward = [
        f"{edge.path}:{edge.line} imports {edge.target}"
        for module, edges in import_graph(ROOT, PACKAGES).items()
        if module.split(".")[0] == "db"
        for edge in edges
        if edge.target.split(".")[0] in ("mailbot", "scheduler")
    ]
    assert upward == [], "db/ is tables, engine, dialect and migrations: " + "; ".join(upward)


# --- the check itself finds what it is there to find ------------------------------------------


def write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_cycle_hidden_in_a_function_or_behind_type_checking_is_found(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import run\n",
            "pkg/b.py": "def run() -> None:\n    from pkg import a\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import D\n",
            "pkg/d.py": "from pkg.c import *\n",
            "pkg/e.py": "import pkg.a\n",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    assert describe(["pkg.a", "pkg.b"], graph) == (
        "pkg/a.py:1 imports pkg.b; pkg/b.py:2 imports pkg.a"
    )


def test_a_submodule_importing_its_own_package_is_a_cycle_but_the_package_alone_is_not(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.inner import thing\n",
            "pkg/inner/__init__.py": "from .one import thing\n",
            "pkg/inner/one.py": "thing = 1\n",
        },
    )
    assert cycles(import_graph(tmp_path, ["pkg"])) == []
    write(tmp_path, {"pkg/inner/one.py": "from pkg.inner import other\nthing = 1\n"})
    assert cycles(import_graph(tmp_path, ["pkg"])) == [["pkg.inner", "pkg.inner.one"]]
