"""``import medseg``: light, and every sub-package reachable from it on first use (issue #25)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import medseg

PACKAGE = Path(medseg.__file__).parent


def test_subpackages_are_every_folder_of_the_package():
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert set(medseg.SUBPACKAGES) == folders


@pytest.mark.parametrize("name", medseg.SUBPACKAGES)
def test_each_subpackage_is_an_attribute_of_medseg(name):
    assert getattr(medseg, name) is importlib.import_module(f"medseg.{name}")
    assert name in dir(medseg)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'segment'"):
        medseg.segment  # noqa: B018


def test_import_medseg_loads_no_subpackage_and_no_torch():
    code = ("import sys, medseg\n"
            "print(sorted(m for m in sys.modules if m.startswith(('medseg.', 'torch', 'numpy'))))\n"
            "medseg.evaluation.binary_metrics\n"
            "print('medseg.evaluation' in sys.modules)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True"


def test_the_stub_names_every_subpackage():
    """``__init__.pyi`` (what IDEs and type checkers read) lists exactly the lazily reached sub-packages."""
    import ast

    stub = ast.parse((PACKAGE / "__init__.pyi").read_text())
    named = {alias.asname for node in stub.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert named == set(medseg.SUBPACKAGES)
