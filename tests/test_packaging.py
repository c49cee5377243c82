"""The wheel: built from the tree, installed without ``-e`` into a fresh environment, and run (issue #25).

Every install in the Makefile and CI is editable, so only this test sees what a wheel ships: a hand-written
package list once left ``medseg/runs`` out and every non-editable install failed to import inference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SKIP_TOP = {".venv", ".venv-bench", ".git", "build", "dist", "demo_output", "runs", "data", "notebooks", "tests",
             "benchmarks", "notebook_output"}  # fmt: skip


def _package_folders() -> set[str]:
    """Every folder under ``medseg/`` with an ``__init__.py``, as a wheel path prefix (``medseg/io/``)."""
    return {str(p.parent.relative_to(REPO)) + "/" for p in (REPO / "medseg").rglob("__init__.py")
            if "__pycache__" not in p.parts}  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the tree (so the working tree gets no build/ or egg-info folders)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == REPO
        skip = (top and n in _SKIP_TOP for n in names)
        return {n for n, s in zip(names, skip) if s or n == "__pycache__" or n.endswith((".egg-info", "cache"))}

    shutil.copytree(REPO, src, ignore=ignore)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                          "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (built,) = (tmp / "dist").glob("medseg-*.whl")
    return built


def test_wheel_contains_every_package_and_pipeline_recipe(wheel):
    recipes = sorted(p.name for p in (REPO / "pipelines").glob("*.yaml"))
    assert recipes, "pipelines/ holds no *.yaml recipe"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"medseg/pipelines/{name}" for name in recipes} <= names
    folders = _package_folders()
    assert "medseg/runs/" in folders and len(folders) >= 12
    missing = sorted(f for f in folders if f + "__init__.py" not in names)
    assert not missing, f"packages missing from the wheel: {missing}"
    modules = {str(p.relative_to(REPO)) for p in (REPO / "medseg").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= names, sorted(modules - names)[:5]
    assert "medseg/__init__.pyi" in names  # what IDEs see of the lazily reached sub-packages
    assert any(n.endswith("entry_points.txt") for n in names)


@pytest.fixture(scope="module")
def wheel_env(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (no ``-e``); its dependencies are this
    environment's, reached through a ``.pth`` line (a plain path: this environment's editable ``medseg``
    finder is not loaded, so ``import medseg`` can only find the wheel's copy)."""
    env = tmp_path_factory.mktemp("wheel_env") / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                          "-q", str(wheel)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return env


def _run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a command of the wheel's environment; its home (the OpenVINO model cache, the phantom cache) is
    ``cwd``, so the user's ``~/.cache/medseg`` is never written by a test."""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", "HOME": str(cwd)}
    environ.pop("PYTHONPATH", None)
    return subprocess.run([str(env / "bin" / a) if i == 0 else a for i, a in enumerate(args)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_installed_wheel_imports_every_subpackage_and_reports_its_version(wheel_env, tmp_path):
    packages = sorted(f.rstrip("/").replace("/", ".") for f in _package_folders())
    code = ("import importlib, importlib.metadata, pathlib, medseg\n"
            f"for name in {packages!r}:\n    importlib.import_module(name)\n"
            "print(pathlib.Path(medseg.__file__).resolve())\n"
            "print(importlib.metadata.version('medseg'))\n")  # fmt: skip
    run = _run(wheel_env, "python", "-c", code, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    location, metadata_version = run.stdout.split()
    assert str(wheel_env) in location, f"imported {location}, not the wheel's copy"
    version = _run(wheel_env, "medseg", "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"medseg {metadata_version}"
    import medseg

    assert metadata_version == medseg.__version__


def test_installed_wheel_trains_and_predicts_a_tiny_phantom(wheel_env, tmp_path):
    """``medseg phantom``, ``train liver`` (the recipe from the wheel) and ``predict`` from the wheel alone."""
    assert _run(wheel_env, "medseg", "phantom", "data", "--cases", "2", "--size", "tiny", "--workers", "1",
                cwd=tmp_path).returncode == 0  # fmt: skip
    tiny = ["data.folds=2", "training.iterations_per_epoch=2", "training.batch_size=1", "training.workers=0",
            "model.depth=3", "model.base_filters=4", "training.patch_size=[32,32,16]", "model.strides=null",
            f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    train = _run(wheel_env, "medseg", "train", "liver", "--data", "data", "--out", "run", "--device", "cpu",
                 "--epochs", "1", "--no-progress", *[a for s in tiny for a in ("--set", s)], cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    predict = _run(wheel_env, "medseg", "predict", "--model", "run", "data/volume-0.nii.gz", "--out", "pred",
                   "--device", "cpu", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    run = json.loads((tmp_path / "pred" / "run.json").read_text())
    assert run["settings"]["compute"]["runtime"] in ("openvino", "torch")  # auto: OpenVINO where installed
    import nibabel as nib
    import numpy as np

    scan = nib.load(tmp_path / "data" / "volume-0.nii.gz")
    seg = nib.load(tmp_path / "pred" / "0_seg.nii.gz")
    assert seg.shape == scan.shape
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}


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
