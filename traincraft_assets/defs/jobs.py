"""Jobs: labelling is per batch (partitioned); the foundation and its pool are staged once (a
download or a training) and reused by every fine-tuning run, which is its own job.

Runs that nobody configures by hand (the inbox sensor's labelling, automated and nightly
retraining) take their run config from the file named by TRAINCRAFT_RUN_CONFIG (a whole-graph
file like examples/demo.yaml): each job gets the entries for its own steps as its default
config. A run that configures a step replaces that step's entry whole; other steps keep it.
"""

import dagster as dg
import yaml

from traincraft_assets.core.artifacts import (
    Candidates,
    CommitteeMember,
    Dataset,
    Exploration,
    FinetunedModel,
    FoundationModel,
    IRSpectrum,
    LabelledFrames,
    ParityReport,
    PretrainingFrames,
    ReplaySubset,
    SelectedFrames,
    SpectrumTrajectories,
    Split,
    StrategyArm,
)
from traincraft_assets.core.settings import RUN_CONFIG_ENV, Settings, SettingsError

LABEL_BATCH = "label_batch"
STAGE_FOUNDATION = "stage_foundation"
FINETUNE = "finetune"
COMPARE = "compare_strategies"  # one run per arm (partition): they can run in parallel
# The loop: one run per committee member and per walk (partitions: side by side on a cluster),
# then one that judges the walks and puts the picks in the inbox.
TRAIN_COMMITTEE = "train_committee"
EXPLORE = "explore"
SELECT_FRAMES = "select_frames"
# The fine-tuned model's MD (a step per trajectory) and its IR spectrum; Raman on demand, as it
# needs a dipole model with a polarizability head.
SPECTRA = "spectra"


def run_config_for(job: dg.JobDefinition, run_config: dict) -> dict:
    """The part of a whole-graph run config (examples/*.yaml) that one job accepts."""
    ops = {k: v for k, v in run_config.get("ops", {}).items() if job.graph.has_node_named(k)}
    return {**run_config, "ops": ops}


def read_run_config(settings: Settings) -> dict | None:
    """The whole-graph run config named by TRAINCRAFT_RUN_CONFIG, or None when unset."""
    path = settings.run_config
    if path is None:
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"{RUN_CONFIG_ENV}={path}: cannot read it as YAML ({exc}).") from exc
    if not isinstance(config, dict) or not isinstance(config.get("ops", {}), dict):
        raise SettingsError(
            f"{RUN_CONFIG_ENV}={path}: expected a run config mapping with `ops:` per step "
            f"(like examples/demo.yaml); found {type(config).__name__}."
        )
    return config


def build(settings: Settings, graph: dg.Definitions) -> dg.Definitions:
    """The jobs over `graph`'s assets, with their default config from the run config file."""
    selections = {
        LABEL_BATCH: [LabelledFrames],
        STAGE_FOUNDATION: [PretrainingFrames, FoundationModel],
        FINETUNE: [Dataset, Split, ReplaySubset, FinetunedModel, ParityReport],
        COMPARE: [StrategyArm],
        TRAIN_COMMITTEE: [CommitteeMember],
        EXPLORE: [Exploration],
        SELECT_FRAMES: [Candidates, SelectedFrames],
        SPECTRA: [SpectrumTrajectories, IRSpectrum],
    }
    run_config = read_run_config(settings)
    jobs = []
    for name, kinds in selections.items():
        selection = dg.AssetSelection.assets(*(kind.asset for kind in kinds))
        config = None
        if run_config is not None:
            bare = dg.define_asset_job(name, selection=selection)
            steps = dg.Definitions.merge(graph, dg.Definitions(jobs=[bare])).resolve_job_def(name)
            config = run_config_for(steps, run_config)
        jobs.append(dg.define_asset_job(name, selection=selection, config=config))
    return dg.Definitions(jobs=jobs)
