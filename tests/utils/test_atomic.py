"""Atomic writes: umask modes, fsync of file and folder, errors naming the target, stale temp clean-up."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medseg.utils import atomic
from medseg.utils.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    is_temp_name,
    remove_stale_temps,
)


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(value: int) -> None:
        os.umask(value)

    yield set_
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_outputs_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    text = atomic_write_text(tmp_path / "new" / "deeper" / "a.txt", "x")
    with atomic_dir(tmp_path / "series") as tmp:
        (tmp / "slice.dcm").write_bytes(b"d")
    assert _mode(text) == file_mode
    assert _mode(tmp_path / "new") == dir_mode and _mode(tmp_path / "new" / "deeper") == dir_mode
    assert _mode(tmp_path / "series") == dir_mode and _mode(tmp_path / "series" / "slice.dcm") == file_mode


def test_writers_that_reopen_the_temp_file_keep_the_mode(tmp_path, umask):
    """nibabel / matplotlib / numpy open the temporary path themselves: the mode must survive that."""
    import nibabel as nib
    import numpy as np

    umask(0o002)
    with atomic_path(tmp_path / "seg.nii.gz") as tmp:
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp)
    with atomic_path(tmp_path / "a.npy") as tmp:
        np.save(tmp, np.arange(3))
    assert _mode(tmp_path / "seg.nii.gz") == 0o664 and _mode(tmp_path / "a.npy") == 0o664
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]


def test_fsync_file_before_rename_and_folder_after(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(kind)
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "out" / "a.json", "{}")
    # The first write into a folder may also clean it (no stale files here, so no extra fsync).
    assert events == ["file", "rename", "dir"]
    events.clear()
    with atomic_dir(tmp_path / "out" / "series") as tmp:
        (tmp / "1.dcm").write_bytes(b"1")
        (tmp / "2.dcm").write_bytes(b"2")
    assert events == ["file", "file", "dir", "rename", "dir"]


def test_new_folders_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real_fsync(fd)))
    atomic_write_text(tmp_path / "a" / "b" / "c.txt", "x")
    inodes = {p.stat().st_ino for p in (tmp_path, tmp_path / "a", tmp_path / "a" / "b")}
    assert inodes <= set(synced)  # each new folder's parent, and the target's folder


def test_error_keeps_previous_file_and_removes_temp(tmp_path):
    target = atomic_write_text(tmp_path / "a.csv", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_os_error_names_the_target_not_the_temp_file(tmp_path):
    target = tmp_path / "summary.json"
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_permission_error_keeps_its_type(tmp_path):
    with pytest.raises(PermissionError) as info, atomic_path(tmp_path / "x.png"):
        raise PermissionError(errno.EACCES, "Permission denied")
    assert info.value.filename == str(tmp_path / "x.png")


def test_a_folder_is_not_a_file_target(tmp_path):
    with pytest.raises(IsADirectoryError), atomic_path(tmp_path):
        pass


def test_temp_names_keep_suffixes_and_are_recognised(tmp_path):
    with atomic_path(tmp_path / "3_seg.nii.gz") as tmp:
        assert tmp.name.startswith(".3_seg.") and tmp.name.endswith(".medseg-tmp.nii.gz")
        assert is_temp_name(tmp.name)
        tmp.write_bytes(b"")
    assert not is_temp_name("3_seg.nii.gz") and not is_temp_name(".hidden_notes.txt")
    assert is_temp_name(".last.k2j4_9ab.tmp.pt")  # earlier versions' mkstemp name


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_stale_temp_files_are_removed_and_live_ones_kept(tmp_path):
    owner = atomic._owner_tag()  # <host>-<boot>-<pid namespace>
    dead = tmp_path / f".last.{owner}-{_dead_pid()}-abcdef01.medseg-tmp.pt"
    live = tmp_path / f".best.{owner}-{os.getppid()}-abcdef02.medseg-tmp.pt"  # the pytest runner's parent
    mine = tmp_path / f".metrics.{owner}-{os.getpid()}-abcdef03.medseg-tmp.csv"
    other_host_old = tmp_path / ".curves.00000000-000000000000-1-1-abcdef04.medseg-tmp.png"
    other_host_new = tmp_path / ".curves.00000000-000000000000-1-1-abcdef05.medseg-tmp.png"
    legacy_old = tmp_path / ".3_seg.a1b2c3d4.tmp.nii.gz"
    legacy_new = tmp_path / ".4_seg.a1b2c3d4.tmp.nii.gz"
    dead_dir = tmp_path / f".series.{owner}-{_dead_pid()}-abcdef06.medseg-tmp"
    user_files = [tmp_path / "last.pt", tmp_path / ".notes.txt", tmp_path / "x.tmp"]
    for path in [dead, live, mine, other_host_old, other_host_new, legacy_old, legacy_new, *user_files]:
        path.write_bytes(b"x")
    _age(other_host_old, 2 * 86400), _age(legacy_old, 2 * 3600), _age(user_files[1], 10 * 86400)
    dead_dir.mkdir()
    (dead_dir / "slice.dcm").write_bytes(b"x")

    removed = remove_stale_temps(tmp_path)

    assert sorted(removed) == sorted([dead, other_host_old, legacy_old, dead_dir])
    assert all(p.exists() for p in [live, mine, other_host_new, legacy_new, *user_files])
    assert not any(p.exists() for p in removed)


def test_temps_of_another_pid_namespace_or_boot_are_kept(tmp_path):
    """Issue #29.13: containers with host networking share the hostname; a process in another PID namespace
    writing into the same folder has a PID that means nothing here. Its temporary file (here under a PID that
    is dead in ours) is kept, as is one of another boot with this hostname (a second machine sharing the name
    over NFS), and the hostname-only names of the previous version; they go only after a day, like another
    host's. The owner tag is the boot id and the PID namespace of /proc."""
    owner = atomic._owner_tag()
    host, boot, namespace = owner.split("-")
    assert boot == open("/proc/sys/kernel/random/boot_id").read().strip().replace("-", "")[:12]
    assert namespace == os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]")
    pid = _dead_pid()
    other_namespace = tmp_path / f".last.{host}-{boot}-{int(namespace) + 1}-{pid}-abcdef01.medseg-tmp.pt"
    other_boot = tmp_path / f".last.{host}-{'f' * 12 if boot != 'f' * 12 else '0' * 12}-{namespace}-{pid}-abcdef02" \
        ".medseg-tmp.pt"
    hostname_only = tmp_path / f".last.{host}-{pid}-abcdef03.medseg-tmp.pt"  # the previous version's name
    ours = tmp_path / f".last.{owner}-{pid}-abcdef04.medseg-tmp.pt"
    for path in (other_namespace, other_boot, hostname_only, ours):
        path.write_bytes(b"x")
        assert is_temp_name(path.name)
    assert remove_stale_temps(tmp_path) == [ours]  # the only owner provably dead
    for path in (other_namespace, other_boot, hostname_only):
        _age(path, 2 * 86400)
    assert sorted(remove_stale_temps(tmp_path)) == sorted([other_namespace, other_boot, hostname_only])
    with atomic_path(tmp_path / "x.pt") as tmp:
        assert tmp.name.startswith(f".x.{owner}-{os.getpid()}-") and tmp.name.endswith(".medseg-tmp.pt")


