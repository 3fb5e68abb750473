"""loop_sensor: the active-learning loop on a deployment, one iteration per champion.

Off by default: TRAINCRAFT_LOOP=on starts it running (the demo's loop setup does), or switch it
on in the UI. Each tick it
looks at where the current champion's iteration stands and asks for the next runs:
1. committee members not trained since this champion began serving: one run per member (K
   pods side by side on a cluster);
2. once every member is trained, the walks not explored with this committee: one run each;
3. once every walk is explored, select_frames, which judges them and puts the picks in the
   inbox. From there the inbox sensor, retrain sensor and champion rule carry on; a new
   champion starts the next iteration.
It stops when selected_frames says so (conv_accuracy reached, max_iterations spent, nothing new)
and waits while any loop, labelling or fine-tuning run is under way. Every request has a
run_key naming the champion or committee it is for, so a restarted sensor never asks twice.
"""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.artifacts import (
    Candidates,
    ChampionModel,
    CommitteeMember,
    Exploration,
    FoundationModel,
    SelectedFrames,
)
from traincraft_assets.core.settings import RUN_CONFIG_ENV, Settings
from traincraft_assets.defs import instance
from traincraft_assets.defs.jobs import (
    EXPLORE,
    FINETUNE,
    LABEL_BATCH,
    SELECT_FRAMES,
    TRAIN_COMMITTEE,
    read_run_config,
)
from traincraft_assets.defs.loop.assets import iteration_partitions, loop_problems
from traincraft_assets.defs.partitions import committee_members, exploration_walks

WAITS_FOR = (TRAIN_COMMITTEE, EXPLORE, SELECT_FRAMES, LABEL_BATCH, FINETUNE)


def _latest(dagster_instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> dict:
    return instance.latest_metadata(dagster_instance, asset, partition) or {}


def loop_request(dagster_instance: dg.DagsterInstance, run_config: dict | None) -> dg.SensorResult:
    """The runs the loop needs next (with the partitions they need registered), or why none."""
    if run_config is None or SelectedFrames.asset not in run_config.get("ops", {}):
        return dg.SensorResult(
            skip_reason=f"the loop needs {RUN_CONFIG_ENV}: a run config with committee, exploration and "
            "selected_frames entries (like traincraft_assets/demo/loop.yaml laid over the demo's)"
        )
    champion = _latest(dagster_instance, ChampionModel.asset).get("serving_finetuned_model")
    if champion is None:
        return dg.SensorResult(skip_reason="no champion yet: the loop starts from the model that serves")
    selected = _latest(dagster_instance, SelectedFrames.asset)
    if selected.get("stopped"):
        return dg.SensorResult(
            skip_reason=f"the loop stopped at iteration {selected['iteration']}: {selected['stopped']}. To go on, "
            "materialize committee (every member) by hand; the loop continues from there"
        )
    for job in WAITS_FOR:
        if running := instance.unfinished_run(dagster_instance, job):
            return dg.SensorResult(skip_reason=f"a {job} run is under way ({running}); looking again after it")
    foundation = _latest(dagster_instance, FoundationModel.asset).get("elements")
    if problems := loop_problems(run_config, foundation):
        return dg.SensorResult(skip_reason="the loop's settings cannot work: " + " ".join(problems))
    members, walks = iteration_partitions(run_config)
    trained = {m: _latest(dagster_instance, CommitteeMember.asset, m) for m in members}
    stale = [m for m, meta in trained.items() if meta.get("champion_serving") != champion]
    if stale:
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"committee:{champion}:{m}", job_name=TRAIN_COMMITTEE, partition_key=m)
                for m in stale
            ],
            dynamic_partitions_requests=[committee_members.build_add_request(members)],
        )
    committee = {meta.get("committee") for meta in trained.values()}
    if len(committee) != 1:
        return dg.SensorResult(skip_reason=f"the members were trained as different committees {sorted(committee)}")
    (key,) = committee
    unexplored = [w for w in walks if _latest(dagster_instance, Exploration.asset, w).get("committee") != key]
    if unexplored:
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"explore:{key}:{w}", job_name=EXPLORE, partition_key=w) for w in unexplored
            ],
            dynamic_partitions_requests=[exploration_walks.build_add_request(walks)],
        )
    if _latest(dagster_instance, Candidates.asset).get("committee") != key:
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"select:{key}", job_name=SELECT_FRAMES)])
    return dg.SensorResult(
        skip_reason=f"iteration {selected.get('iteration')}: batch {selected.get('batch')!r} is in the inbox; the "
        "next iteration starts when a new champion serves"
    )


def build(settings: Settings, jobs: list) -> dg.SensorDefinition:
    @dg.sensor(
        jobs=jobs,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.loop else dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=30,
    )
    def loop_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Starts the active-learning loop's next runs: committee, exploration, selection."""
        return loop_request(context.instance, read_run_config(settings))

    return loop_sensor
