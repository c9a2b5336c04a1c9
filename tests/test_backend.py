"""The backend protocol (rcompiler.measure.backend): both backends implement it, and the
packages that implement it import each other in one direction only."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from rcompiler.measure import Backend, LocalRunners

PACKAGE = Path(__file__).resolve().parent.parent / "rcompiler"


def _members(cls) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def test_both_backends_implement_every_member_of_the_protocol():
    from rcompiler.cluster.driver import RunnerGroup
    from rcompiler.hardware import detect

    wanted = {"hardware", "parallelism", "parallel_tasks", "measurer", "progress", "interrupt", "stats"}
    assert wanted <= _members(Backend)
    for backend in (LocalRunners(), RunnerGroup(cluster=None, hardware=detect())):
        assert wanted <= _members(backend) and isinstance(backend, Backend), backend
        for name in ("measurer", "interrupt"):  # called with the protocol's parameters
            assert (list(inspect.signature(getattr(Backend, name)).parameters)[1:]
                    == list(inspect.signature(getattr(backend, name)).parameters)), (backend, name)


def _runtime_nodes(tree: ast.AST):
    """Every node of a file but those under `if TYPE_CHECKING:` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, package: str) -> set[str]:
    """The modules of `package` that a file imports when it runs, at any depth (lazy imports too)."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names.add(f"{package}.{node.module}" if node.module else package)
            elif node.module:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["cluster", "measure", "search"])
def test_no_module_of_a_backend_package_imports_one_that_imports_it(package):
    modules = {f"rcompiler.{package}.{p.stem}": p for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"}
    edges = {m: _imports(p, f"rcompiler.{package}") & set(modules) for m, p in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    circles = sorted(m for m in modules if reaches(m, m, {m}))
    assert not circles, circles


def test_measure_and_search_never_import_the_cluster_backend():
    for folder in ("measure", "search"):
        for path in (PACKAGE / folder).glob("*.py"):
            assert not any(m.startswith("rcompiler.cluster") for m in _imports(path, f"rcompiler.{folder}")), path
