"""How an asset finds the artifact its upstream materialized, and publishes its own.

Assets pass artifacts, not Python objects: each materialization records the artifact's sha256
as its DataVersion, and a downstream asset opens the artifact its upstream last materialized
(this run's first), typed by the catalogue in core/artifacts.py.
"""

from __future__ import annotations

from typing import TypeVar

import dagster as dg

from traincraft_assets.core.store import Artifact, ArtifactStore

A = TypeVar("A", bound=Artifact)
DATA_VERSION_TAG = "dagster/data_version"


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
    kind: type[A],
    partition: str | None = None,
) -> A | None:
    """The artifact `kind` (`partition`) was materialized to in this run, else its latest one;
    None if never materialized.

    This run's own upstream comes first so that concurrent runs (a strategy sweep launched at
    once) each read the artifacts they made, not whichever run finished last.
    """
    materialization = _materialized_in_this_run(context, kind.asset, partition)
    if materialization is not None:
        sha = _data_version(materialization, kind.asset)
    else:
        sha = latest_data_version(context.instance, kind.asset, partition)
        if sha is None:
            return None
    return store.open(kind, sha)


def latest_data_version(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> str | None:
    """The data version (artifact sha256) of `asset`'s (`partition`'s) latest materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    return _data_version(records[0].asset_materialization, asset) if records else None


def recorded_data_versions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    """Every data version (artifact sha256) any materialization of `asset` recorded."""
    versions, cursor = set(), None
    while True:
        result = instance.fetch_materializations(dg.AssetKey(asset), limit=1000, cursor=cursor)
        for record in result.records:
            tags = record.asset_materialization.tags or {}
            if tags.get(DATA_VERSION_TAG):
                versions.add(tags[DATA_VERSION_TAG])
        if not result.has_more:
            return versions
        cursor = result.cursor


def latest_with(instance: dg.DagsterInstance, asset: str, key: str, value: str, limit: int = 100):
    """The latest of `asset`'s last `limit` materialization records whose metadata `key` is `value`."""
    for record in instance.fetch_materializations(dg.AssetKey(asset), limit=limit).records:
        recorded = record.asset_materialization.metadata.get(key)
        if recorded is not None and recorded.value == value:
            return record
    return None


def _data_version(materialization: dg.AssetMaterialization, asset: str) -> str:
    sha = materialization.tags.get(DATA_VERSION_TAG) if materialization.tags else None
    if not sha:
        raise RuntimeError(f"the latest materialization of {asset} carries no data version.")
    return sha


def require_artifact(context, store: ArtifactStore, kind: type[A], partition: str | None = None) -> A:
    artifact = latest_artifact(context, store, kind, partition)
    if artifact is None:
        where = f" for partition {partition!r}" if partition else ""
        raise RuntimeError(
            f"this step needs {kind.asset!r}{where}, which has never been materialized. Materialize "
            f"it first (e.g. dagster asset materialize -m traincraft_assets --select {kind.asset})."
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
