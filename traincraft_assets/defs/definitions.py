"""The one Definitions object: assets, checks, jobs, resources and the deployment's executor."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.defs.checks import dataset_health, foundation_energy_consistency
from traincraft_assets.defs.data import dataset, labelled_frames, split
from traincraft_assets.defs.foundation import foundation_model, pretraining_frames, replay_subset
from traincraft_assets.defs.k8s import executor
from traincraft_assets.defs.reports import parity_report
from traincraft_assets.defs.resources import default_resources
from traincraft_assets.defs.training import finetuned_model

ASSETS = [
    labelled_frames,
    dataset,
    split,
    pretraining_frames,
    foundation_model,
    replay_subset,
    finetuned_model,
    parity_report,
]
CHECKS = [dataset_health, foundation_energy_consistency]

# Labelling is per batch (partitioned). The foundation and its pretraining pool are staged once
# (a download or a training) and reused by every fine-tuning run.
label_batch_job = dg.define_asset_job("label_batch", selection=dg.AssetSelection.assets(labelled_frames))
stage_foundation_job = dg.define_asset_job(
    "stage_foundation", selection=dg.AssetSelection.assets(pretraining_frames, foundation_model)
)
finetune_job = dg.define_asset_job(
    "finetune", selection=dg.AssetSelection.assets(dataset, split, replay_subset, finetuned_model, parity_report)
)
JOBS = [label_batch_job, stage_foundation_job, finetune_job]



def build_defs(resources: dict | None = None) -> dg.Definitions:
    """Definitions with the given resources (tests point the store and inbox at temp dirs)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=JOBS,
        resources=resources or default_resources(),
        executor=executor(),
    )


defs = build_defs()
