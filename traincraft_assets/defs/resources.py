"""Resources and the helpers every asset uses to read its inputs and publish its artifact.

Assets pass artifacts, not Python objects: each materialization records the artifact's sha256
as its DataVersion, and a downstream asset opens the artifact its upstream last materialized.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from traincraft_assets.core.store import DEFAULT_ROOT, Artifact, ArtifactStore

DEFAULT_INBOX = ".traincraft/inbox"
DATA_VERSION_TAG = "dagster/data_version"


class StoreResource(dg.ConfigurableResource):
    """The artifact store: a directory (a ReadWriteMany volume on Kubernetes)."""

    root: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


class InboxResource(dg.ConfigurableResource):
    """Directory holding one file per data batch; the file name is the partition key."""

    path: str

    def batch_file(self, batch: str) -> Path:
        path = Path(self.path).absolute() / batch
        if not path.is_file():
            raise FileNotFoundError(
                f"data batch {batch!r} is registered but {path} does not exist. "
                f"Ingest it again with `traincraft ingest <file>` (inbox: {Path(self.path).absolute()})."
            )
        return path


def default_resources() -> dict:
    return {
        "store": StoreResource(root=os.environ.get("TRAINCRAFT_STORE", DEFAULT_ROOT)),
        "inbox": InboxResource(path=os.environ.get("TRAINCRAFT_INBOX", DEFAULT_INBOX)),
    }


def _materialized_in_this_run(context, asset: str, partition: str | None):
    events = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, ascending=False
    ).records
    for record in events:
        materialization = record.event_log_entry.asset_materialization
        if materialization.asset_key == dg.AssetKey(asset) and materialization.partition == partition:
            return materialization
    return None


def latest_artifact(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    store: ArtifactStore,
    asset: str,
    partition: str | None = None,
) -> Artifact | None:
    """The artifact `asset` (`partition`) was materialized to in this run, else its latest one;
    None if never materialized.

    This run's own upstream comes first so that concurrent runs (a strategy sweep launched at
    once) each read the artifacts they made, not whichever run finished last.
    """
    materialization = _materialized_in_this_run(context, asset, partition)
    if materialization is None:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None
            ),
            limit=1,
        ).records
        if not records:
            return None
        materialization = records[0].asset_materialization
    sha = materialization.tags.get(DATA_VERSION_TAG) if materialization else None
    if not sha:
        raise RuntimeError(f"the latest materialization of {asset} carries no data version.")
    return store.open(asset, sha)


def require_artifact(context, store: ArtifactStore, asset: str, partition: str | None = None) -> Artifact:
    artifact = latest_artifact(context, store, asset, partition)
    if artifact is None:
        where = f" for partition {partition!r}" if partition else ""
        raise RuntimeError(
            f"this step needs {asset!r}{where}, which has never been materialized. Materialize it first "
            f"(e.g. dagster asset materialize -m traincraft_assets --select {asset})."
        )
    return artifact


def materialized(artifact: Artifact, metadata: dict) -> dg.MaterializeResult:
    """MaterializeResult with the artifact's sha256 as DataVersion and its path in metadata."""
    return dg.MaterializeResult(
        data_version=dg.DataVersion(artifact.sha256),
        metadata={
            **metadata,
            "artifact_path": dg.MetadataValue.path(str(artifact.path)),
            "artifact_sha256": artifact.sha256,
        },
    )

