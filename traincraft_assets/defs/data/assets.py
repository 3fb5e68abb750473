"""Data assets: labelled_frames (one partition per batch file), dataset, split."""

import json
from typing import Literal

import dagster as dg

from traincraft_assets.core.artifacts import Dataset, LabelledFrames, Split
from traincraft_assets.core.dataset import FINGERPRINT_KEY, LabelConflict, MergeReport, merge_batches
from traincraft_assets.core.frames import FrameError, frame_writer, iter_frames, read_frames, write_frames
from traincraft_assets.core.health import BatchError
from traincraft_assets.core.labelling import DEFAULT_LABELLER, LABELLERS, LabelOptions, label_batch, labeller_problems
from traincraft_assets.core.paths import allowed_roots
from traincraft_assets.core.split import SplitSettings, split_frames
from traincraft_assets.core.store import file_sha256
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.partitions import data_batches
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


LabelledFramesConfig = settings_config(
    "LabelledFramesConfig",
    LabelOptions,
    "How a batch is labelled (docs: Bring your own data, labellers).",
    exclude=("env",),
    extra={
        "labeller": (
            Literal[tuple(LABELLERS)],
            DEFAULT_LABELLER,
            "prelabelled: the file's own labels; emt, emt_morse, xtb, pyscf: computed here; command: your program",
        )
    },
)


@artifact_asset(
    LabelledFrames,
    config=LabelledFramesConfig,
    preflight=lambda config, run: labeller_problems(config.labeller, config.to_settings(), run.roots),
    resources=["inbox"],
    partitions_def=data_batches,
    group_name="data",
    kinds={"ase"},
)
def labelled_frames(step: Step, config) -> dg.MaterializeResult:
    """One data batch, read from the inbox and labelled, with every label under a REF_* key.
    A batch ingested with a labeller (the loop's batches, `traincraft ingest --labeller`) is
    labelled with it; others with the configured one."""
    batch = step.partition
    inbox = step.context.resources.inbox.inbox()
    source = inbox.batch_file(batch)
    options = config.to_settings()
    labeller = inbox.declared_labeller(batch) or config.labeller  # a batch's own declaration wins
    if problems := labeller_problems(labeller, options, allowed_roots(step.store.root, step.settings)):
        raise dg.Failure(f"batch {batch!r} declares labeller {labeller!r}: {' '.join(problems)}", allow_retries=False)
    with step.refusing(FrameError, BatchError):  # bad input: a retry would fail the same way
        artifact, summary = step.write(lambda out: label_batch(source, batch, labeller, options, out.frames_path))
    step.log.info(f"labelled {summary['n_frames']} frames of batch {batch!r} with {labeller!r}")
    return step.materialized(
        artifact,
        {
            **summary_metadata(summary),
            "labeller": labeller,
            # one string for a batch at one level; a prelabelled file mixing levels lists them all
            "level_of_theory": "; ".join(summary["levels_of_theory"]),
            "origin": dg.MetadataValue.json((inbox.registered(batch) or {}).get("origin", "a file put in the inbox")),
            "source_file": dg.MetadataValue.path(str(source)),
            "source_sha256": file_sha256(source),
        },
    )


@artifact_asset(Dataset, reads=[EveryPartition(LabelledFrames)], group_name="data", kinds={"ase"})
def dataset(step: Step) -> dg.MaterializeResult:
    """Every labelled batch merged in partition order, exact duplicates removed."""
    batches = instance.registered_batches(step.context.instance)
    labelled, used, unlabelled = [], [], []
    for batch in batches:
        artifact = step.latest(LabelledFrames, batch)
        if artifact is None:
            unlabelled.append(batch)
            continue
        labelled.append(artifact)
        used.append({"batch": batch, "data_version": artifact.sha256})
    if not used:
        raise RuntimeError(
            f"no data batch has been labelled yet (registered: {batches or 'none'}). Ingest files "
            "with `traincraft ingest` and materialize labelled_frames for their partitions."
        )
    if unlabelled:
        step.log.warning(
            f"batches registered but not yet labelled, left out of this dataset: {unlabelled}. "
            "Materialize labelled_frames for them and then dataset again to include them."
        )

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
