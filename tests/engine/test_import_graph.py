"""The import graph of the two packages: the engine, the warehouse writer and the sync
import no Dagster, and no module reaches back to one that (through others) imports it. Every import counts: module level,
inside functions (a lazy import is a cycle put off until run time) and under TYPE_CHECKING."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bitrix_core", "dagster_bitrix24")
WITHOUT_DAGSTER = ("bitrix_core", "dagster_bitrix24.warehouse", "dagster_bitrix24.sync")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports (absolute names), wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from package import module` imports the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known or module.split(".")[0] == "dagster"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {m for m in _imports(name, path, known) if m in known and m != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_every_module() -> None:
    graph = _graph()
    assert "bitrix_core.pagination.run" in graph and "dagster_bitrix24.assets" in graph
    assert "bitrix_core.pagination.base" in graph["bitrix_core.pagination.run"]


def _without_dagster(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in WITHOUT_DAGSTER)


def test_every_package_kept_free_of_dagster_has_modules() -> None:
    modules = _modules()
    assert all(any(n.startswith(p + ".") for n in modules) for p in WITHOUT_DAGSTER)


@pytest.mark.parametrize("name", sorted(n for n in _modules() if _without_dagster(n)))
def test_the_engine_warehouse_and_sync_import_no_dagster(name: str) -> None:
    modules = _modules()
    imported = _imports(name, modules[name], set(modules))
    assert not {m for m in imported if m.split(".")[0] == "dagster"}


def test_no_import_cycles() -> None:
    assert [sorted(c) for c in _cycles(_graph())] == []


def test_a_cycle_is_found() -> None:
    """The check itself: a module reaching back to one that imports it is a cycle."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in _cycles(graph)] == [["a", "b", "c"]]
