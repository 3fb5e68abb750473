"""Deploy: what decides that a fine-tuned model may serve (the quality gates)."""

import dagster as dg

from traincraft_assets.defs.deploy.checks import quality_gates

defs = dg.Definitions(asset_checks=[quality_gates])
