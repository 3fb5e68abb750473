"""Data: batches labelled one partition each, merged into a checked dataset, split stably."""

from traincraft_assets.defs.data.assets import dataset, split
from traincraft_assets.defs.data.checks import batch_fully_labelled, dataset_health, foundation_agreement
from traincraft_assets.defs.data.labelling import labelled_frames

ASSETS = [labelled_frames, dataset, split]
CHECKS = [batch_fully_labelled, dataset_health, foundation_agreement]
