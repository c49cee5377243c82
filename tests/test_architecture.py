"""The allowed import directions of docs/architecture.md, read from every module's source with ``ast``.

Imports inside functions count too (a lazy import is still a dependency). A failure names the module,
the line and the import that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "medseg"

_STAGES = ("data", "preprocessing", "models", "losses", "runs", "training", "inference", "evaluation", "cli")
_RULE_HOMES = ("errors", "labels", "geometry", "boxes", "utils")

#: Top-level part of ``medseg`` -> the parts it must never import (see docs/architecture.md).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    **{home: (*_STAGES, "io", "viz", "demo", "interop") for home in _RULE_HOMES},
    "io": (*_STAGES, "viz", "demo", "interop"),
    "data": ("preprocessing", "models", "losses", "runs", "training", "inference", "evaluation", "cli", "demo",
             "interop"),
    "preprocessing": ("models", "losses", "runs", "training", "inference", "evaluation", "cli", "demo", "interop"),
    "models": ("data", "preprocessing", "losses", "runs", "training", "inference", "evaluation", "cli", "demo",
               "interop"),
    "losses": ("data", "runs", "training", "inference", "evaluation", "cli", "demo", "interop"),
    "runs": ("losses", "training", "inference", "evaluation", "cli", "demo", "interop"),
    # other tools' models (nnU-Net v2 folders): read and build from io alone; inference uses it
    "interop": (*_STAGES, "viz", "demo", "outputs"),
    "inference": ("losses", "training", "evaluation", "cli", "demo", "outputs"),
    "evaluation": ("models", "losses", "runs", "training", "inference", "cli", "demo", "interop", "outputs"),
    "training": ("cli", "demo"),
    "viz": ("runs", "training", "inference", "evaluation", "cli", "demo", "outputs"),
    # what predict writes per case and run (case writer, preview file, run.json): after evaluation, before cli
    "outputs": ("training", "cli", "demo"),
}

#: Modules that may choose the matplotlib backend (applications, not library code).
BACKEND_CHOOSERS = ("cli", "demo", "__main__")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import statement, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]  # from medseg import x
    return found


def _part(module: str) -> str | None:
    """``"inference"`` for ``medseg.inference.batch``; ``None`` outside medseg."""
    parts = module.split(".")
    return parts[1] if parts[0] == "medseg" and len(parts) > 1 else None


MODULES = _modules()


def test_the_tree_is_found():
    names = {name for name, _ in MODULES}
    assert {"medseg.inference.predictor", "medseg.runs.record", "medseg.training.loop"} <= names


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_imports_follow_the_allowed_directions(module, path):
    own = _part(module)
    forbidden = FORBIDDEN.get(own, ())
    broken = [f"{path.relative_to(ROOT.parent)}:{line} imports {target} ({own} must not import {_part(target)})"
              for line, target in _imports(module, path) if _part(target) in forbidden]
    assert broken == []


def test_inference_never_imports_training():
    """The rule of issue 14 on its own, so that a change to the table above cannot drop it."""
    broken = [f"{name}:{line} imports {target}" for name, path in MODULES if _part(name) == "inference"
              for line, target in _imports(name, path) if _part(target) in ("training", "evaluation")]
    assert broken == []


def _chooses_backend(tree: ast.AST) -> list[int]:
    """Lines calling ``matplotlib.use(...)`` (also ``mpl.use`` after ``import matplotlib as mpl``) or importing
    ``use`` from matplotlib."""
    aliases = {"matplotlib"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "matplotlib"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "matplotlib" and "use" in {a.name for a in node.names}:
            lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use"
                and isinstance(node.func.value, ast.Name) and node.func.value.id in aliases):
            lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "switch_backend"):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_library_code_never_chooses_the_matplotlib_backend(module, path):
    if (_part(module) or "") in BACKEND_CHOOSERS:
        return
    assert _chooses_backend(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_backend_check_can_fail():
    snippets = ["import matplotlib\nmatplotlib.use('Agg')", "import matplotlib as mpl\nmpl.use('Agg')",
                "from matplotlib import use", "import matplotlib.pyplot as plt\nplt.switch_backend('Agg')"]
    assert [len(_chooses_backend(ast.parse(s))) for s in snippets] == [1, 1, 1, 1]
    assert _chooses_backend(ast.parse("import matplotlib.pyplot as plt\nplt.plot([1])")) == []


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "inference"
    pkg.mkdir()
    (pkg / "x.py").write_text("from ..training import loop\nfrom . import tta\n")
    targets = [t for _, t in _imports("medseg.inference.x", pkg / "x.py")]
    assert "medseg.training.loop" in targets and "medseg.inference.tta" in targets
