"""process_alive: a dead pid, a live one, and a pid that now belongs to a newer process."""

import os
import subprocess
import sys
import time

from traincraft_assets.core.processes import process_alive


def test_a_finished_process_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)


def test_a_running_process_seen_after_it_started_is_alive():
    assert process_alive(os.getpid(), seen_at=time.time())


def test_a_process_that_started_after_the_pid_was_recorded_is_someone_else():
    """The pid was recorded an hour before this process existed: the recorded one is gone and
    the pid was reused."""
    assert not process_alive(os.getpid(), seen_at=time.time() - 3600 - time.monotonic())
