"""The layers point one way (issue #20, part 2), checked on the source text with ``ast``.

Our code is imported as ``fedrec.<layer>`` (issue #20, part 1): the folder ``server/`` is
the package ``fedrec.server``, and no file anywhere (tests, benchmarks and examples too)
imports the bare top-level names ``shared``, ``client``, ``server``, ``simulations``, which
a wheel does not install.

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
NAMESPACE = "fedrec"
#: Which of our packages each package may import (besides itself).
ALLOWED = {"shared": set(), "client": {"shared"}, "server": {"shared"},
           "simulations": {"shared", "client", "server"}}
#: Files allowed to break their package's rule, each with the reason.
EXCEPTIONS: dict[str, set[str]] = {}   # none: the CLI lives in simulations/cli.py


def module_name(path: Path, root: Path = ROOT) -> str:
    """``server/dp.py`` -> ``fedrec.server.dp``; ``server/__init__.py`` -> ``fedrec.server``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join([NAMESPACE, *(parts[:-1] if parts[-1] == "__init__" else parts)])


def layer(dotted: str) -> str | None:
    """``fedrec.server.dp`` -> ``server``; None for anything not in our four packages."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == NAMESPACE and parts[1] in PACKAGES else None


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
        pkg = layer(name)
        rel = str(path.relative_to(root))
        allowed = ALLOWED[pkg] | {pkg} | EXCEPTIONS.get(rel, set())
        for target in sorted(imported(path, set(modules), root)):
            top = layer(target)
            if top is not None and top not in allowed:
                out.append(f"{rel} imports {target}")
    return sorted(out)


def import_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Edges between the modules of one package (the package's ``__init__`` left out:
    importing ``fedrec.server.dp`` loads ``fedrec.server`` first, no cycle of ours)."""
    modules = source_modules(root)
    inside = {n for n in modules if n.startswith(f"{NAMESPACE}.{package}.")}
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


#: Folders whose Python files are checked for bare imports (all of the checkout's code).
SKIP_DIRS = {".venv", ".git", "build", "dist", "runs", "__pycache__"}


def bare_imports(root: Path = ROOT) -> list[str]:
    """``file imports name`` for every absolute import of a bare ``shared``, ``client``,
    ``server`` or ``simulations`` (module or package) in any Python file under ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP_DIRS & set(rel.parts[:-1]):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            out += [f"{rel.as_posix()} imports {n}" for n in names if n.split(".")[0] in PACKAGES]
    return sorted(out)


def test_layers_point_one_way():
    assert violations() == []


def test_everything_imports_the_fedrec_namespace():
    assert bare_imports() == []


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
        "shared/a.py": "def f():\n    from fedrec.server import dp\n",
        "client/b.py": "from . import c\nimport fedrec.server.dp as x\n",
        "client/c.py": "from fedrec.shared.a import f\n",
        "server/dp.py": "from fedrec.client.b import g\n",
        "simulations/s.py": "from fedrec.server import dp\nfrom fedrec.client import b\n",
    })
    assert violations(root) == ["client/b.py imports fedrec.server.dp",
                                "server/dp.py imports fedrec.client.b",
                                "shared/a.py imports fedrec.server.dp"]
    assert import_graph("client", root)["fedrec.client.b"] == {"fedrec.client.c"}
    assert bare_imports(root) == []


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _tree(tmp_path, {"server/dp.py": "from fedrec.server.strategy import lr\n",
                            "server/strategy.py": "def make():\n    from fedrec.server.dp import w\n",
                            "server/app.py": "from fedrec.server import dp, strategy\n"})
    assert find_cycle(import_graph("server", root)) == [
        "fedrec.server.dp", "fedrec.server.strategy", "fedrec.server.dp"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_checker_finds_bare_imports_anywhere(tmp_path):
    root = _tree(tmp_path, {"tests/t.py": "import shared\nfrom server.dp import w\n",
                            "shared/a.py": "def f():\n    import client.store as s\n",
                            "simulations/s.py": "from fedrec.shared import a\nimport numpy\n",
                            ".venv/lib/x.py": "import server\n"})
    assert bare_imports(root) == ["shared/a.py imports client.store", "tests/t.py imports server.dp",
                                  "tests/t.py imports shared"]
