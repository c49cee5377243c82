"""Output-path rules: outputs never equal, link to, or replace an input; OS errors as one line."""

from __future__ import annotations

import errno
import os

import pytest

from medseg.errors import ConfigError
from medseg.utils.paths import check_outputs, displayable, os_error_line, same_file


@pytest.fixture
def tree(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "volume-2.nii.gz").write_bytes(b"scan")
    (data / "notes.txt").write_text("mine")
    return data


def test_same_file_sees_through_dots_and_links(tree):
    scan = tree / "volume-2.nii.gz"
    (tree / "link.nii.gz").symlink_to(scan)
    os.link(scan, tree / "hard.nii.gz")
    assert same_file(tree / "sub" / ".." / "volume-2.nii.gz", scan)
    assert same_file(tree / "link.nii.gz", scan) and same_file(tree / "hard.nii.gz", scan)
    assert not same_file(tree / "notes.txt", scan) and not same_file(tree / "new.csv", scan)


@pytest.mark.parametrize("name", ["volume-2.nii.gz", "link.nii.gz", "hard.nii.gz"])
def test_output_equal_to_an_input_file_is_refused(tree, name):
    scan = tree / "volume-2.nii.gz"
    (tree / "link.nii.gz").symlink_to(scan)
    os.link(scan, tree / "hard.nii.gz")
    with pytest.raises(ConfigError, match="--json is an input"):
        check_outputs({"--json": tree / name}, [scan])


def test_existing_file_inside_an_input_folder_is_refused_new_one_allowed(tree):
    with pytest.raises(ConfigError, match="inside the input folder"):
        check_outputs({"--csv": tree / "notes.txt"}, [tree])
    check_outputs({"--csv": tree / "report.csv"}, [tree])  # a new file next to the data is fine


def test_output_folder_equal_to_an_input_folder_is_refused(tree, tmp_path):
    with pytest.raises(ConfigError, match="--out is an input"):
        check_outputs({"--out": tree}, [tree], folders=["--out"])
    check_outputs({"--out": tree / "predictions"}, [tree], folders=["--out"])


def test_kinds_and_clashes(tree):
    with pytest.raises(ConfigError, match="names an existing file; expected a folder"):
        check_outputs({"--out": tree / "notes.txt"}, [], folders=["--out"])
    with pytest.raises(ConfigError, match="names a folder; expected a file"):
        check_outputs({"--csv": tree}, [])
    with pytest.raises(ConfigError, match="--csv and --json name the same file"):
        check_outputs({"--json": tree / "x", "--csv": tree / "x"}, [])
    check_outputs({"--json": None, "--csv": tree / "new.csv"}, [None, tree / "volume-2.nii.gz"])


def test_message_names_flag_and_file(tree):
    with pytest.raises(ConfigError) as info:
        check_outputs({"--json": tree / "volume-2.nii.gz"}, [tree / "volume-2.nii.gz"])
    assert str(info.value).startswith(str(tree / "volume-2.nii.gz") + ": --json")
    assert "\n" not in str(info.value)


def test_os_error_line():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out/summary.json")
    assert os_error_line(full) == "out/summary.json: No space left on device (ENOSPC)"
    moved = OSError(errno.EXDEV, os.strerror(errno.EXDEV), "a", None, "b")
    assert os_error_line(moved) == "a -> b: Invalid cross-device link (EXDEV)"
    assert os_error_line(OSError("plain")) == "plain"


def test_displayable_shows_undecodable_bytes_as_replacement_characters():
    name = os.fsdecode(b"caf\xe9_seg.nii.gz")
    assert displayable(name) == "caf\ufffd_seg.nii.gz"
    assert displayable("café") == "café"
