"""Automation: what starts runs without a person (the daemon runs it; `dagster dev` starts one).

- inbox_sensor (on): new batch files become partitions and are labelled;
- retrain_sensor (on) and nightly_retrain (off): the finetune job once the labelled batches
  changed and settled (retrain.py);
- automation_sensor (on, unlike Dagster's default): evaluates the assets' automation
  conditions: champion_model decides after each new challenger.
"""

import dagster as dg

from traincraft_assets.core.settings import Settings
from traincraft_assets.defs.automation import retrain
from traincraft_assets.defs.automation.sensors import inbox_sensor


def build(settings: Settings) -> dg.Definitions:
    automation_sensor = dg.AutomationConditionSensorDefinition(
        "automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    retrain_sensor, nightly_retrain = retrain.build(settings)
    return dg.Definitions(sensors=[inbox_sensor, retrain_sensor, automation_sensor], schedules=[nightly_retrain])
