"""Every question the project asks the Dagster instance, and the local run launcher.

Assets, checks, sensors, preflight and the `traincraft` verbs ask here and nowhere else: which
artifact version an asset was materialized to (its data version is the artifact's sha256),
which batches are registered and labelled, which runs are under way, what the quality gates
said. Public APIs are used where Dagster has them; a method that works but is not marked
public says so where it is called. The one private import is the run launcher's, below.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

# Dagster exports DefaultRunLauncher but not the result types a launcher's worker health check
# must return (CheckRunHealthResult, WorkerStatus): no public API exists for them in 1.13.
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

from traincraft_assets.core.artifacts import Dataset, FoundationModel, LabelledFrames
from traincraft_assets.core.frames import UNKNOWN_LEVEL
from traincraft_assets.core.processes import process_alive
from traincraft_assets.defs.partitions import data_batches

DATA_VERSION_TAG = "dagster/data_version"
PAGE = 1000


def open_instance(home: Path) -> dg.DagsterInstance:
    """The instance configured by `home`/dagster.yaml, with `home` as its storage root.
    (DagsterInstance.from_config is not marked public; DagsterInstance.get() would need
    DAGSTER_HOME set in this process's environment.)"""
    return dg.DagsterInstance.from_config(str(home))


# ---- materializations: artifact versions ----------------------------------------------------


def _data_version(materialization: dg.AssetMaterialization, asset: str) -> str:
    sha = materialization.tags.get(DATA_VERSION_TAG) if materialization.tags else None
    if not sha:
        raise RuntimeError(f"a materialization of {asset} carries no data version.")
    return sha


def _records(instance: dg.DagsterInstance, asset: str, partition: str | None = None, page: int = PAGE) -> Iterator:
    """Materialization records of `asset` (`partition`), newest first, `page` at a time."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None
    )
    cursor = None
    while True:
        result = instance.fetch_materializations(records_filter, limit=page, cursor=cursor)
        yield from result.records
        if not result.has_more:
            return
        cursor = result.cursor


def latest_data_version(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> str | None:
    """The data version (artifact sha256) of `asset`'s (`partition`'s) latest materialization."""
    record = next(_records(instance, asset, partition, page=1), None)
    return _data_version(record.asset_materialization, asset) if record else None


def data_version_in_run(
    instance: dg.DagsterInstance, run_id: str, asset: str, partition: str | None = None
) -> str | None:
    """The data version `asset` (`partition`) was last materialized to in run `run_id`, if it was.
    (No public API filters materializations by run; DagsterInstance.get_records_for_run, not
    marked public, reads the run's own events, whatever the clocks of the hosts that wrote them.)"""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, ascending=False
    ).records
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization.asset_key == dg.AssetKey(asset) and materialization.partition == partition:
            return _data_version(materialization, asset)
    return None


def artifact_version(instance: dg.DagsterInstance, run_id: str, asset: str, partition: str | None = None) -> str | None:
    """What a step of run `run_id` reads of `asset`: the version materialized in this run, else
    the latest; None if never materialized. This run's own comes first so that runs launched
    side by side (a strategy sweep) each read what they made, not whichever finished last."""
    return data_version_in_run(instance, run_id, asset, partition) or latest_data_version(instance, asset, partition)


def recorded_data_versions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    """Every data version any materialization of `asset` recorded."""
    versions = set()
    for record in _records(instance, asset):
        tags = record.asset_materialization.tags or {}
        if tags.get(DATA_VERSION_TAG):
            versions.add(tags[DATA_VERSION_TAG])
    return versions


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> dict[str, Any] | None:
    """The metadata values of `asset`'s (`partition`'s) latest materialization; None if there is none."""
    record = next(_records(instance, asset, partition, page=1), None)
    if record is None:
        return None
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def recent_materializations(instance: dg.DagsterInstance, asset: str, limit: int) -> list:
    """`asset`'s last `limit` materialization records, newest first (run_id, metadata, tags)."""
    return list(instance.fetch_materializations(dg.AssetKey(asset), limit=limit).records)


