"""Data assets: labelled_frames (one partition per batch file), dataset, split."""

import json
from typing import Literal

import dagster as dg

from traincraft_assets.core.artifacts import Dataset, LabelledFrames, Split
from traincraft_assets.core.dataset import FINGERPRINT_KEY, LabelConflict, MergeReport, merge_batches
from traincraft_assets.core.frames import FrameError, frame_writer, iter_frames, read_frames, write_frames
from traincraft_assets.core.health import BatchError
from traincraft_assets.core.labelling import DEFAULT_LABELLER, LABELLERS, LabelOptions, label_batch, labeller_problems
from traincraft_assets.core.split import SplitSettings, split_frames
from traincraft_assets.core.store import file_sha256
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.k8s import CPU_STEP
from traincraft_assets.defs.lineage import latest_artifact, materialized, require_artifact
from traincraft_assets.defs.partitions import data_batches
from traincraft_assets.defs.preflight import preflight, register_preflight
from traincraft_assets.defs.resources import InboxResource, StoreResource


def summary_metadata(summary: dict) -> dict:
    """frames.summarize's numbers as Dagster metadata."""
    return {
        "n_frames": summary["n_frames"],
        "n_atoms": summary["n_atoms"],
        "elements": dg.MetadataValue.json(summary["elements"]),
        "config_types": dg.MetadataValue.json(summary["config_types"]),
        "labels": dg.MetadataValue.json(summary["labels"]),
    }


LabelledFramesConfig = settings_config(
    "LabelledFramesConfig",
    LabelOptions,
    "How a batch is labelled (README: Bring your own labeller).",
    exclude=("env",),
    extra={"labeller": (Literal[tuple(LABELLERS)], DEFAULT_LABELLER)},
)

register_preflight(
    "labelled_frames",
    LabelledFramesConfig,
    lambda config, run: labeller_problems(config.labeller, config.to_settings(), run.roots),
)


@dg.asset(partitions_def=data_batches, code_version="1", group_name="data", kinds={"ase"}, **CPU_STEP)
def labelled_frames(
    context: dg.AssetExecutionContext,
    config: LabelledFramesConfig,
    store: StoreResource,
    inbox: InboxResource,
) -> dg.MaterializeResult:
    """One data batch, read from the inbox and labelled, with every label under a REF_* key."""
    preflight(context, store)
    batch = context.partition_key
    source = inbox.inbox().batch_file(batch)
    try:  # bad input: a retry would fail the same way, and the store keeps nothing of it
        artifact, summary = store.store().write(
            LabelledFrames,
            lambda out: label_batch(source, batch, config.labeller, config.to_settings(), out.frames_path),
        )
    except (FrameError, BatchError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(f"labelled {summary['n_frames']} frames of batch {batch!r} with {config.labeller!r}")
    return materialized(
        artifact,
        {
            **summary_metadata(summary),
            "labeller": config.labeller,
            "source_file": dg.MetadataValue.path(str(source)),
            "source_sha256": file_sha256(source),
        },
    )


@dg.asset(
    deps=[dg.AssetDep(labelled_frames, partition_mapping=dg.AllPartitionMapping())],
    code_version="1",
    group_name="data",
    kinds={"ase"},
    **CPU_STEP,
)
def dataset(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """Every labelled batch merged in partition order, exact duplicates removed."""
    preflight(context, store)
    artifacts = store.store()
    batches = context.instance.get_dynamic_partitions(data_batches.name)
    labelled, used, unlabelled = [], [], []
    for batch in batches:
        artifact = latest_artifact(context, artifacts, LabelledFrames, batch)
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
        context.log.warning(
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

    try:
        artifact, report = artifacts.write(Dataset, fill)
    except LabelConflict as exc:  # a retry would find the same batches
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    return materialized(
        artifact,
        {
            **summary_metadata(report.tally.summary()),
            "n_duplicates_removed": report.n_duplicates,
            "batches": dg.MetadataValue.json(used),
            "batches_not_labelled": dg.MetadataValue.json(unlabelled),
        },
    )


SplitConfig = settings_config("SplitConfig", SplitSettings, "Stable train/valid(/test) fractions.")
register_preflight("split", SplitConfig)


@dg.asset(deps=[dataset], code_version="1", group_name="data", kinds={"ase"}, **CPU_STEP)
def split(context: dg.AssetExecutionContext, config: SplitConfig, store: StoreResource) -> dg.MaterializeResult:
    """Train/valid(/test) by a hash of each frame's structure: a frame never changes side."""
    preflight(context, store)
    artifacts = store.store()
    frames = read_frames(require_artifact(context, artifacts, Dataset).frames_path)
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

    artifact, _ = artifacts.write(Split, fill)
    return materialized(artifact, {f"n_{side}": len(idx) for side, idx in sides.items()})
