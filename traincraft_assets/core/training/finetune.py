"""One model from the store's artifacts: inputs gathered, trainer run, manifest written.

This is `finetuned_model` without Dagster: the asset, a strategy comparison and the benchmarks
call the same function, so every model in the store is made, and recorded, the same way.
The training runs in a work directory named by its inputs and settings (core/training/
workdir.py), so the same training started again after a crash resumes instead of restarting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.data

from traincraft_assets.core.artifacts import FinetunedModel, FoundationModel, ReplaySubset, Split
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.frames import (
    REF_KEYS,
    count_frames,
    elements,
    get_label,
    labels_present,
    level_of,
    read_frames,
)
from traincraft_assets.core.manifest import utc_now, write_manifest
from traincraft_assets.core.replay import replay_shortfall
from traincraft_assets.core.training.base import Launch, OnOutput, TrainConfigError, Trainer, TrainInputs, TrainResult
from traincraft_assets.core.training.workdir import WorkdirLock


@dataclass
class Upstream:
    """The artifacts one training reads; foundation and replay only when the settings use them."""

    split: Split
    foundation: FoundationModel | None = None
    replay: ReplaySubset | None = None

    @property
    def data_versions(self) -> dict[str, str | None]:
        return {
            Split.asset: self.split.sha256,
            ReplaySubset.asset: self.replay.sha256 if self.replay else None,
            FoundationModel.asset: self.foundation.sha256 if self.foundation else None,
        }


@dataclass
class TrainingPlan:
    """A training checked against its inputs, ready to run."""

    trainer: Trainer
    settings: Any
    upstream: Upstream
    inputs: TrainInputs
    launch: Launch
    split_sizes: dict[str, int]
    workdir: Path  # survives the process: a rerun of the same training resumes here

    @property
    def replay_shortfall(self) -> str | None:
        """Advice when the replay set is smaller than the training side (core.replay); the
        replay file is counted only here, so plans that never ask (the comparison's) do not."""
        if self.inputs.replay_file is None:
            return None
        return replay_shortfall(count_frames(self.inputs.replay_file), self.split_sizes["train"])

    def release(self) -> None:
        """Remove the work directory, once the model is published."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def training_key(trainer: Trainer, settings: Any, upstream: Upstream, processes: int) -> str:
    """Names a training by what determines its result: trainer, settings, input versions and
    the number of processes (the global batch size depends on it). The device and the command
    that starts the trainer are left out, so a training resumes on whichever GPU its retry
    lands on."""
    record = {k: v for k, v in dataclasses.asdict(settings).items() if k != "device"}
    text = json.dumps(
        {
            "trainer": trainer.name,
            "settings": record,
            "inputs": upstream.data_versions,
            "processes": processes,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def plan_training(trainer: Trainer, settings: Any, upstream: Upstream, work_root: Path, launch: Launch) -> TrainingPlan:
    """Gather what the trainer is told about its files and validate the settings against them
    and the way it is launched, so impossible settings fail before any compute is spent."""
    sides = {side: read_frames(path) for side, path in upstream.split.present_sides().items()}
    train = sides["train"]
    foundation = upstream.foundation
    inputs = TrainInputs(
        train_file=upstream.split.train_path,
        valid_file=upstream.split.valid_path,
        test_file=upstream.split.test_path if "test" in sides else None,
        replay_file=upstream.replay.selected_path if upstream.replay else None,
        foundation_model=foundation.model_path if foundation else None,
        foundation=foundation.info if foundation else None,
        data_labels=labels_present(train),
        # MACE's element table covers every file it reads, not only the training file.
        data_elements=elements([a for frames in sides.values() for a in frames]),
        n_frames_without_energy=sum(get_label(a, "energy") is None for a in train),
        data_levels=dict(sorted(Counter(level_of(a) for a in train).items())),
    )
    trainer.validate(settings, inputs, launch)
    sizes = {side: len(f) for side, f in sides.items()}
    workdir = Path(work_root) / training_key(trainer, settings, upstream, launch.processes)
    return TrainingPlan(trainer, settings, upstream, inputs, launch, sizes, workdir)


@dataclass(frozen=True)
class DataFacts:
    """What the labelled batches' records say about the data, before a run reads any file."""

    elements: tuple[str, ...]
    labels: tuple[str, ...]
    levels: dict[str, int] = dataclasses.field(default_factory=dict)  # level of theory -> frames


def preflight_training(
    trainer: Trainer, settings: Any, data: DataFacts | None, foundation: dict | None, launch: Launch
) -> str | None:
    """The trainer's own validation (`plan_training`), run before the run's first step on what
    is known then; None when nothing is wrong. The files the run makes (split, replay subset)
    are placeholders; unknown data or a foundation this run makes (from scratch, say) stand in
    as matching, so only what is certain already is reported."""
    uses = trainer.uses(settings)
    if uses.foundation and foundation is None:
        foundation = {
            "elements": list(data.elements) if data else [],
            "model_class": "MACE",
            "origin": "made in this run",
        }
        foundation["e0s"] = {str(ase.data.atomic_numbers[e]): 0.0 for e in foundation["elements"]}
    placeholder = Path("made-by-this-run.xyz")
    inputs = TrainInputs(
        train_file=placeholder,
        valid_file=placeholder,
        replay_file=placeholder if uses.replay else None,
        foundation_model=Path(foundation.get("origin", "foundation.model")) if foundation and uses.foundation else None,
        foundation=foundation if uses.foundation else None,
        data_labels=data.labels if data else tuple(REF_KEYS),
        data_elements=data.elements if data else (),
        data_levels=dict(data.levels) if data else {},
    )
    try:
        trainer.validate(settings, inputs, launch)
    except TrainConfigError as exc:
        return str(exc)
    return None


def train_model(plan: TrainingPlan, out: FinetunedModel, on_output: OnOutput, config: dict) -> TrainResult:
    """Train in the plan's work directory, copy the result into `out` (a staging artifact),
    export the deployable model, write manifest.json.

    `config` is recorded as given (the user's whole config, defaults filled in)."""
    trainer, settings, inputs = plan.trainer, plan.settings, plan.inputs
    started = utc_now()
    with WorkdirLock(plan.workdir):
        result = trainer.train(settings, inputs, plan.launch, plan.workdir, on_output, FinetunedModel.RUN_NAME)
        for entry in trainer.outputs(plan.workdir, FinetunedModel.RUN_NAME):
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, out.path / entry.name)
    deploy = trainer.export(out.model_path, out.deploy_target)
    foundation = inputs.foundation
    write_manifest(
        out.manifest_path,
        {
            "trainer": trainer.name,
            "foundation": (
                {"name_or_path": foundation["origin"], "sha256": foundation["sha256"]} if foundation else None
            ),
            **trainer.describe(settings, inputs, result.argv),
            "argv": result.argv,
            "effective": result.effective,
            "deploy_model": deploy.name,
            "data_versions": plan.upstream.data_versions,
            "split_sizes": plan.split_sizes,
            "config": config,
            "start_time": started,
            "end_time": utc_now(),
            "device": resolve_device(settings.device),
            "epochs_run": result.epochs_run,
            "resumed_from_epoch": result.resumed_from_epoch,
        },
    )
    return result
