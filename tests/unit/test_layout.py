"""The tree reads as the data path: no import circles, imports at the top of each module
(a deferred one says why), and the package list in pyproject.toml matches the tree.

The layers themselves are `lint-imports`' contract (pyproject.toml), run by `make test`.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("taskflow_jobs", "flows", "blocks", "deployments")
DEFERRED = "# deferred:"


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
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
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = grimp.build_graph(*PACKAGES)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    # a package's __init__ re-exporting its own submodules is not a circle between stages
    edges = {
        m: {t for t in targets if not (m.startswith(t + ".") and t in graph.modules)}
        for m, targets in edges.items()
    }
    assert _cycles(edges) == []


def _inner_imports(tree: ast.AST) -> list[ast.stmt]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def test_function_level_imports_say_why() -> None:
    unexplained = []
    for path in _sources():
        source = path.read_text()
        lines = source.splitlines()
        for node in _inner_imports(ast.parse(source)):
            # the comment stands on the line above the import, or above a run of imports
            above = node.lineno - 2
            while above >= 0 and lines[above].lstrip().startswith(("from ", "import ")):
                above -= 1
            if above < 0 or DEFERRED not in lines[above]:
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unexplained == []


def test_every_stage_says_what_it_owns() -> None:
    missing = []
    for pkg in PACKAGES:
        for init in (ROOT / pkg).rglob("__init__.py"):
            if not ast.get_docstring(ast.parse(init.read_text())):
                missing.append(str(init.relative_to(ROOT)))
    assert missing == []


def test_pyproject_packages_exactly_what_exists() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(
        find_packages(
            str(ROOT), include=config["packages"]["find"]["include"],
            exclude=config["packages"]["find"].get("exclude", ()),
        )
    )  # fmt: skip
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for pkg in PACKAGES
        for init in (ROOT / pkg).rglob("__init__.py")
    }
    assert found == on_disk
    declared = [p.rstrip("*") for p in config["packages"]["find"]["include"]]
    assert all((ROOT / name).is_dir() for name in declared)


@pytest.mark.parametrize("upward", ["from taskflow_jobs.cli import base", "import flows.common"])
def test_the_contract_fails_on_an_upward_import(tmp_path: Path, upward: str) -> None:
    """A copy of the tree where the queue imports the CLI (or a flow) breaks the contract."""
    copy = tmp_path / "tree"
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    queue = copy / "taskflow_jobs" / "jobs" / "queue.py"
    queue.write_text(queue.read_text() + f"\n{upward}  # noqa\n")
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=copy, capture_output=True, text=True,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and "taskflow_jobs.jobs.queue" in result.stdout


def test_tests_import_helpers_from_support_not_from_conftests() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("conftest"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_cli_does_not_import_prefect_before_choosing_its_api_url() -> None:
    """`default_prefect_api` sets PREFECT_API_URL; Prefect reads it once, when imported."""
    code = "import sys, taskflow_jobs.cli; print('prefect' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
