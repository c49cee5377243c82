"""The wheel ships the package and every pipeline recipe (``pipelines/*.yaml`` -> ``medseg/pipelines/``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_pipeline_recipes(tmp_path):
    recipes = sorted(p.name for p in (REPO / "pipelines").glob("*.yaml"))
    assert recipes, "pipelines/ holds no *.yaml recipe"
    # build from a copy, so the shared working tree gets no build/ or egg-info folders
    src = tmp_path / "src"
    skip_top = {".venv", ".git", "build", "dist", "demo_output", "runs", "data", "notebooks", "tests", "benchmarks"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == REPO
        return {n for n in names if (top and n in skip_top) or n == "__pycache__" or n.endswith((".egg-info", "cache"))}

    shutil.copytree(REPO, src, ignore=ignore)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                          "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("medseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"medseg/pipelines/{name}" for name in recipes} <= names
    modules = ("medseg/cli/__init__.py", "medseg/io/dicom.py", "medseg/data/check.py", "medseg/pipelines/__init__.py")
    for module in modules:
        assert module in names
    assert any(n.endswith("entry_points.txt") for n in names)
