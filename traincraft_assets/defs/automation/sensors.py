"""inbox_sensor: a batch file dropped into the inbox becomes a `data_batches` partition and is
labelled, exactly once.

The rules (whole files only, names are immutable, copies are no-ops, links and directories
refused) are core.inbox's, the same as `traincraft ingest`'s. Exactly once holds twice over:
a batch becomes new only while its partition does not exist, and its labelling run's run_key
is the batch name with its sha256, which Dagster never launches twice for this sensor. The
cursor remembers what was judged (size, mtime, verdict), so a refused file is reported once and
a large file is not hashed again every tick; it lives in the instance and survives restarts.
"""

import json

import dagster as dg

from traincraft_assets.defs import instance
from traincraft_assets.defs.jobs import LABEL_BATCH
from traincraft_assets.defs.partitions import data_batches
from traincraft_assets.defs.resources import InboxResource


@dg.sensor(job_name=LABEL_BATCH, default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource) -> dg.SensorResult:
    """Registers new batch files in the inbox and requests their labelling."""
    seen = json.loads(context.cursor) if context.cursor else {}
    scan = inbox.inbox().scan(set(instance.registered_batches(context.instance)), seen)
    for why in scan.refused.values():
        context.log.warning(why)
    for batch in scan.new:
        context.log.info(f"new batch {batch.name!r}: {batch.n_frames} frames, sha256 {batch.sha256[:12]}…")
    cursor = json.dumps(scan.seen, sort_keys=True)
    if not scan.new:
        return dg.SensorResult(skip_reason=f"no new batch file in {inbox.path}", cursor=cursor)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{batch.name}@{batch.sha256}", partition_key=batch.name) for batch in scan.new
        ],
        dynamic_partitions_requests=[data_batches.build_add_request([batch.name for batch in scan.new])],
        cursor=cursor,
    )
