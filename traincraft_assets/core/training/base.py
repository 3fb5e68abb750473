"""The trainer interface: what the rest of the project needs from a training backend.

A backend validates its settings against the inputs before anything starts, renders one
command, runs it (streaming each output line to a callback), reads the learning curve and the
trained model back, and exports a deployable model. It also says where a killed run can be
resumed from. `Trainer.train` composes those steps in a work directory that survives the
process (core/training/workdir.py); a backend implements them. The backend's settings type is a
dataclass: the Dagster config of `finetuned_model` is derived from its fields, so a setting is
declared once. How the training is started on this machine (`Launch`) is given, never read
from the environment here.
"""

from __future__ import annotations

import json
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from traincraft_assets.core.settings import Settings

OnOutput = Callable[[str], None]
DONE_FILE = ".done"  # in a work directory: the training finished; its argv and resume point


class TrainConfigError(ValueError):
    """Settings that cannot train; raised before training starts, listing every problem."""


class TrainingFailed(RuntimeError):
    """The training process failed, or finished without producing what was asked for."""


class TrainingDiverged(TrainingFailed):
    """The loss became NaN or infinite: the same training started again would diverge again."""


@dataclass
class TrainInputs:
    """Files and facts about them, gathered by the caller before rendering."""

    train_file: Path
    valid_file: Path
    test_file: Path | None = None
    replay_file: Path | None = None
    foundation_model: Path | None = None
    foundation: dict | None = None  # core.models.describe_model(...) plus origin and sha256
    data_labels: Sequence[str] = ("energy", "forces")
    data_elements: Sequence[str] = ()  # of every file the trainer reads, not only train
    n_frames_without_energy: int = 0  # in the training file
    data_levels: dict[str, int] = field(default_factory=dict)  # level of theory -> training frames; {}: unknown
    # Per level of theory, its frames' files by side (train/valid/test), written by `prepare`
    # for a training that picks one level or gives each level its own head.
    level_files: dict[str, dict[str, Path]] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    """How a training is started where it runs: one process per GPU, and optionally a command
    that replaces the trainer's own program (a container, a wrapper). The caller decides, from
    the step's environment (core.settings); the backend only renders it."""

    processes: int = 1
    command: tuple[str, ...] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Launch:
        return cls(settings.training_processes, settings.train_command)


@dataclass(frozen=True)
class Uses:
    """Which upstream artifacts a run with given settings reads."""

    foundation: bool
    replay: bool


@dataclass
class TrainResult:
    model_path: Path  # as the trainer wrote it (a multihead model keeps its replay head)
    argv: list[str]  # the exact command run
    curve: list[dict]  # per epoch and head: validation loss and RMSEs (eV units); epoch -1: before training
    best: dict  # the curve row of the model that was kept ({} when there is none)
    resumed_from_epoch: int | None = None  # the checkpoint a killed run was resumed from
    effective: dict = field(default_factory=dict)  # what the trainer actually used, from its own log

    @property
    def epochs_run(self) -> int:
        return max((row["epoch"] + 1 for row in self.curve), default=0)


class Trainer(ABC):
    name: ClassVar[str]
    settings_type: ClassVar[type]  # a dataclass; its defaults are the project's defaults

    @abstractmethod
    def uses(self, settings: Any) -> Uses:
        """The upstream artifacts these settings need."""

    @abstractmethod
    def validate(self, settings: Any, inputs: TrainInputs, launch: Launch) -> None:
        """Raise TrainConfigError naming every problem, before any compute is spent."""

    def prepare(self, settings: Any, inputs: TrainInputs, scratch: Path) -> TrainInputs:
        """Inputs rewritten for the backend's quirks, in a scratch directory (default: as given)."""
        return inputs

    @abstractmethod
    def render(
        self, settings: Any, inputs: TrainInputs, launch: Launch, workdir: Path, run_name: str, resume: bool
    ) -> list[str]:
        """The whole command line (validated first), started as `launch` says; with `resume`,
        one that continues from the latest checkpoint in `workdir`."""

    @abstractmethod
    def resume_epoch(self, workdir: Path, run_name: str) -> int | None:
        """The epoch of the latest checkpoint a rerun would continue from; None: start afresh."""

    @abstractmethod
    def run(self, argv: Sequence[str], workdir: Path, on_output: OnOutput) -> None:
        """Run the command in `workdir`, each output line to `on_output`; raise TrainingFailed."""

    @abstractmethod
    def effective_settings(self, workdir: Path) -> dict:
        """The settings the trainer actually used (loss, lr, EMA, what each head fitted), read
        back from its own log: a trainer may override what it was asked for."""

    @abstractmethod
    def learning_curve(self, workdir: Path) -> list[dict]:
        """Per-epoch validation metrics the run wrote."""

    @abstractmethod
    def best(self, curve: Sequence[dict]) -> dict:
        """The curve row of the epoch whose model the trainer kept."""

    @abstractmethod
    def trained_model(self, workdir: Path, run_name: str) -> Path:
        """The model file the run produced; raise TrainingFailed when it is missing."""

    @abstractmethod
    def outputs(self, workdir: Path, run_name: str) -> list[Path]:
        """What of `workdir` belongs in the published artifact (not checkpoints or downloads)."""

    @abstractmethod
    def export(self, model_path: Path, deploy_path: Path) -> Path:
        """The model to deploy: written to `deploy_path`, or `model_path` when it already is one."""

    @abstractmethod
    def describe(self, settings: Any, inputs: TrainInputs, argv: Sequence[str]) -> dict:
        """The manifest's record of the strategy, heads and E0s as they were run."""

    def train(
        self,
        settings: Any,
        inputs: TrainInputs,
        launch: Launch,
        workdir: Path,
        on_output: OnOutput,
        run_name: str,
    ) -> TrainResult:
        """Prepare, render, run, then read back the curve and the model.

        `workdir` may hold an earlier attempt of the same training: a finished one (its DONE
        marker) is not run again, a killed one resumes from its latest checkpoint. The caller
        holds the directory's lock (core/training/workdir.py)."""
        workdir = Path(workdir)
        done = workdir / DONE_FILE
        if done.is_file():
            record = json.loads(done.read_text())
            on_output(f"this training finished earlier in {workdir}; using its results")
        else:
            resume_from = self.resume_epoch(workdir, run_name)
            if resume_from is not None:
                on_output(f"resuming the training in {workdir} from its checkpoint of epoch {resume_from}")
            with tempfile.TemporaryDirectory(prefix="traincraft-inputs-") as scratch:
                prepared = self.prepare(settings, inputs, Path(scratch))
                argv = self.render(settings, prepared, launch, workdir, run_name, resume=resume_from is not None)
                self.run(argv, workdir, on_output)
            record = {"argv": argv, "resumed_from_epoch": resume_from}
            done.write_text(json.dumps(record))
        curve = self.learning_curve(workdir)
        model = self.trained_model(workdir, run_name)
        return TrainResult(
            model,
            record["argv"],
            curve,
            self.best(curve),
            record["resumed_from_epoch"],
            self.effective_settings(workdir),
        )
