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


def _requirements() -> dict[str, str]:
    """``name -> specifier`` of the installed distribution's requirements (no extras)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in requires("medseg") or []]
    return {r.name.lower(): str(r.specifier) for r in reqs if r.marker is None}


def test_metadata_accepts_a_range_of_torch_versions():
    """Installing medseg into a CUDA environment must keep that environment's torch (issue #16)."""
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(_requirements()["torch"])
    assert "==" not in str(spec) and "===" not in str(spec)
    accepted = [v for v in ("2.4.0", "2.6.0", "2.9.1", "2.13.0", "2.14.1") if spec.contains(v)]
    assert accepted == ["2.4.0", "2.6.0", "2.9.1", "2.13.0", "2.14.1"]
    assert not spec.contains("1.13.1")


def test_pyproject_declares_the_same_torch_range_as_the_installed_metadata():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_spec = [d for d in declared if d.replace(" ", "").startswith("torch")]
    assert torch_spec == ["torch>=2.4,<3"]
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text()  # make and CI keep the CPU wheel
