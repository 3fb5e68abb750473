"""Run a command so that it cannot outlive the process that started it.

A training is started as `python guard.py COMMAND...` in a new process group. The guard starts
COMMAND in that group and watches its own parent (the Dagster step). If the parent disappears
(SIGKILL, OOM kill, a lost node's run worker), or the guard gets SIGTERM, it stops the whole
group (MACE, torchrun's workers, data-loader workers): SIGTERM, then SIGKILL after a grace
period. Without it a killed step leaves MACE training as an orphan on the GPU.

It is run as a script, not as a module of the package, so it starts in milliseconds and needs
nothing but the standard library.
"""

import os
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 10.0
POLL_S = 0.5
COULD_NOT_START = 127


def _stop_group(signum: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal reaches this process too
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.1)
                continue
        except ChildProcessError:
            break  # every child is gone
    os.killpg(0, signal.SIGKILL)  # whatever is left, this process included


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread


def main(argv: list[str]) -> int:
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda signum, frame: _stop_group(signum))
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        print(f"could not start {argv[0]!r}: {exc}", flush=True)
        return COULD_NOT_START
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
