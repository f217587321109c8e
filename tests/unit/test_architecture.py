"""The shape of the code: no import cycles in the runtime package, laptop tooling kept out of
it, and modules small enough to hold in one's head. Read from the source (ast), nothing runs."""

from __future__ import annotations

import ast
from pathlib import Path

from mlsys.settings import REPO_ROOT

RUNTIME = ("mlsys", "dags", "plugins")
# "About 600 lines": a module that grows past this is split by job, not squeezed.
MAX_MODULE_LINES = 650


def _modules(package: str) -> dict[str, Path]:
    root = REPO_ROOT / package
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Modules named by the file's imports (with `from a import b`, both `a` and `a.b`)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_runtime_package_has_no_import_cycles() -> None:
    modules = _modules("mlsys")
    graph = {
        name: {m for m in _imports(path, top_level_only=False) if m in modules and m != name}
        for name, path in modules.items()
    }
    assert _cycles(graph) == []


def test_the_runtime_does_not_import_laptop_tooling() -> None:
    """dags/, plugins/ and mlsys/ never import mlsys_local at module level; the one lazy use is
    the `mlsys generate` command (the generator is laptop tooling, the image lacks it)."""
    offenders = {}
    for package in RUNTIME:
        for name, path in _modules(package).items():
            top = {m for m in _imports(path, top_level_only=True) if m.split(".")[0] == "mlsys_local"}
            lazy = {m for m in _imports(path, top_level_only=False) if m.split(".")[0] == "mlsys_local"}
            if top or (lazy and name != "mlsys.cli"):
                offenders[name] = sorted(top | lazy)
    assert offenders == {}
    assert "mlsys_local" in (REPO_ROOT / ".dockerignore").read_text().splitlines()


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    sizes = {
        str(path.relative_to(REPO_ROOT)): len(path.read_text().splitlines())
        for package in ("mlsys", "mlsys_local")
        for path in (REPO_ROOT / package).rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_test_files_have_unique_names_across_the_kinds() -> None:
    """tests/ has no __init__.py (pytest's default rootdir import): two test files of one name
    in different folders stop the whole session at collection."""
    from collections import Counter

    names = Counter(p.name for p in (REPO_ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
