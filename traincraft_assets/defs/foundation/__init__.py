"""Foundation: the replay pool and the model to fine-tune, staged once; the replay subset."""

from traincraft_assets.defs.foundation.assets import foundation_model, pretraining_frames, replay_subset

ASSETS = [pretraining_frames, foundation_model, replay_subset]
