"""The package's structure: no import cycles, no private names across modules, light import.

The import graph is read from the source (function-level imports included: a cycle hidden
inside a function is still a cycle), so the check does not depend on import order.
"""

import ast
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import bayes_restore

ROOT = Path(bayes_restore.__file__).parent
PACKAGE = "bayes_restore"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    path = MODULES[module]
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(target module, imported name or None, line)`` for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # "from pkg import submodule"
                    found.append((sub, None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return [f for f in found if f[0] == PACKAGE or f[0].startswith(PACKAGE + ".")]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        edges = set()
        for target, _, _ in _imports(module):
            if target in MODULES and target != module:
                edges.add(target)
            # importing a.b.c first runs the __init__ of a.b (when the importer is outside
            # a.b): the sub-package's re-exports are part of what the import pulls in
            parts = target.split(".")
            for k in range(2, len(parts)):
                parent = ".".join(parts[:k])
                if parent in MODULES and not module.startswith(parent + ".") \
                        and module != parent:
                    edges.add(parent)
        graph[module] = edges
    return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (each holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return out


def test_no_import_cycle():
    # every edge counts, re-exports of a package's __init__ included: importing one name
    # of a package runs its __init__, which imports what it re-exports
    cycles = _strongly_connected(_graph())
    assert not cycles, "modules importing each other:\n" + "\n".join(
        ", ".join(c) for c in cycles)


def test_no_private_name_imported_across_modules():
    offenders = []
    for module in MODULES:
        for target, name, line in _imports(module):
            if name and name.startswith("_") and not name.startswith("__") and target != module:
                offenders.append(f"{MODULES[module].relative_to(ROOT.parent)}:{line} "
                                 f"imports {name} from {target}")
    assert not offenders, "\n".join(offenders)


def test_every_module_imports_alone_in_a_fresh_interpreter_in_random_order():
    names = [m for m in MODULES if m != f"{PACKAGE}.__main__"]
    random.Random(0).shuffle(names)
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning:bayes_restore"}
    for order in (names, names[::-1]):
        run = subprocess.run([sys.executable, "-c", code, *order], capture_output=True,
                             text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize("heavy", ["matplotlib", "dask", "skimage", "scipy", "arviz"])
def test_import_stays_light(heavy):
    code = f"import sys, bayes_restore; print({heavy!r} in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"
