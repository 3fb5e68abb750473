"""Deploy: what decides that a fine-tuned model may serve (quality gates) and which one serves
(champion_model)."""

from traincraft_assets.defs.deploy.assets import champion_model
from traincraft_assets.defs.deploy.checks import quality_gates

ASSETS = [champion_model]
CHECKS = [quality_gates]
