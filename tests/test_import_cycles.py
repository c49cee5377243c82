"""No two files of ``medseg`` import each other, directly or round a longer loop, not even through an import
inside a function (issue #25): a cycle means one of them holds something that belongs elsewhere. Beside the
import-direction rules of ``test_architecture.py``, which check stages, this checks files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "medseg"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the medseg modules it imports anywhere in its file (top level, functions, ``TYPE_CHECKING``);
    ``from package import name`` counts as importing ``package.name`` when that is a module, else ``package``."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_between_files():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(("files", "expected"), [
    ({"a.py": "from medseg.b import x\n", "b.py": "def f():\n    from medseg.a import y\n"},
     [["medseg.a", "medseg.b"]]),
    ({"a.py": "import medseg.b\n", "b.py": "from . import c\n", "c.py": "from .a import z\n"},
     [["medseg.a", "medseg.b", "medseg.c"]]),
    ({"a.py": "from medseg.b import x\n", "b.py": "import os\n"}, []),
    ({"__init__.py": "", "a.py": "from medseg import b\n", "b.py": "from typing import TYPE_CHECKING\n"
      "if TYPE_CHECKING:\n    from medseg.a import q\n"}, [["medseg.a", "medseg.b"]]),
])  # fmt: skip
def test_the_check_finds_cycles_through_functions_relative_and_typing_imports(tmp_path, files, expected):
    root = tmp_path / "medseg"
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    assert cycles(import_graph(root)) == expected
