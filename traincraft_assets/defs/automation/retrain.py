"""Retraining without a person: the finetune job, as one run, once per settled change of the
labelled batches (a batch labelled, relabelled or retired since the latest dataset).

- retrain_sensor (on): requests the run once no batch has changed for
  TRAINCRAFT_RETRAIN_DEBOUNCE_S and no labelling is under way, so a burst of batches makes one
  run. Its run_key is the batch versions' hash: each state of the data is retrained once.
- nightly_retrain (off until switched on in the UI): the same check on a cron
  (TRAINCRAFT_NIGHTLY_RETRAIN_CRON, UTC), without the wait.

Why a sensor and not an automation condition on the job: in Dagster 1.13 a job's automation
condition is only evaluated by the daemon's own sensor, which cannot run a Python condition
(the debounce is one), and runs the automation sensor requests for assets carry no run config;
a job run takes its config from TRAINCRAFT_RUN_CONFIG (defs/jobs.py).
"""

import hashlib
import json
import time

import dagster as dg

from traincraft_assets.core.settings import NIGHTLY_RETRAIN_CRON_ENV, RETRAIN_DEBOUNCE_ENV, Settings, SettingsError
from traincraft_assets.defs import instance
from traincraft_assets.defs.jobs import FINETUNE, LABEL_BATCH

TRIGGER_TAG = "traincraft/trigger"


def retrain_request(dagster_instance: dg.DagsterInstance, now: float, debounce_s: float, trigger: str):
    """A RunRequest for the finetune job if the labelled batches changed since the latest
    dataset and have settled (unchanged for `debounce_s` at `now`); otherwise a SkipReason
    saying what it waits for."""
    current = instance.labelled_batches(dagster_instance)
    if not current:
        return dg.SkipReason("no labelled batch yet")
    if current == instance.dataset_batches(dagster_instance):
        return dg.SkipReason(f"nothing changed: the latest dataset has the {len(current)} labelled batches")
    if not instance.foundation_staged(dagster_instance):
        return dg.SkipReason("batches changed, but no foundation is staged: run the stage_foundation job first")
    if labelling := instance.unfinished_run(dagster_instance, LABEL_BATCH):
        return dg.SkipReason(f"batches changed; waiting for labelling run {labelling} to finish")
    quiet_s = now - instance.last_batch_change(dagster_instance)
    if quiet_s < debounce_s:
        return dg.SkipReason(
            f"batches changed {quiet_s:.0f} s ago; retraining once they have been unchanged for "
            f"{debounce_s:g} s ({RETRAIN_DEBOUNCE_ENV})"
        )
    if running := instance.unfinished_run(dagster_instance, FINETUNE):
        return dg.SkipReason(f"batches changed; a finetune run is under way ({running}), looking again after it")
    versions = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()
    return dg.RunRequest(
        run_key=f"batches@{versions}",
        tags={TRIGGER_TAG: trigger, "traincraft/batches": str(len(current))},
    )


def build(settings: Settings) -> list:
    """retrain_sensor and nightly_retrain with the settings' window and cron."""

    @dg.sensor(job_name=FINETUNE, default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
    def retrain_sensor(context: dg.SensorEvaluationContext):
        """Retrains once labelled batches have settled after a change."""
        return retrain_request(context.instance, time.time(), settings.retrain_debounce_s, "retrain_sensor")

    def nightly_retrain(context: dg.ScheduleEvaluationContext):
        """Retrains if the labelled batches changed since the latest dataset."""
        now = context.scheduled_execution_time.timestamp()
        request = retrain_request(context.instance, now, 0.0, "nightly_retrain")
        # no run_key: for a schedule it only dedupes within one tick; each night looks afresh
        return request if isinstance(request, dg.SkipReason) else dg.RunRequest(tags=request.tags)

    try:
        schedule = dg.schedule(
            name="nightly_retrain",
            cron_schedule=settings.nightly_retrain_cron,
            job_name=FINETUNE,
            default_status=dg.DefaultScheduleStatus.STOPPED,
        )(nightly_retrain)
    except dg.DagsterInvalidDefinitionError as exc:  # Dagster's own judgement of the cron string
        raise SettingsError(
            f"{NIGHTLY_RETRAIN_CRON_ENV} must be a cron expression such as '0 2 * * *' (02:00 UTC "
            f"every day); got {settings.nightly_retrain_cron!r}."
        ) from exc
    return [retrain_sensor, schedule]
