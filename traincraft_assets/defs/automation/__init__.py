"""Automation: what starts runs without a person (the daemon runs it; `dagster dev` starts one).

- inbox_sensor: new batch files become partitions and are labelled;
- the automation sensor (on, unlike Dagster's default): evaluates the assets' automation
  conditions, e.g. champion_model decides after each new fine-tuned model.
"""

import dagster as dg

from traincraft_assets.defs.automation.sensors import inbox_sensor

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

defs = dg.Definitions(sensors=[inbox_sensor, automation_sensor])
