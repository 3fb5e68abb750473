"""Training: finetuned_model, through the trainer registry in core/training."""

import dagster as dg

from traincraft_assets.defs.training.assets import finetuned_model

defs = dg.Definitions(assets=[finetuned_model])

__all__ = ["defs"]
