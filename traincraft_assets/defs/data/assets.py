"""Data assets: dataset and split (labelled_frames, one partition per batch: labelling.py)."""

import json
from dataclasses import dataclass

import dagster as dg

from traincraft_assets.core.artifacts import Dataset, LabelledFrames, Split
from traincraft_assets.core.dataset import FINGERPRINT_KEY, LabelConflict, MergeReport, merge_batches
from traincraft_assets.core.frames import frame_writer, iter_frames, read_frames, write_frames
from traincraft_assets.core.split import SplitSettings, split_frames
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.steps import EveryPartition, Step, artifact_asset


def summary_metadata(summary: dict) -> dict:
    """frames.summarize's numbers as Dagster metadata."""
    return {
        "n_frames": summary["n_frames"],
        "n_atoms": summary["n_atoms"],
        "elements": dg.MetadataValue.json(summary["elements"]),
        "config_types": dg.MetadataValue.json(summary["config_types"]),
        "labels": dg.MetadataValue.json(summary["labels"]),
        "levels_of_theory": dg.MetadataValue.json(summary["levels_of_theory"]),
    }


@dataclass
class LatestBatches:
    labelled: list[LabelledFrames]  # in partition order
    used: list[dict]  # [{batch, data_version}] of those
    unlabelled: list[str]  # registered batches never labelled


def latest_batches(step: Step) -> LatestBatches:
    """Each registered batch's latest labelled artifact, for a step reading every partition of
    labelled_frames; a step that finds none fails saying how to label one."""
    batches = instance.registered_batches(step.context.instance)
    found = LatestBatches([], [], [])
    for batch in batches:
        artifact = step.latest(LabelledFrames, batch)
        if artifact is None:
            found.unlabelled.append(batch)
            continue
        found.labelled.append(artifact)
        found.used.append({"batch": batch, "data_version": artifact.sha256})
    if not found.used:
        raise RuntimeError(
            f"no data batch has been labelled yet (registered: {batches or 'none'}). Ingest files "
            "with `traincraft ingest` and materialize labelled_frames for their partitions."
        )
    if found.unlabelled:
        step.log.warning(
            f"batches registered but not yet labelled, left out of {step.name}: {found.unlabelled}. "
            f"Materialize labelled_frames for them and then {step.name} again to include them."
        )
    return found


@artifact_asset(Dataset, reads=[EveryPartition(LabelledFrames)], group_name="data", kinds={"ase"})
def dataset(step: Step) -> dg.MaterializeResult:
    """Every labelled batch merged in partition order, exact duplicates removed."""
    batches = latest_batches(step)
    labelled, used, unlabelled = batches.labelled, batches.used, batches.unlabelled

    def fill(out: Dataset) -> MergeReport:
        with frame_writer(out.frames_path) as write:
            report = merge_batches((iter_frames(batch.frames_path) for batch in labelled), write)
        if report.conflicts:
            raise LabelConflict(report.conflict_message())
        out.batches_path.write_text(json.dumps(used, indent=1))
        return report

    with step.refusing(LabelConflict):  # a retry would find the same batches
        artifact, report = step.write(fill)
    return step.materialized(
        artifact,
        {
            **summary_metadata(report.tally.summary()),
            "n_duplicates_removed": report.n_duplicates,
            "batches": dg.MetadataValue.json(used),
            "batches_not_labelled": dg.MetadataValue.json(unlabelled),
        },
    )


SplitConfig = settings_config("SplitConfig", SplitSettings, "Stable train/valid(/test) fractions.")


@artifact_asset(Split, reads=[Dataset], config=SplitConfig, group_name="data", kinds={"ase"})
def split(step: Step, config) -> dg.MaterializeResult:
    """Train/valid(/test) by a hash of each frame's structure: a frame never changes side."""
    frames = read_frames(step.read(Dataset).frames_path)
    settings = config.to_settings()
    sides = split_frames(frames, settings.valid_fraction, settings.test_fraction, settings.salt)

    def fill(out: Split):
        for side, indices in sides.items():
            if indices:
                write_frames(out.side_path(side), [frames[i] for i in indices])
        out.indices_path.write_text(
            json.dumps(
                {
                    side: {
                        "dataset_index": indices,
                        "fingerprint": [frames[i].info[FINGERPRINT_KEY] for i in indices],
                    }
                    for side, indices in sides.items()
                }
            )
        )

    artifact, _ = step.write(fill)
    return step.materialized(artifact, {f"n_{side}": len(idx) for side, idx in sides.items()})
