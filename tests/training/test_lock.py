"""One `medseg train` per run folder: a second one is refused naming the holder's PID; a lock left by a
dead process (SIGKILL) is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from medseg.cli import main
from medseg.errors import ConfigError
from medseg.training.lock import LOCK_NAME, run_lock

HOLDER = "import sys, time\nfrom medseg.training.lock import run_lock\nwith run_lock(sys.argv[1]):\n" \
         "    print('locked', flush=True)\n    time.sleep(120)\n"  # fmt: skip


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/run."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_second_train_on_a_locked_run_folder_is_refused(holder, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "liver", "--out", str(run), "--device", "cpu", "--set", "data.folds=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"in use by another `medseg train` (PID {holder.pid} on " in err[0]
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # the holder's files untouched, nothing added


def test_lock_of_a_killed_process_is_taken_over(holder, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"PID {holder.pid}"):
        with run_lock(run):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder.pid  # stale: its file is still there
    with run_lock(run) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (run / LOCK_NAME).exists()  # released
