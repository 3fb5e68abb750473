"""labelled_frames (one partition per batch file): the batch labelled as `chunk_steps` steps.

Why a graph of steps and not one step with worker processes: a batch of DFT frames at minutes a
frame outgrows one pod. Here `plan_chunks` splits the batch into contiguous ranges, one
`label_chunk` step labels each (on Kubernetes a pod each, from the `label` pod profile: retried
alone when its pod is lost, and sharing the `label` concurrency pool across runs), and
`merge_chunks` writes them in order into the artifact `label_batch` would have written, with
the same sha256. `chunk_steps: 1` (the default) is one `label_chunk` step with `workers`
processes, as before. The graph is the same for every `chunk_steps`, because a run's config
cannot change the steps a definition has; the chunks wait in the store's scratch folder of the
run (shared by its re-executions, which share its root run id).
"""

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import dagster as dg

from traincraft_assets.core import labelling
from traincraft_assets.core.artifacts import LabelledFrames
from traincraft_assets.core.frames import FrameError
from traincraft_assets.core.health import BatchError
from traincraft_assets.core.labelling import (
    DEFAULT_LABELLER,
    LABELLERS,
    ChunkPlan,
    LabelOptions,
    labeller_problems,
)
from traincraft_assets.core.paths import allowed_roots
from traincraft_assets.core.store import file_sha256
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.data.assets import summary_metadata
from traincraft_assets.defs.partitions import data_batches
from traincraft_assets.defs.steps import Step, fanned_out_asset

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


def _scratch(step: Step) -> Path:
    """Where this run's chunks wait for the merge: the same for the run's re-executions."""
    run = step.context.run
    return step.store.scratch(f"{LabelledFrames.asset}-{run.root_run_id or run.run_id}")


@contextlib.contextmanager
def _refusing(step: Step) -> Iterator[None]:
    """Bad input refuses the batch without a retry (it would fail the same way), and drops the
    run's chunks: a re-execution would be refused too, and nothing of the batch stays stored."""
    try:
        with step.refusing(FrameError, BatchError):
            yield
    except dg.Failure:
        shutil.rmtree(_scratch(step), ignore_errors=True)
        raise


def plan_chunks(step: Step, config) -> int:
    """Read the batch file from the inbox, settle its labeller and split it into `chunk_steps`
    contiguous ranges of frames: one label_chunk step each."""
    batch = step.partition
    inbox = step.context.resources.inbox.inbox()
    source = inbox.batch_file(batch)
    options = config.to_settings()
    labeller = inbox.declared_labeller(batch) or config.labeller  # a batch's own declaration wins
    if problems := labeller_problems(labeller, options, allowed_roots(step.store.root, step.settings)):
        raise dg.Failure(f"batch {batch!r} declares labeller {labeller!r}: {' '.join(problems)}", allow_retries=False)
    with _refusing(step):
        plan = labelling.plan_chunks(source, batch, labeller, options, file_sha256(source), _scratch(step))
    step.log.info(f"batch {batch!r}: {len(plan.bounds)} chunk step(s) labelled with {labeller!r}")
    return len(plan.bounds)


def label_chunk(step: Step, config, index: int) -> None:
    """Label one range of the batch's frames into the run's scratch folder. Labelling it
    again (a retry) writes the same file."""
    with _refusing(step):
        summary = labelling.label_chunk(_scratch(step), index, config.to_settings())
    step.log.info(f"chunk {index}: labelled {summary['n_frames']} frames")


def merge_chunks(step: Step, config) -> dg.MaterializeResult:
    """Write the chunks, in order, into the batch's artifact: the file one process would have
    written, so its sha256 does not depend on chunk_steps. Then the run's chunks are removed."""
    scratch = _scratch(step)
    plan = ChunkPlan.read(scratch)
    with _refusing(step):
        artifact, summary = step.write(lambda out: labelling.merge_chunks(scratch, out.frames_path))
    shutil.rmtree(scratch, ignore_errors=True)
    step.log.info(f"labelled {summary['n_frames']} frames of batch {plan.batch!r} with {plan.labeller!r}")
    inbox = step.context.resources.inbox.inbox()
    return step.materialized(
        artifact,
        {
            **summary_metadata(summary),
            "labeller": plan.labeller,
            # one string for a batch at one level; a prelabelled file mixing levels lists them all
            "level_of_theory": "; ".join(summary["levels_of_theory"]),
            "origin": dg.MetadataValue.json(
                (inbox.registered(plan.batch) or {}).get("origin", "a file put in the inbox")
            ),
            "source_file": dg.MetadataValue.path(plan.source),
            "source_sha256": plan.source_sha256,
        },
    )


labelled_frames = fanned_out_asset(
    LabelledFrames,
    plan=plan_chunks,
    part=label_chunk,
    merge=merge_chunks,
    config=LabelledFramesConfig,
    preflight=lambda config, run: labeller_problems(config.labeller, config.to_settings(), run.roots),
    part_profile="label",
    resources=["inbox"],
    description="One data batch, read from the inbox and labelled, with every label under a REF_* key. A batch "
    "ingested with a labeller (the loop's batches, `traincraft ingest --labeller`) is labelled with it; others with "
    "the configured one. Steps: plan_chunks, one label_chunk per chunk_steps, merge_chunks.",
    partitions_def=data_batches,
    group_name="data",
    kinds={"ase"},
)
