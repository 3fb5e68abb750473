"""Taking batch files in and out: `traincraft ingest` and `traincraft retire`.

The rules are core.inbox's (the inbox sensor follows the same); here each batch also becomes,
or stops being, a `data_batches` partition of the instance.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from traincraft_assets.core.frames import FrameError
from traincraft_assets.core.inbox import Batch, Inbox
from traincraft_assets.defs import instance


def ingest(dagster_instance: dg.DagsterInstance, inbox: Path, paths: list[Path]) -> list[Batch]:
    """Take batch files into the inbox and register one partition each."""
    batches = Inbox(inbox).ingest(paths)
    instance.register_batches(dagster_instance, [batch.name for batch in batches])
    return batches


def retire(dagster_instance: dg.DagsterInstance, inbox: Path, name: str, reason: str) -> Path:
    """Take a batch out of future datasets: core.inbox moves its file aside and records why;
    its partition is removed, so the dataset and everything downstream are rebuilt without it.
    Artifacts already made from it stay in the store, with their lineage. Returns where the
    file now is."""
    if not instance.is_registered(dagster_instance, name):
        known = instance.registered_batches(dagster_instance)
        raise FrameError(f"no data batch named {name!r} is registered; registered batches: {known or 'none'}.")
    moved = Inbox(inbox).retire(name, reason)
    instance.unregister_batch(dagster_instance, name, reason, moved)
    return moved
