"""The notebooks run top to bottom (tiny phantom settings) and are committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_four_notebooks_exist():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def _fake_demo_output(root: Path) -> None:
    """``demo_output/`` as `make demo` leaves it (held-out scans, predictions with their tables), tumor-free."""
    from scipy import ndimage

    from medseg.data import discover_dataset, write_phantom_dataset
    from medseg.data.naming import prediction_filename
    from medseg.evaluation import volumes_report
    from medseg.evaluation.tables import lesion_rows, lesions_table, volume_row, volumes_table, write_table
    from medseg.io import read_volume, write_volume

    heldout, pred = root / "demo_output" / "heldout", root / "demo_output" / "predictions"
    write_phantom_dataset(heldout, cases=2, size="tiny", seed=1, workers=1, progress=False)
    (root / "demo_output" / "data").symlink_to(heldout)
    rows, lesions = [], []
    for case in discover_dataset(heldout):
        ref = read_volume(case.label)
        tumor_free = ref.with_array((ref.array > 0).astype("uint8"))
        write_volume(tumor_free, case.label, label=True)  # a data set without any tumor
        predicted = tumor_free.with_array(ndimage.binary_erosion(tumor_free.array).astype("uint8"))
        write_volume(predicted, pred / prediction_filename(case.case_id), label=True)
        report = volumes_report(predicted, read_volume(case.image))
        rows.append(volume_row(case.case_id, report))
        lesions += lesion_rows(case.case_id, report["lesions"])
    write_table(volumes_table(rows), pred / "volumes.csv")
    write_table(lesions_table(lesions), pred / "lesions.csv")


@pytest.mark.parametrize("demo", [False, True], ids=["phantom", "demo-output-tumor-free"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, demo, tmp_path, monkeypatch):
    """Top to bottom, on fresh phantom data (with tumors) and on a `make demo` output without tumors."""
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel must choose its own (inline) backend
    nb = nbformat.read(path, as_version=4)
    if demo:
        _fake_demo_output(tmp_path)
    for cell in nb.cells:  # small settings: the tiny phantom instead of the small one
        if cell.cell_type == "code" and "PHANTOM_SIZE, PHANTOM_CASES" in cell.source:
            cell.source = cell.source.replace('"small", 6', '"tiny", 4')
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.iterdir()}
    assert written <= {"notebook_output", "demo_output"}  # nothing outside the two folders
    if not demo:
        assert (tmp_path / "notebook_output" / "phantom_data" / "manifest.json").exists()
        if path.stem.startswith("01"):  # the phantom's progress bar renders as an ipywidgets widget
            cell = next(c for c in nb.cells if c.cell_type == "code" and "write_phantom_dataset" in c.source)
            assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.outputs)
            assert not any("IProgress not found" in o.get("text", "") for o in cell.outputs)
    if path.stem.startswith("02"):  # a figure drawn after evaluate_folders shows inline (no Agg switch)
        cell = next(c for c in nb.cells if c.cell_type == "code" and ".plot.bar(ax=ax" in c.source)
        assert any("image/png" in o.get("data", {}) for o in cell.outputs)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_lab_serves_the_notebooks(tmp_path):
    """The README's `make lab` starts JupyterLab on the notebooks; its REST API lists them (issue #16)."""
    import json
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    repo = Path(__file__).resolve().parent.parent
    port, token = _free_port(), "medseg-test-token"
    args = f"--no-browser --ip 127.0.0.1 --port {port} --ServerApp.token={token} --ServerApp.port_retries=0"
    if os.geteuid() == 0:  # CI runs as root, which Jupyter refuses without this flag
        args += " --allow-root"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path)}
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=repo, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        listing = None
        for _ in range(120):  # up to ~60 s on a loaded 2-core machine
            time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5) as r:
                    listing = json.load(r)
                break
            except OSError:
                continue
        assert listing is not None, "JupyterLab did not answer"
        names = sorted(item["name"] for item in listing["content"])
        assert names == sorted(p.name for p in NOTEBOOKS)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
