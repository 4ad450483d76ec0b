"""The layers point one way (issue #20, part 2), checked on the source text with ``ast``.

- ``shared/`` imports none of ``client/``, ``server/``, ``simulations/``;
- ``client/`` and ``server/`` import only ``shared/`` of ours, never each other nor
  ``simulations/``;
- the module graph inside ``server/`` (and inside ``client/``) has no cycle.

Every import counts, the ones inside functions too (a lazy import is still a dependency).
``benchmarks/``, ``examples/`` and ``tests/`` are exempt. Nothing of fedrec's is imported
here: the rules hold for the files as written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "client", "server", "simulations")
#: Which of our packages each package may import (besides itself).
ALLOWED = {"shared": set(), "client": {"shared"}, "server": {"shared"},
           "simulations": {"shared", "client", "server"}}
#: Files allowed to break their package's rule, each with the reason.
EXCEPTIONS: dict[str, set[str]] = {}   # none: the CLI lives in simulations/cli.py


def module_name(path: Path, root: Path = ROOT) -> str:
    """``server/dp.py`` -> ``server.dp``; ``server/__init__.py`` -> ``server``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of our four packages, by dotted name."""
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def imported(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """Dotted names ``path`` imports anywhere in its body (relative imports resolved).

    ``from a.b import c`` yields ``a.b.c`` when that is one of the ``known`` modules, else
    ``a.b``; names outside our packages are kept too (they fall under no rule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package[:len(package) - node.level + 1]
                base = ".".join(stem + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                out.add(full if full in known else base)
    return out


def violations(root: Path = ROOT) -> list[str]:
    """``file imports module`` for every import that breaks the package rules."""
    modules = source_modules(root)
    out = []
    for name, path in modules.items():
        pkg = name.split(".")[0]
        rel = str(path.relative_to(root))
        allowed = ALLOWED[pkg] | {pkg} | EXCEPTIONS.get(rel, set())
        for target in sorted(imported(path, set(modules), root)):
            top = target.split(".")[0]
            if top in PACKAGES and top not in allowed:
                out.append(f"{rel} imports {target}")
    return sorted(out)


def import_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Edges between the modules of one package (the package's ``__init__`` left out:
    importing ``server.dp`` loads ``server`` first, which is no cycle of ours)."""
    modules = source_modules(root)
    inside = {n for n in modules if n.startswith(package + ".")}
    return {n: {t for t in imported(modules[n], set(modules), root) if t in inside and t != n}
            for n in sorted(inside)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it is acyclic."""
    state: dict[str, int] = {}     # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_layers_point_one_way():
    assert violations() == []


@pytest.mark.parametrize("package", ["server", "client"])
def test_no_import_cycle_inside(package):
    assert find_cycle(import_graph(package)) is None


def test_the_only_exception_is_the_cli_that_moves_out_of_shared():
    assert not EXCEPTIONS


# ----- the checker itself, on hand-made trees -----

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


def test_checker_sees_lazy_relative_and_module_imports(tmp_path):
    root = _tree(tmp_path, {
        "shared/a.py": "def f():\n    from server import dp\n",
        "client/b.py": "from . import c\nimport server.dp as x\n",
        "client/c.py": "from shared.a import f\n",
        "server/dp.py": "from client.b import g\n",
        "simulations/s.py": "from server import dp\nfrom client import b\n",
    })
    assert violations(root) == ["client/b.py imports server.dp", "server/dp.py imports client.b",
                                "shared/a.py imports server.dp"]
    assert import_graph("client", root)["client.b"] == {"client.c"}


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _tree(tmp_path, {"server/dp.py": "from server.strategy import lr\n",
                            "server/strategy.py": "def make():\n    from server.dp import w\n",
                            "server/app.py": "from server import dp, strategy\n"})
    assert find_cycle(import_graph("server", root)) == ["server.dp", "server.strategy", "server.dp"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
