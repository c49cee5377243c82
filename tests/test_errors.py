"""MedsegError: one line naming the file; DataError/ConfigError are ValueErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import ConfigError, DataError, MedsegError


def test_message_names_the_path():
    err = DataError("not a NIfTI file", path=Path("scans") / "a.nii")
    assert str(err) == "scans/a.nii: not a NIfTI file" and err.path == "scans/a.nii"
    bare = ConfigError("training.epochs must be >= 1, got 0")
    assert str(bare) == "training.epochs must be >= 1, got 0" and bare.path is None


@pytest.mark.parametrize("cls", [DataError, ConfigError])
def test_hierarchy(cls):
    with pytest.raises(ValueError):
        raise cls("x")
    assert issubclass(cls, MedsegError)
