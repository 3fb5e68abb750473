"""Jobs: labelling is per batch (partitioned); the foundation and its pool are staged once (a
download or a training) and reused by every fine-tuning run, which is its own job."""

import dagster as dg

from traincraft_assets.defs.data.assets import dataset, labelled_frames, split
from traincraft_assets.defs.foundation.assets import foundation_model, pretraining_frames, replay_subset
from traincraft_assets.defs.reports.assets import parity_report
from traincraft_assets.defs.training.assets import finetuned_model

label_batch_job = dg.define_asset_job("label_batch", selection=dg.AssetSelection.assets(labelled_frames))
stage_foundation_job = dg.define_asset_job(
    "stage_foundation", selection=dg.AssetSelection.assets(pretraining_frames, foundation_model)
)
finetune_job = dg.define_asset_job(
    "finetune", selection=dg.AssetSelection.assets(dataset, split, replay_subset, finetuned_model, parity_report)
)

defs = dg.Definitions(jobs=[label_batch_job, stage_foundation_job, finetune_job])
