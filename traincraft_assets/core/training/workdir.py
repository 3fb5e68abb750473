"""Training work directories: where a training keeps its checkpoints until its model is published.

A work directory lives in the artifact store (on Kubernetes, the shared volume) at a path made
from the training's inputs and settings, not from the run, so a retried step, a re-launched run
or a rerun after a crash finds the checkpoints and resumes. While a training runs, its lock
file names the holder (host, pid, start) and is touched every HEARTBEAT_S seconds; a lock left
untouched for STALE_S belongs to a training that died (here or on a lost node) and is taken
over. Directories of abandoned trainings (no live lock, nothing written for RETENTION_S) are
removed when the next training starts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from traincraft_assets.core.processes import process_alive
from traincraft_assets.core.training.base import TrainingFailed

LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0
STALE_S = 120.0
RETENTION_S = 7 * 24 * 3600.0


class WorkdirBusy(TrainingFailed):
    """Another live training owns the work directory."""


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text())
        return f"pid {info['pid']} on host {info['host']} since {info['started']}"
    except (OSError, ValueError, KeyError):
        return "an unknown process"


def lock_is_live(lock: Path, now: float | None = None) -> bool:
    """A lock touched within STALE_S whose holder, if on this host, is still running."""
    try:
        age = (now or time.time()) - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age >= STALE_S:
        return False
    try:
        info = json.loads(lock.read_text())
    except (OSError, ValueError):
        return True  # being written right now, or unreadable: trust the heartbeat
    if info.get("host") == socket.gethostname():
        try:
            return process_alive(int(info["pid"]))
        except (KeyError, ValueError):
            pass
    return True


class WorkdirLock:
    """Held while a training runs in `workdir`; a second holder is refused with the first's name."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / LOCK_FILE
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> WorkdirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not lock_is_live(self.path):
            self.path.unlink(missing_ok=True)  # its training died: take the directory over
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise WorkdirBusy(
                f"the training work directory {self.path.parent} is in use by {_holder(self.path)}. "
                "The same training (same inputs and settings) is already running; wait for it, or "
                f"stop it. A lock not refreshed for {STALE_S:.0f} s is taken over automatically."
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, fh
            )
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)


def _last_write(directory: Path) -> float:
    times = [p.stat().st_mtime for p in directory.rglob("*") if p.is_file()]
    return max(times, default=directory.stat().st_mtime)


def clean_abandoned(root: Path, retention_s: float = RETENTION_S, now: float | None = None) -> list[Path]:
    """Remove work directories under `root` with no live lock and nothing written for
    `retention_s`; return what was removed."""
    now = now or time.time()
    removed = []
    for directory in sorted(Path(root).glob("*")) if Path(root).is_dir() else []:
        if not directory.is_dir() or lock_is_live(directory / LOCK_FILE, now):
            continue
        if now - _last_write(directory) >= retention_s:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed
