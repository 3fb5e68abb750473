"""Automation: what starts runs without a person (the daemon runs it; `dagster dev` starts one)."""

import dagster as dg

from traincraft_assets.defs.automation.sensors import inbox_sensor

defs = dg.Definitions(sensors=[inbox_sensor])
