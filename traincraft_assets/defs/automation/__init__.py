"""Automation: what starts runs without a person (the daemon runs it; `dagster dev` starts one).

- inbox_sensor (on): new batch files become partitions and are labelled;
- retrain_sensor (on) and nightly_retrain (off): the finetune job once the labelled batches
  changed and settled (retrain.py);
- automation_sensor (on, unlike Dagster's default): evaluates the assets' automation
  conditions: champion_model decides after each new challenger;
- loop_sensor (off unless TRAINCRAFT_LOOP=on): the active-learning loop's runs (loop.py).
"""

import dagster as dg

from traincraft_assets.core.settings import Settings
from traincraft_assets.defs.automation import loop, retrain
from traincraft_assets.defs.automation.sensors import inbox_sensor


def build(settings: Settings, jobs: list) -> dg.Definitions:
    """The sensors and schedules; `jobs`: the project's jobs (defs/jobs.py), which the loop starts."""
    automation_sensor = dg.AutomationConditionSensorDefinition(
        "automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    retrain_sensor, nightly_retrain = retrain.build(settings)
    return dg.Definitions(
        sensors=[inbox_sensor, retrain_sensor, automation_sensor, loop.build(settings, jobs)],
        schedules=[nightly_retrain],
    )
