"""Lazy package exports: names resolve on first use, and the CLI parser loads no torch."""

import subprocess
import sys

import pytest


def test_exports_resolve_to_the_submodule_objects():
    import medseg.training
    from medseg.training.loop import train

    assert medseg.training.train is train
    assert "train" in dir(medseg.training)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        medseg.training.nope  # noqa: B018


@pytest.mark.parametrize(
    "package", ["medseg.data", "medseg.evaluation", "medseg.inference", "medseg.runs", "medseg.training"]
)
def test_every_listed_name_exists(package):
    import importlib

    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_cli_parser_does_not_import_torch():
    code = "import sys, medseg.cli as c; c.build_parser(); print('torch' in sys.modules, 'monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
