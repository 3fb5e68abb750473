"""One model from the store's artifacts: inputs gathered, trainer run, manifest written.

This is `finetuned_model` without Dagster: the asset, a strategy comparison and the benchmarks
call the same function, so every model in the store is made, and recorded, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from traincraft_assets.core.artifacts import FinetunedModel, FoundationModel, ReplaySubset, Split
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.frames import elements, get_label, labels_present, read_frames
from traincraft_assets.core.manifest import utc_now, write_manifest
from traincraft_assets.core.training.base import OnOutput, Trainer, TrainInputs, TrainResult


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
    split_sizes: dict[str, int]


def plan_training(trainer: Trainer, settings: Any, upstream: Upstream) -> TrainingPlan:
    """Gather what the trainer is told about its files and validate the settings against them,
    so impossible settings fail before any compute is spent."""
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
    )
    trainer.validate(settings, inputs)
    return TrainingPlan(trainer, settings, upstream, inputs, {side: len(f) for side, f in sides.items()})


def train_model(plan: TrainingPlan, out: FinetunedModel, on_output: OnOutput, config: dict) -> TrainResult:
    """Train into `out` (a staging artifact), export the deployable model, write manifest.json.

    `config` is recorded as given (the user's whole config, defaults filled in)."""
    trainer, settings, inputs = plan.trainer, plan.settings, plan.inputs
    started = utc_now()
    result = trainer.train(settings, inputs, out.path, on_output, FinetunedModel.RUN_NAME)
    deploy = trainer.export(result.model_path, out.deploy_target)
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
            "deploy_model": deploy.name,
            "data_versions": plan.upstream.data_versions,
            "split_sizes": plan.split_sizes,
            "config": config,
            "start_time": started,
            "end_time": utc_now(),
            "device": resolve_device(settings.device),
            "epochs_run": result.epochs_run,
        },
    )
    return result
