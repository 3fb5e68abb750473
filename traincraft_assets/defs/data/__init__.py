"""Data: batches labelled one partition each, merged into a checked dataset, split stably."""

import dagster as dg

from traincraft_assets.defs.data.assets import data_batches, dataset, labelled_frames, split
from traincraft_assets.defs.data.checks import batch_fully_labelled, dataset_health, foundation_agreement

defs = dg.Definitions(
    assets=[labelled_frames, dataset, split],
    asset_checks=[batch_fully_labelled, dataset_health, foundation_agreement],
)

__all__ = ["data_batches", "defs"]
