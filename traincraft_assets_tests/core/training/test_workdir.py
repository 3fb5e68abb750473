"""Training work directories: one live owner, stale owners taken over, abandoned ones cleaned."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from traincraft_assets.core.training.workdir import (
    LOCK_FILE,
    RETENTION_S,
    STALE_S,
    WorkdirBusy,
    WorkdirLock,
    clean_abandoned,
    lock_is_live,
)


def _foreign_lock(workdir, pid, host="another-node", age_s=0.0):
    workdir.mkdir(parents=True, exist_ok=True)
    lock = workdir / LOCK_FILE
    lock.write_text(json.dumps({"host": host, "pid": pid, "started": "2026-12-02T10:00:00+0000"}))
    when = time.time() - age_s
    os.utime(lock, (when, when))
    return lock


def test_a_second_training_in_the_same_directory_is_refused_with_the_owner(tmp_path):
    with WorkdirLock(tmp_path / "w"), pytest.raises(WorkdirBusy) as info:
        WorkdirLock(tmp_path / "w").__enter__()
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(info.value)
    assert not (tmp_path / "w" / LOCK_FILE).exists()  # released on exit


def test_a_recent_lock_from_another_node_is_respected(tmp_path):
    _foreign_lock(tmp_path / "w", pid=1)
    with pytest.raises(WorkdirBusy, match="another-node"):
        WorkdirLock(tmp_path / "w").__enter__()


def test_a_lock_whose_heartbeat_stopped_is_taken_over(tmp_path):
    """A lost node cannot release its lock; after STALE_S without a heartbeat it is dead."""
    _foreign_lock(tmp_path / "w", pid=1, age_s=STALE_S + 1)
    with WorkdirLock(tmp_path / "w") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = _foreign_lock(tmp_path / "w", pid=int(dead.stdout), host=socket.gethostname())
    assert not lock_is_live(lock)
    with WorkdirLock(tmp_path / "w"):
        pass


def test_abandoned_directories_are_cleaned_live_ones_never(tmp_path):
    root = tmp_path / "training"
    old, fresh, owned = root / "old", root / "fresh", root / "owned"
    for directory in (old, fresh, owned):
        (directory / "checkpoints").mkdir(parents=True)
        (directory / "checkpoints" / "x.pt").write_bytes(b"x")
    ancient = time.time() - RETENTION_S - 10
    for path in (old / "checkpoints" / "x.pt", owned / "checkpoints" / "x.pt"):
        os.utime(path, (ancient, ancient))
    _foreign_lock(owned, pid=1)  # a live training, even if its files are old
    assert clean_abandoned(root) == [old]
    assert not old.exists() and fresh.exists() and owned.exists()
    assert clean_abandoned(tmp_path / "nothing_here") == []
