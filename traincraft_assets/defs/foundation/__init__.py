"""Foundation: the replay pool and the model to fine-tune, staged once; the replay subset."""

import dagster as dg

from traincraft_assets.defs.foundation.assets import foundation_model, pretraining_frames, replay_subset

defs = dg.Definitions(assets=[pretraining_frames, foundation_model, replay_subset])

__all__ = ["defs"]
