"""Deploy: what decides that a fine-tuned model may serve (quality gates) and which one serves
(champion_model)."""

import dagster as dg

from traincraft_assets.defs.deploy.assets import champion_model
from traincraft_assets.defs.deploy.checks import quality_gates

defs = dg.Definitions(assets=[champion_model], asset_checks=[quality_gates])
