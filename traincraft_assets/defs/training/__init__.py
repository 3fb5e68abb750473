"""Training: finetuned_model, through the trainer registry in core/training."""

from traincraft_assets.defs.training.assets import finetuned_model

ASSETS = [finetuned_model]