def latest_with(instance: dg.DagsterInstance, asset: str, key: str, value: Any, limit: int = 100):
    """The latest of `asset`'s last `limit` materialization records whose metadata `key` is `value`."""
    for record in recent_materializations(instance, asset, limit):
        recorded = record.asset_materialization.metadata.get(key)
        if recorded is not None and recorded.value == value:
            return record
    return None


def version_of(record) -> str:
    """The data version a materialization record carries."""
    return _data_version(record.asset_materialization, record.asset_key.to_user_string())


# ---- batches: the data_batches partitions -----------------------------------------------------


def registered_batches(instance: dg.DagsterInstance) -> list[str]:
    return list(instance.get_dynamic_partitions(data_batches.name))


def register_batches(instance: dg.DagsterInstance, names: list[str]) -> None:
    instance.add_dynamic_partitions(data_batches.name, names)


def is_registered(instance: dg.DagsterInstance, name: str) -> bool:
    return instance.has_dynamic_partition(data_batches.name, name)


def unregister_batch(instance: dg.DagsterInstance, name: str, reason: str, moved_to: Path) -> None:
    """Remove a batch's partition and record why, as an observation on labelled_frames (the UI
    shows it on the asset's page)."""
    instance.delete_dynamic_partition(data_batches.name, name)
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=dg.AssetKey(LabelledFrames.asset),
            description=f"batch {name!r} retired: {reason}",
            metadata={"retired_batch": name, "reason": reason, "file": dg.MetadataValue.path(str(moved_to))},
        )
    )


def partition_keys(instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition) -> list[str]:
    return list(instance.get_dynamic_partitions(partitions.name))


def add_partitions(instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition, names: list[str]) -> None:
    """Register the partitions of `names` not registered yet (the loop's members and walks)."""
    known = set(partition_keys(instance, partitions))
    missing = [name for name in names if name not in known]
    if missing:
        instance.add_dynamic_partitions(partitions.name, missing)


def labelled_batches(instance: dg.DagsterInstance) -> list[dict]:
    """Every registered batch's latest labelling, in the form dataset records what it merged."""
    batches = []
    for batch in registered_batches(instance):
        version = latest_data_version(instance, LabelledFrames.asset, batch)
        if version is not None:
            batches.append({"batch": batch, "data_version": version})
    return batches


def labelled_batch_facts(instance: dg.DagsterInstance) -> tuple[list[str], list[str], dict[str, int]] | None:
    """(elements, labels, frames per level of theory) over the registered batches' latest
    labellings, as their metadata records them; None before any batch is labelled."""
    batches = set(registered_batches(instance))
    if not batches:
        return None
    seen, found_elements, found_labels, levels = set(), set(), set(), Counter()
    for record in _records(instance, LabelledFrames.asset):
        event = record.asset_materialization
        if event.partition in batches and event.partition not in seen:
            seen.add(event.partition)
            found_elements.update(event.metadata["elements"].value)
            found_labels.update(event.metadata["labels"].value)
            recorded = event.metadata.get("levels_of_theory")  # absent: labelled before levels were recorded
            levels.update(recorded.value if recorded else {UNKNOWN_LEVEL: event.metadata["n_frames"].value})
        if seen == batches:
            break
    return (sorted(found_elements), sorted(found_labels), dict(sorted(levels.items()))) if seen else None


def dataset_batches(instance: dg.DagsterInstance) -> list[dict] | None:
    """The batches the latest dataset was built from; None if there is no dataset yet."""
    metadata = latest_metadata(instance, Dataset.asset)
    return None if metadata is None or "batches" not in metadata else metadata["batches"]


def last_batch_change(instance: dg.DagsterInstance) -> float:
    """When a batch was last labelled or retired (a retirement is an observation), epoch s."""
    key = dg.AssetKey(LabelledFrames.asset)
    labelled = instance.get_latest_materialization_event(key)
    retired = instance.fetch_observations(key, limit=1).records
    return max([0.0] + [event.timestamp for event in [labelled, *retired] if event is not None])


