"""The library's layering, read from the source with ``ast``.

Floors, lowest first: ``core`` (generic mechanisms) → ``data`` (datasets) → the topics ``factorization``, ``gnn``,
``cnn``, ``hessian`` → ``pipeline`` (config, claims, scorecard, figure style) → ``experiments`` → ``cli``. A module
imports its own package and the floors below it, never a floor above and never another topic of its floor (the
topics meet only in ``core`` and ``data``). Within ``experiments``, a chapter imports ``experiments.base``, its own
modules and earlier chapters' (chapter 3's rank dynamics reuse §2.1's emergence analysis), never a later chapter's.
Every ``import`` counts, also one inside a function. The root package ``rankrepro`` (its version) may be imported by
all and imports nothing; so do the sub-packages' ``__init__.py`` (the experiment registry is ``pipeline.registry``),
so that importing one module loads no sibling: parsing the workflow stays free of torch, and a job's code hash
(rankrepro.pipeline.workflow) covers only the modules it uses. No import cycle, between modules or between packages.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

#: the floors, lowest first; the packages of one floor do not import each other
FLOORS = (("core",), ("data",), ("factorization", "gnn", "cnn", "hessian"), ("pipeline",), ("experiments",), ("cli",))
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}
CHAPTER = re.compile(r"^rankrepro\.experiments\.ch(\d+)(?:\.|$)")


def library(src: Path) -> dict[str, Path]:
    """Every module of the library under ``src``: dotted name (a package's is that of its ``__init__.py``) → file."""
    modules = {}
    for path in sorted((src / "rankrepro").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The library modules a file imports, at module level or inside functions; ``from p import x`` names module
    ``p.x`` when that is a module, else ``p``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return found & set(modules)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the library modules it imports."""
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def package_of(module: str) -> str:
    """The sub-package a module belongs to (``cli`` for the CLI, ``rankrepro`` for the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rankrepro"


def chapter_of(module: str) -> int | None:
    """N for a module of ``rankrepro.experiments.chN`` (or that package), None otherwise."""
    match = CHAPTER.match(module)
    return int(match.group(1)) if match else None


def layering_violations(modules: dict[str, Path], graph: dict[str, set[str]]) -> Iterator[str]:
    """One line per import that breaks a rule of the module docstring."""
    for module, targets in sorted(graph.items()):
        if modules[module].name == "__init__.py" and targets:
            yield f"{module}/__init__.py imports {sorted(targets)}: package __init__ files import nothing"
        source = package_of(module)
        for target in sorted(targets):
            destination = package_of(target)
            if "rankrepro" in (source, destination):  # the root: its version only (imports of it: the rule above)
                continue
            if destination == source:
                mine, theirs = chapter_of(module), chapter_of(target)
                if theirs is not None and (mine is None or theirs > mine):
                    yield f"{module} imports {target}: a later chapter, or a chapter from outside the chapters"
            elif FLOOR[destination] >= FLOOR[source]:
                kind = "another topic of its floor" if FLOOR[destination] == FLOOR[source] else "a floor above"
                yield f"{module} ({source}) imports {target} ({destination}): {kind}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node, or with a self-loop (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Sub-package → the sub-packages it imports (each chapter a package of its own)."""

    def unit(module: str) -> str:
        chapter = chapter_of(module)
        return f"experiments.ch{chapter}" if chapter else package_of(module)

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return packages


def problems(src: Path) -> list[str]:
    """Every layering violation and import cycle of the library under ``src``."""
    modules = library(src)
    graph = import_graph(modules)
    return [
        *layering_violations(modules, graph),
        *(f"import cycle: {' -> '.join(c)}" for c in cycles(graph) + cycles(package_graph(graph))),
    ]


def test_every_package_has_a_floor():
    packages = {package_of(module) for module in library(SRC)} - {"rankrepro"}
    assert packages <= set(FLOOR), f"packages without a floor in FLOORS: {sorted(packages - set(FLOOR))}"


def test_imports_go_down_the_floors_without_cycles():
    found = problems(SRC)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("core/io.py", "from rankrepro.data.registry import DATASETS", "a floor above"),
        ("data/registry.py", "from rankrepro.data.image_datasets import ImageDataset", "import cycle"),
        ("cnn/locality.py", "from rankrepro.gnn.is_same_class_graphs import two_clique_edges", "another topic"),
        ("gnn/wis.py", "from rankrepro.pipeline import claims", "a floor above"),
        ("pipeline/claims.py", "from rankrepro.experiments import base", "a floor above"),
        ("experiments/ch2/common.py", "from rankrepro.experiments.ch3 import rank_dynamics_common", "later chapter"),
        ("experiments/base.py", "from rankrepro.experiments.ch1 import common", "outside the chapters"),
        ("core/__init__.py", "from rankrepro.core.io import one_line", "import nothing"),
        ("__init__.py", "import rankrepro.core.io", "import nothing"),
    ],
)
def test_each_rule_fails_on_a_planted_import(tmp_path, module, line, expected):
    """A copy of the library with one bad import added, inside a function (those count too), breaks the rule."""
    shutil.copytree(SRC / "rankrepro", tmp_path / "rankrepro", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "rankrepro" / module, "a", encoding="utf-8") as handle:
        handle.write(f"\n\ndef _planted():\n    {line}\n")
    assert expected in "\n".join(problems(tmp_path))


def workflow_imports() -> list[str]:
    """The library modules that the Snakefile and its rule files import while Snakemake parses them (``from P import
    m`` counts module ``P.m`` when there is one)."""
    statement = re.compile(r"^\s*(?:from\s+(rankrepro[\w.]*)\s+import\s+(\w+)|import\s+(rankrepro[\w.]*))", re.M)
    files = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    modules = library(SRC)
    found = set()
    for path in files:
        for package, name, plain in statement.findall(path.read_text(encoding="utf-8")):
            found.add(plain or (f"{package}.{name}" if f"{package}.{name}" in modules else package))
    return sorted(found)


def test_parsing_the_workflow_loads_neither_torch_nor_snakemake_from_the_library():
    """Every cluster job re-parses the Snakefile: the library modules it imports must stay light."""
    modules = workflow_imports()
    assert {"rankrepro.pipeline.workflow", "rankrepro.pipeline.config", "rankrepro.core.errors"} <= set(modules)
    code = (
        f"import sys; import {', '.join(modules)}; "
        "print(sorted(m for m in ('torch', 'snakemake', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
