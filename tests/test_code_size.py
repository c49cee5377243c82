"""Functions short enough to read at once, signatures small enough to call (STYLE.md, convention 9).

Read from the source with ``ast``: a function in ``medseg/`` may have at most :data:`MAX_LINES` lines
(from ``def`` to its last line, decorators and docstring not counted), unless its docstring has a line
starting with ``Long:`` that gives the reason in a few words, and at most :data:`MAX_PARAMETERS` parameters
(``self``/``cls`` not counted, ``*args``/``**kwargs`` counted), without exception: more take a frozen
settings object (issue #25: e.g. :class:`medseg.models.BackboneSettings`,
:class:`medseg.evaluation.runner.EvaluateOptions`) or are split.

:data:`KNOWN` lists the functions that broke a rule when this test was written; the test fails on any
other, so the list can only shrink. Each entry names its owner; remove the entry when the function is
split (a separate test fails on entries that no longer break the rule).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "medseg"
MAX_LINES = 60
MAX_PARAMETERS = 8

#: ``module:qualified.name`` -> rule broken, for offenders not yet split (issue 14 split the long functions,
#: issue #25 gave the wide keyword contracts settings objects).
KNOWN: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _functions(tree: ast.AST, prefix: str = ""):
    """``(qualified name, node)`` of every function, methods and nested functions included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the end of the body, without the docstring."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> int:
    """Parameters of the signature; the ``self``/``cls`` of a method is not counted."""
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    if method and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    return len(positional) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def _has_reason(node, tag: str) -> bool:
    doc = ast.get_docstring(node) or ""
    return any(line.strip().startswith(tag) and len(line.strip()) > len(tag) + 3 for line in doc.splitlines())


def violations(source: str, module: str) -> dict[str, str]:
    """``module:qualname`` -> ``"lines"``, ``"parameters"`` or ``"lines+parameters"`` for every function of
    ``source`` that breaks a rule without the docstring reason."""
    found = {}
    for name, node in _functions(ast.parse(source)):
        broken = []
        if code_lines(node) > MAX_LINES and not _has_reason(node, "Long:"):
            broken.append("lines")
        if parameter_count(node, method="." in name) > MAX_PARAMETERS:
            broken.append("parameters")
        if broken:
            found[f"{module}:{name}"] = "+".join(broken)
    return found


def _tree_violations() -> dict[str, str]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        found.update(violations(path.read_text(encoding="utf-8"), _module_name(path)))
    return found


def test_no_new_long_functions_or_signatures():
    new = {name: rule for name, rule in _tree_violations().items() if KNOWN.get(name) != rule}
    assert new == {}, (f"split these functions (<= {MAX_LINES} lines, or a one-line 'Long:' reason) and give "
                       f"more than {MAX_PARAMETERS} parameters a frozen settings object (no exemption)")


def test_known_offenders_still_offend():
    """An entry of KNOWN whose function was fixed (or removed) must leave the list."""
    stale = sorted(set(KNOWN) - set(_tree_violations()))
    assert stale == []


_LONG = "def f(a):\n" + "    a += 1\n" * 60 + "    return a\n"
_MANY = "class C:\n    def m(self, a, b, c, d, e, f, g, *, h, **extra):\n        return a\n"
_LONG_WHY = _LONG.replace("def f(a):\n",
                          'def f(a):\n    """Doc.\n\n    Long: one table of cases, split would hide it.\n    """\n')
_MANY_WHY = _MANY.replace("        return a",
                          '        """Many parameters: mirrors torch.nn.Conv3d."""\n        return a')


@pytest.mark.parametrize(("source", "expected"), [
    (_LONG, {"m:f": "lines"}),
    (_LONG_WHY, {}),
    (_MANY, {"m:C.m": "parameters"}),
    (_MANY_WHY, {"m:C.m": "parameters"}),  # no reason exempts a wide signature
    ("def f(a, b, c, d, e, f, g, h):\n    return a\n", {}),  # 8 parameters: allowed
    ('def f():\n    """' + "\n" * 80 + '"""\n    return 1\n', {}),  # a long docstring is not code
    ("def outer():\n    def inner(a, b, c, d, e, f, g, h, i):\n        return a\n    return inner\n",
     {"m:outer.inner": "parameters"}),
])
def test_the_rules_can_fail(source, expected):
    assert violations(source, "m") == expected


def test_a_reason_needs_words():
    source = _LONG.replace("def f(a):\n", 'def f(a):\n    """Long:"""\n')
    assert violations(source, "m") == {"m:f": "lines"}