def foundation_staged(instance: dg.DagsterInstance) -> bool:
    return instance.get_latest_materialization_event(dg.AssetKey(FoundationModel.asset)) is not None


# ---- runs -------------------------------------------------------------------------------------

UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def unfinished_run(instance: dg.DagsterInstance, job: str) -> str | None:
    """The id of a run of `job` that has not finished, if there is one."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=UNFINISHED), limit=1)
    return records[0].dagster_run.run_id if records else None


def a_step_succeeded(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether any step of the run has succeeded already. (DagsterInstance.get_records_for_run
    is not marked public; no public API lists a run's events.)"""
    return bool(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=1).records)


def mark_canceling(instance: dg.DagsterInstance, run_id: str, message: str) -> None:
    """Record a person's stop, so the run ends CANCELED rather than FAILURE (what a stop from the
    UI records; report_run_canceling is not marked public)."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status not in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
        instance.report_run_canceling(run, message=message)


# ---- asset checks ----------------------------------------------------------------------------

JUDGED = {"SUCCEEDED", "FAILED"}  # an execution that is only planned has no verdict


def _check_history(instance: dg.DagsterInstance, key: dg.AssetCheckKey, page: int = 50) -> Iterator:
    """A check's executions, newest first, page by page. (The event log storage's check history
    is not a public API; no public one returns past evaluations.)"""
    cursor = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=page, cursor=cursor)
        yield from records
        if len(records) < page:
            return
        cursor = records[-1].id


def check_verdicts(
    instance: dg.DagsterInstance, asset: str, checks: list[str], key: str, value: str
) -> list[dict] | None:
    """Each check's latest finished verdict whose metadata `key` is `value` (the model it
    judged), as {check, passed, reason}, in the order of `checks`; None if some check has none.
    Executions only planned (a run that failed before its checks) have no verdict."""
    verdicts = []
    for check in checks:
        for record in _check_history(instance, dg.AssetCheckKey(dg.AssetKey(asset), check)):
            if record.status.value not in JUDGED:
                continue
            evaluation = record.event.dagster_event.event_specific_data
            if evaluation.metadata.get(key, dg.MetadataValue.text("")).value == value:
                verdicts.append({"check": check, "passed": evaluation.passed, "reason": evaluation.description})
                break
        else:
            return None
    return verdicts


# ---- the local run launcher -------------------------------------------------------------------

# A run records its worker's pid within moments of starting; one that has not after this long
# never will (its process died before it could).
NO_WORKER_GRACE_S = 120.0


def run_worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when recorded) of the process executing the run, from its first engine event that
    names one ("Executing steps in process (pid: N)", or "Started process for run" when launched
    from the UI); None if none does yet."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50).records
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event and event.engine_event_data else None
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


class LocalRunLauncher(dg.DefaultRunLauncher):
    """The local instance's run launcher (./dagster.yaml): Dagster's default one, plus a worker
    health check. Dagster's run monitoring (the daemon; `dagster dev` starts one) marks a run
    failed when its launcher says the run's worker is gone. The default launcher cannot say, so
    a local run whose process was killed (SIGKILL, the OOM killer, a closed laptop) would stay
    STARTED forever; this one reports it failed once the process the run recorded is gone (a
    reused pid does not count). Runs started with `dagster asset materialize` record the same
    event. On Kubernetes, dagster-k8s's launcher does this job."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run.run_id)
        if worker is None:
            record = self._instance.get_run_record_by_id(run.run_id)
            started = record.start_time if record else None
            if started is None or time.time() - started < NO_WORKER_GRACE_S:
                return CheckRunHealthResult(WorkerStatus.RUNNING, "the run has not recorded its process yet")
            return CheckRunHealthResult(
                WorkerStatus.NOT_FOUND,
                f"the run started {NO_WORKER_GRACE_S:.0f} s ago and never recorded the process executing it",
            )
        pid, seen_at = worker
        if process_alive(pid, seen_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the process executing this run (pid {pid}) is gone: it was killed or crashed without "
            "reporting. Re-run the run; a training resumes from its last checkpoint.",
            run_worker_id=str(pid),
        )
