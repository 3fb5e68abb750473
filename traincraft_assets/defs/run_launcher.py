"""The local instance's run launcher: Dagster's default one, plus a worker health check.

Dagster's run monitoring (the daemon; `dagster dev` starts one) marks a run failed when its
launcher says the run's worker is gone. The default launcher cannot say, so a local run whose
process was killed (SIGKILL, the OOM killer, a closed laptop) stays STARTED forever. Every run
records the pid of the process executing it in an engine event ("Executing steps in process
(pid: N)", or "Started process for run" when launched from the UI); this launcher reports the
run failed once that process is gone. Runs started with `dagster asset materialize` are
covered too: they record the same event. On Kubernetes, dagster-k8s's launcher does this job.
"""

import time

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

from traincraft_assets.core.processes import process_alive

# A run records its worker's pid within moments of starting; one that has not after this long
# never will (its process died before it could).
NO_WORKER_GRACE_S = 120.0


def _worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when recorded) of the process executing the run, from its first engine event
    that names one; None if none does yet."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50).records
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event and event.engine_event_data else None
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = _worker(self._instance, run.run_id)
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
