"""The package's modules form layers: no import cycle, only top-level entry points load the definitions, and
every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iot_mlops"
DEFINITIONS = "iot_mlops.definitions"
ALEMBIC_SCRIPT = "iot_mlops.opstore.migrations.env"  # run by Alembic inside its migration context, never imported


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: Path, package: str, deferred: bool = True) -> set[str]:
    """Dotted names a module imports (with `deferred`, also those inside functions); `from x import y` gives x and x.y."""
    names: set[str] = set()

    def visit(nodes: list[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _type_checking(node):
                visit(node.orelse)
                continue
            if not deferred and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
            visit(list(ast.iter_child_nodes(node)))

    visit(ast.parse(path.read_text(), str(path)).body)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name inside a module counts as that module)."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for name in imported_names(path, package):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*path[path.index(target):], target]
            if target not in state and (cycle := walk(target)):
                return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := walk(module)):
            return cycle
    return None


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imports_parsed_as_python_resolves_them(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nfrom . import sibling\nif TYPE_CHECKING:\n    import hidden\n"
                      "def f():\n    from iot_mlops.lake import store\n")
    assert imported_names(source, "iot_mlops.features") >= {"iot_mlops.features.sibling", "iot_mlops.lake.store"}
    assert "hidden" not in imported_names(source, "iot_mlops.features")


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_only_top_level_entry_points_import_the_definitions():
    graph = import_graph()
    importers = sorted(module for module, targets in graph.items() if DEFINITIONS in targets)
    assert importers, "nothing imports the definitions: the check no longer sees them"
    below = [module for module in importers if module.count(".") > 1]
    assert not below, f"modules under a domain package import {DEFINITIONS}: {below}"


# Imports the third-party libraries once, then forks one child per project module: each child starts with no
# project module loaded, and the libraries' own import time (seconds each) is not paid 130 times.
FORK_EACH = """
import importlib, json, os, sys
modules, preload, workers = json.load(sys.stdin)
for name in preload:
    try:
        importlib.import_module(name)
    except Exception:
        pass
assert not [m for m in sys.modules if m.split(".")[0] == "iot_mlops"], "a library preload imported the project"
failed, running, queue = {}, {}, list(modules)
while queue or running:
    while queue and len(running) < workers:
        module = queue.pop(0)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                importlib.import_module(module)
                code = 0
            except BaseException as error:
                os.write(write, f"{type(error).__name__}: {error}".encode())
                code = 1
            os._exit(code)
        os.close(write)
        running[pid] = (module, read)
    pid, status = os.wait()
    module, read = running.pop(pid)
    message = os.read(read, 4096).decode()
    os.close(read)
    if status:
        failed[module] = message or f"exit status {status}"
print(json.dumps(failed))
"""


def third_party_imports() -> list[str]:
    """The outside modules the package imports at module level, to load once before the forks."""
    names = set()
    for module, path in module_files().items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names |= {n for n in imported_names(path, package, deferred=False) if n.split(".")[0] not in ("iot_mlops", "")}
    return sorted(n for n in names if n.split(".")[0] not in sys.stdlib_module_names)


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter(tmp_path):
    env = {**os.environ, "IOT_MLOPS_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    job = json.dumps([sorted(set(module_files()) - {ALEMBIC_SCRIPT}), third_party_imports(), 2 * (os.cpu_count() or 1)])
    out = subprocess.run([sys.executable, "-c", FORK_EACH], check=False, input=job, capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    failed = json.loads(out.stdout.strip().splitlines()[-1])
    assert not failed, failed
