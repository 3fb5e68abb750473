"""Running `mace_run_train` as a subprocess: output streamed, failures explained, no orphans."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from traincraft_assets.core.models import TARGET_HEAD
from traincraft_assets.core.quiet import child_warning_filters
from traincraft_assets.core.settings import TRAIN_COMMAND_ENV
from traincraft_assets.core.training import guard
from traincraft_assets.core.training.base import TrainingDiverged, TrainingFailed

# Log lines by which MACE reports that it quietly dropped part of the requested strategy.
SILENT_FALLBACKS = {
    "Pseudolabeling was not successful": "pseudolabelling failed, replay frames kept placeholder labels",
    "Error applying pseudolabels": "pseudolabelling failed, replay frames kept placeholder labels",
    "FPS failed": "farthest-point sampling failed and fell back to random",
}

# MACE logs each evaluation as "Epoch N: head: X, loss=..., RMSE_..." and, once the loss is NaN,
# goes on training on NaN weights until the last epoch.
DIVERGED = re.compile(r"loss=\s*-?(nan|inf)\b", re.IGNORECASE)


# MACE logs each evaluation as "Epoch N: head: H, loss=..., RMSE_E_per_atom=... meV, RMSE_F=... meV / A"
# (0-based N; "Initial:" before the first update), and nothing about how far along it is.
EVALUATION = re.compile(
    r"(?:Initial|Epoch (?P<epoch>\d+)): head: (?P<head>\S+), loss=\s*(?P<loss>\S+), "
    r"RMSE_E_per_atom=\s*(?P<e>\S+) meV, RMSE_F=\s*(?P<f>\S+) meV"
)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class EpochProgress:
    """Turns MACE's evaluation lines into one "epoch i/N ... ETA" line per epoch, with the
    target head's errors (a multihead run also evaluates its replay head).

    The rate counts only epochs trained by this process from its first evaluation on, so a
    resumed training's ETA is not skewed by the epochs before the interruption, nor by MACE's
    start-up (imports, statistics of the data).
    """

    def __init__(self, total_epochs: int, clock: Callable[[], float] = time.monotonic):
        self.total, self.clock = total_epochs, clock
        self.started = clock()
        self.first: int | None = None  # first epoch this process trained
        self.last = -1

    def __call__(self, line: str) -> str | None:
        match = EVALUATION.search(line)
        if match is None:
            return None
        if match["epoch"] is None:  # the initial evaluation: training starts now
            self.started = self.clock()
            return None
        epoch = int(match["epoch"])
        if match["head"] != TARGET_HEAD or epoch <= self.last:
            return None
        self.last = epoch
        self.first = epoch if self.first is None else self.first
        elapsed = self.clock() - self.started
        left = elapsed / (epoch - self.first + 1) * (self.total - epoch - 1)
        return (
            f"epoch {epoch + 1}/{self.total} ({match['head']}: loss {float(match['loss']):.4g}, "
            f"RMSE_E {float(match['e']):.1f} meV/atom, RMSE_F {float(match['f']):.1f} meV/Å); "
            f"{_clock(elapsed)} elapsed, about {_clock(left)} left"
        )


def run_training(argv: Sequence[str], workdir: Path, on_line: Callable[[str], None], env: dict | None = None) -> None:
    """Run MACE's command line `argv`, streaming each output line to `on_line`.

    MACE runs in its own process group under core/training/guard.py, so no training keeps a GPU
    busy after its step has ended: the group is stopped if this call is interrupted (a run
    stopped from the UI) and, by the guard, if this process dies without a word (SIGKILL, OOM).
    Exit code 0 is not enough: MACE logs, and then ignores, some failures that change the
    strategy (SILENT_FALLBACKS); those fail the step. A NaN or infinite loss stops MACE at once
    (TrainingDiverged); its log and checkpoints stay in `workdir` for inspection.
    """
    argv = list(argv)
    tail: deque[str] = deque(maxlen=40)
    fallbacks: list[str] = []
    Path(workdir).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, guard.__file__, *argv],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONWARNINGS": child_warning_filters(), **(env or {})},
        start_new_session=True,
    )
    assert proc.stdout is not None
    diverged = None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            on_line(line)
            fallbacks += [why for pattern, why in SILENT_FALLBACKS.items() if pattern in line]
            if DIVERGED.search(line):
                diverged = line
                break
        code = proc.wait() if diverged is None else None
    finally:
        if proc.poll() is None:
            _stop(proc)
    if diverged is not None:
        raise TrainingDiverged(
            f"the training diverged: MACE reported a non-finite loss ({diverged.split('INFO: ', 1)[-1].strip()}), so it was "
            f"stopped. Its log (logs/) and any checkpoints are kept in {workdir} for inspection. A rerun "
            "with the same settings diverges again: lower lr, and check the labels (dataset_health; "
            "units, NaN) and the E0s (foundation_energy_consistency)."
        )
    if code == guard.COULD_NOT_START:
        raise TrainingFailed(
            f"could not start MACE with {argv[0]!r} ({tail[-1] if tail else 'no output'}); check "
            f"${TRAIN_COMMAND_ENV} or install mace-torch in this environment."
        )
    if code != 0:
        raise TrainingFailed(
            f"mace_run_train exited with code {code}. Last lines of its output:\n"
            + "\n".join(tail)
            + f"\n(The whole output is in the log.) Command: {shlex.join(argv)}"
        )
    if fallbacks:
        raise TrainingFailed(
            f"mace_run_train finished, but {'; '.join(dict.fromkeys(fallbacks))}, so the model is "
            "not what the settings asked for. See the MACE lines above in the log."
        )


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
