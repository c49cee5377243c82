"""find_checkpoint / find_run_folder: best.pt before last.pt, clear errors otherwise."""

from __future__ import annotations

import pytest

from medseg.errors import DataError
from medseg.runs import find_checkpoint, find_run_folder


def test_find_checkpoint_prefers_best(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "last.pt"
    (tmp_path / "best.pt").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "best.pt"
    assert find_checkpoint(tmp_path / "last.pt") == tmp_path / "last.pt"  # a file is taken as given


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(DataError, match=r"run folder has no best\.pt or last\.pt"):
        find_checkpoint(tmp_path)
    with pytest.raises(DataError, match=r"missing\.pt: no such run folder or checkpoint"):
        find_checkpoint(tmp_path / "missing.pt")


def test_find_run_folder_searches_below(tmp_path):
    (tmp_path / "b" / "fold0").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "fold0" / "best.pt").write_bytes(b"")
    (tmp_path / "a" / "last.pt").write_bytes(b"")
    assert find_run_folder(tmp_path) == tmp_path / "b" / "fold0"  # best.pt first, wherever it is
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no checkpoint was written below this folder"):
        find_run_folder(tmp_path / "empty")
