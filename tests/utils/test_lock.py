"""Folder locks: a second holder is refused (naming the first), released on exit and on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from medseg.utils.lock import FolderLockedError, folder_lock, lock_path

_HOLD = (
    "import sys, time\n"
    "from medseg.utils.lock import folder_lock\n"
    "with folder_lock(sys.argv[1], 'evaluate'):\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(60)\n"
)


@pytest.fixture
def holder(tmp_path):
    """A subprocess holding ``tmp_path``'s evaluate lock."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path, holder):
    with pytest.raises(FolderLockedError) as info, folder_lock(tmp_path, "evaluate"):
        pass
    assert f"PID {holder.pid}" in str(info.value) and str(tmp_path) in str(info.value)
    with folder_lock(tmp_path, "predict"):  # another purpose is independent
        pass


def test_lock_is_released_when_the_holder_is_killed(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with folder_lock(tmp_path, "evaluate") as path:
        assert path == lock_path(tmp_path, "evaluate") and path.exists()
    assert not path.exists()  # removed on release: no clutter in the output folder


def test_waiting_holder_gets_the_lock_after_release(tmp_path):
    code = (
        "import sys, time\n"
        "from medseg.utils.lock import folder_lock\n"
        "with folder_lock(sys.argv[1], 'predict', wait=True):\n"
        "    print(time.time(), flush=True)\n"
    )
    with folder_lock(tmp_path, "predict"):
        proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        released = time.time()
    got = float(proc.communicate(timeout=30)[0])
    assert proc.returncode == 0 and got >= released


@pytest.mark.parametrize("purpose", ["predict", "evaluate", "train"])
def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path, purpose):
    """Issue #29.1: a link under the lock's name must not make medseg truncate/overwrite what it points to."""
    from medseg.utils.lock import UnsafeLockFileError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    folder = tmp_path / "out"
    folder.mkdir()
    link = lock_path(folder, purpose)
    link.symlink_to(victim)
    with pytest.raises(UnsafeLockFileError, match="symbolic link"), folder_lock(folder, purpose):
        pass
    assert victim.read_text() == "precious data\n"
    assert link.is_symlink()  # not removed either: the user sees what was planted
    dangling = lock_path(tmp_path / "other", purpose)
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(UnsafeLockFileError), folder_lock(dangling.parent, purpose):
        pass
    assert not (tmp_path / "would-be-created").exists()


def test_a_fifo_under_the_lock_name_is_refused(tmp_path):
    from medseg.utils.lock import UnsafeLockFileError

    os.mkfifo(lock_path(tmp_path, "predict"))
    with pytest.raises(UnsafeLockFileError, match="not a regular file"), folder_lock(tmp_path, "predict"):
        pass
