"""nnU-Net checkpoints load with ``weights_only=True`` and an explicit allow-list; a crafted one never runs
code."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from medseg.cli import main
from medseg.errors import DataError
from medseg.interop.nnunet import NNUNET_SAFE_GLOBALS, load_nnunet_checkpoint


class _Payload:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_allow_list_is_what_nnunet_checkpoints_need(seeded_folder):
    state = load_nnunet_checkpoint(seeded_folder / "fold_0" / "checkpoint_final.pth")
    assert state["inference_allowed_mirroring_axes"] == (0, 1, 2)
    assert state["init_args"]["device"] == torch.device("cpu")
    names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__name__}" for g in NNUNET_SAFE_GLOBALS}
    assert names == {"numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype",
                     "numpy.dtypes.Float32DType"}
    with pytest.raises(Exception, match="Unsupported global"):  # plain weights_only=True refuses NumPy scalars
        torch.load(seeded_folder / "fold_0" / "checkpoint_final.pth", weights_only=True)


def test_a_crafted_checkpoint_never_runs_code(seeded_folder, tmp_path, capsys):
    folder = tmp_path / seeded_folder.parent.name / seeded_folder.name
    shutil.copytree(seeded_folder, folder)
    marker = tmp_path / "pwned"
    torch.save({"network_weights": {}, "trainer_name": "x", "payload": _Payload(marker)},
               folder / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(DataError, match="not a safely readable nnU-Net checkpoint"):
        load_nnunet_checkpoint(folder / "fold_0" / "checkpoint_final.pth")
    scan = tmp_path / "scan.nii.gz"
    from medseg.data import make_phantom
    from medseg.io.nifti import write_nifti

    write_nifti(make_phantom(size="tiny", seed=0, index=0).image, scan)
    capsys.readouterr()
    assert main(["predict", "--model", str(folder), str(scan), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint_final.pth" in err and "Traceback" not in err
    assert not marker.exists()
