"""`traincraft ui`: `dagster dev` on this directory's instance, ended whole when it is.

`dagster dev` runs a webserver, a daemon and code servers. Stopping only the process that
started it (a `kill`, a closed terminal, a service manager's SIGTERM) used to leave them
running, the port held. So `dagster dev` runs in a session of its own; SIGINT, SIGTERM and
SIGHUP are passed on to it as the interrupt it shuts down on, and whatever it had started that
is still there after a grace period is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from traincraft_assets.core.processes import descendants, process_alive

GRACE_S = 30.0  # dagster dev waits for its webserver and daemon to stop; then we stop what is left
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def _raise_stop(signum, frame):
    raise _Stop(signum)


def run(port: int, home: Path) -> int:
    """`dagster dev -m traincraft_assets` with DAGSTER_HOME set (to `home` unless the
    environment sets it), so dagster dev makes no temporary home of its own, which a closed
    terminal would leave behind. Returns its exit code, or 128 + the signal that stopped it."""
    env = {**os.environ, "DAGSTER_HOME": os.environ.get("DAGSTER_HOME") or str(home)}
    dagster = Path(sys.executable).parent / "dagster"
    previous = {signum: signal.signal(signum, _raise_stop) for signum in STOP_SIGNALS}
    dev = None
    try:
        dev = subprocess.Popen(
            [str(dagster), "dev", "-m", "traincraft_assets", "-p", str(port)], env=env, start_new_session=True
        )
        return dev.wait()
    except _Stop as stop:
        for signum in STOP_SIGNALS:  # a second signal must not cut the shutdown short
            signal.signal(signum, signal.SIG_IGN)
        _end(dev)
        return 128 + stop.signum
    finally:
        if dev is not None and dev.poll() is None:
            _end(dev)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _end(dev: subprocess.Popen | None) -> None:
    """Interrupt `dagster dev` (its own shutdown stops the webserver and the daemon), then kill
    what is left of the processes it had started (never a later process reusing a pid)."""
    if dev is None:
        return
    tree, seen_at = descendants(dev.pid), time.time()
    with contextlib.suppress(ProcessLookupError):
        dev.send_signal(signal.SIGINT)
    try:
        dev.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        tree |= descendants(dev.pid)
        dev.kill()
        dev.wait()
    for pid in tree:
        if process_alive(pid, seen_at):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