def test_first_write_into_a_folder_cleans_a_killed_writers_temp(tmp_path):
    """A writer killed with SIGKILL leaves its temporary file; the next run's first write removes it."""
    code = (
        "import os, signal, sys\n"
        "from medseg.utils.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "last.pt")], check=False)
    assert proc.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and is_temp_name(left[0])
    atomic._cleaned.discard((os.getpid(), os.path.abspath(tmp_path)))
    atomic_write_json(tmp_path / "summary.json", {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_full_disk_is_enospc_naming_the_target_even_from_torch(small_disk):
    """torch.save reports a full disk as RuntimeError; atomic_path turns it into OSError(ENOSPC)."""
    import torch

    from ..conftest import fill_disk

    target = atomic_write_text(small_disk / "last.pt", "previous")
    fill_disk(small_disk)
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        torch.save({"w": torch.zeros(100_000)}, tmp)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "previous" and not [p for p in small_disk.iterdir() if is_temp_name(p.name)]
    with pytest.raises(OSError) as info:
        atomic_write_json(small_disk / "summary.json", {"x": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(small_disk / "summary.json")


def _strict_loads(text: str):
    """``json.loads`` as a strict reader (JavaScript, jq) parses: ``NaN``, ``Infinity`` are errors."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_is_strict_not_a_number_is_null(tmp_path):
    import numpy as np

    data = {"dice": float("nan"), "hd95_mm": np.float32("inf"), "volume_ml": np.float64(12.5), "n": np.int64(3),
            "box": (1, 2), "values": np.array([1.0, np.nan]), 7: "int key", "path": tmp_path}  # fmt: skip
    path = atomic.atomic_write_json(tmp_path / "out.json", data)
    assert _strict_loads(path.read_text()) == {"dice": None, "hd95_mm": None, "volume_ml": 12.5, "n": 3,
                                               "box": [1, 2], "values": [1.0, None], "7": "int key",
                                               "path": str(tmp_path)}  # fmt: skip
    with pytest.raises(TypeError, match="object of type object is not JSON serialisable"):
        atomic.atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_csv_floats_without_binary_noise(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"case": ["a", "b"], "dice": [0.1 + 0.2, float("nan")], "voxels": [12, 7]})
    path = atomic.atomic_write_csv(tmp_path / "t.csv", frame)
    assert path.read_text().splitlines() == ["case,dice,voxels", "a,0.3,12", "b,,7"]  # repr: 0.30000000000000004
    assert pd.read_csv(path)["dice"][0] == pytest.approx(0.1 + 0.2, rel=1e-10)


def test_an_output_name_taken_by_a_symlink_replaces_the_link_not_its_target(tmp_path):
    """Issue #29.1: writing ``volumes.csv`` where a link was planted leaves the linked file as it was."""
    from medseg.utils.atomic import atomic_write_text

    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "volumes.csv").symlink_to(victim)
    atomic_write_text(out / "volumes.csv", "case\n")
    assert victim.read_text() == "precious data\n"
    assert not (out / "volumes.csv").is_symlink() and (out / "volumes.csv").read_text() == "case\n"
