"""The strategy comparison: strategy_arm (one partition, and one run, per strategy) and
strategy_comparison (every arm side by side: the table and two figures)."""

import json

import dagster as dg

from traincraft_assets.core.artifacts import FoundationModel, ReplaySubset, Split, StrategyArm, StrategyComparison
from traincraft_assets.core.comparison import (
    ARM_NAMES,
    ARMS,
    CompareSettings,
    arm_record,
    arm_settings,
    run_arm,
    subset_sizes,
    write_comparison,
)
from traincraft_assets.core.training import DEFAULT_TRAINER, TrainConfigError, get_trainer
from traincraft_assets.core.training.finetune import Upstream, preflight_training
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.reports.assets import table_cell
from traincraft_assets.defs.steps import EveryPartition, Step, artifact_asset

strategy_arms = dg.StaticPartitionsDefinition(list(ARM_NAMES))

CompareConfig = settings_config(
    "CompareConfig",
    CompareSettings,
    "The budget every arm shares; each arm sets only its strategy (core/comparison.py: ARMS).",
    only=(
        "sizes",
        "max_num_epochs",
        "lr",
        "batch_size",
        "energy_weight",
        "forces_weight",
        "ema_decay",
        "dtype",
        "device",
        "seed",
        "eval_batch_size",
    ),
)


def _arm_fits(config, run) -> list[str]:
    """The trainer's validation of this run's arm (every arm when no partition is given); the
    zero-shot arm trains nothing."""
    settings = config.to_settings()
    arms = [run.context.partition_key] if run.context.has_partition_key else list(ARM_NAMES)
    arms = [arm for arm in arms if arm in ARMS]
    trainer = get_trainer(DEFAULT_TRAINER)
    problems = [
        (
            arm,
            preflight_training(
                trainer, arm_settings(arm, settings.training, run.foundation), run.data, run.foundation, run.launch
            ),
        )
        for arm in arms
    ]
    return [f"arm {arm!r}: {problem}" for arm, problem in problems if problem]


ROW_COLUMNS = (
    ("n_train", "int", "training frames"),
    ("valid_rmse_e_mev_per_atom", "float", "meV/atom, target valid frames"),
    ("valid_rmse_f_mev_per_a", "float", "meV/Å, target valid frames"),
    ("forgetting_rmse_e_mev_per_atom", "float", "meV/atom, frames the foundation never trained on"),
    ("forgetting_rmse_f_mev_per_a", "float", "meV/Å, frames the foundation never trained on"),
    ("forgetting_replay_head_rmse_e_mev_per_atom", "float", "meV/atom, the same frames, multihead's replay head"),
    ("forgetting_replay_head_rmse_f_mev_per_a", "float", "meV/Å, the same frames, multihead's replay head"),
    ("wall_s", "float", "training seconds"),
)


def _rows_table(rows: list[dict], with_arm: bool) -> dg.MetadataValue:
    columns = ([("arm", "string", "strategy")] if with_arm else []) + list(ROW_COLUMNS)
    return dg.MetadataValue.table(
        [dg.TableRecord({name: table_cell(row.get(name, float("nan"))) for name, _, _ in columns}) for row in rows],
        dg.TableSchema(columns=[dg.TableColumn(name, kind, description=text) for name, kind, text in columns]),
    )


@artifact_asset(
    StrategyArm,
    reads=[Split, ReplaySubset, FoundationModel],
    config=CompareConfig,
    preflight=_arm_fits,
    profile="gpu",
    partitions_def=strategy_arms,
    group_name="comparison",
    kinds={"pytorch"},
)
def strategy_arm(step: Step, config) -> dg.MaterializeResult:
    """One strategy trained at every training-set size with the shared budget, scored on the
    target's valid frames and on frames the foundation never trained on (forgetting)."""
    settings = config.to_settings()
    upstream = Upstream(split=step.read(Split), foundation=step.read(FoundationModel), replay=step.read(ReplaySubset))
    arm = step.partition
    prefix = f"arm {arm!r}: "
    with step.refusing(TrainConfigError, ValueError, prefix=prefix), step.training(prefix):
        subset_sizes(settings.sizes, 1)  # impossible settings fail before any training
        trainer = get_trainer(DEFAULT_TRAINER)
        rows = run_arm(arm, trainer, settings, upstream, step.store.work_root, step.launch, step.log.info)
    record = arm_record(arm, rows, settings, upstream)
    artifact, _ = step.write(lambda out: out.results_path.write_text(json.dumps(record, indent=1)))
    for row in rows:
        step.log.info(
            f"{arm} on {row['n_train']} frames: valid F {row['valid_rmse_f_mev_per_a']:.1f} meV/Å, "
            f"forgetting F {row['forgetting_rmse_f_mev_per_a']:.1f} meV/Å"
        )
    return step.materialized(
        artifact, {"arm": arm, "n_models": len(rows), "results": _rows_table(rows, with_arm=False)}
    )


@artifact_asset(StrategyComparison, reads=[EveryPartition(StrategyArm)], group_name="comparison", kinds={"pandas"})
def strategy_comparison(step: Step) -> dg.MaterializeResult:
    """Every arm side by side: valid and forgetting-set errors and wall time per strategy and
    training-set size, error vs frames, and forgetting vs target accuracy."""
    found = {arm: step.latest(StrategyArm, partition=arm) for arm in ARM_NAMES}
    missing = [arm for arm, artifact in found.items() if artifact is None]
    if missing:
        step.log.warning(f"arms never run, left out of the table: {missing}")
    records = [artifact.results for artifact in found.values() if artifact is not None]
    with step.refusing(ValueError):
        artifact, content = step.write(lambda out: write_comparison(records, out))
    thumbs = content["thumbnails"]
    return step.materialized(
        artifact,
        {
            "table": _rows_table(content["rows"], with_arm=True),
            "findings": dg.MetadataValue.json(content["findings"]),
            "arms_missing": dg.MetadataValue.json(missing),
            "figures": dg.MetadataValue.md(
                f"![error vs frames](data:image/png;base64,{thumbs['error_vs_frames']})\n\n"
                f"![forgetting vs accuracy](data:image/png;base64,{thumbs['forgetting_vs_accuracy']})"
            ),
            "table_path": dg.MetadataValue.path(str(artifact.markdown_path)),
            "error_plot_path": dg.MetadataValue.path(str(artifact.error_plot_path)),
            "forgetting_plot_path": dg.MetadataValue.path(str(artifact.forgetting_plot_path)),
        },
    )
