"""finetuned_model: one training run of the configured trainer, strategy, heads and settings."""

from typing import Literal

import dagster as dg

from traincraft_assets.core.artifacts import FinetunedModel, FoundationModel, ReplaySubset, Split
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.training import DEFAULT_TRAINER, TRAINERS, TrainConfigError, get_trainer
from traincraft_assets.core.training.finetune import Upstream, plan_training, preflight_training, train_model
from traincraft_assets.core.training.workdir import clean_abandoned
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.steps import Step, artifact_asset

FinetuneConfig = settings_config(
    "FinetuneConfig",
    TRAINERS[DEFAULT_TRAINER].settings_type,
    "Defaults follow the fine-tuning strategies study (docs: Training).",
    extra={"trainer": (Literal[tuple(TRAINERS)], DEFAULT_TRAINER, "the training backend (core.training.TRAINERS)")},
)


def _training_fits(config, run) -> list[str]:
    """The trainer's own validation, on what the labelled batches and the foundation say."""
    trainer = get_trainer(config.trainer)
    problem = preflight_training(trainer, config.to_settings(), run.data, run.foundation, run.launch)
    return [problem] if problem else []


def _mev(row: dict, key: str) -> float | None:
    return 1000 * row[key] if key in row else None


def _curve_table(curve: list[dict]) -> dg.MetadataValue:
    records = [
        dg.TableRecord(
            {
                "epoch": row["epoch"],
                "head": row["head"],
                "train_loss": row.get("train_loss"),
                "loss": row.get("loss"),
                "rmse_e_per_atom": _mev(row, "rmse_e_per_atom"),
                "rmse_f": _mev(row, "rmse_f"),
                "rmse_stress": _mev(row, "rmse_stress"),
            }
        )
        for row in curve
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("epoch", "int", description="-1: before the first update"),
            dg.TableColumn("head", "string"),
            dg.TableColumn("train_loss", "float", description="mean over the epoch's batches (target head's row)"),
            dg.TableColumn("loss", "float", description="valid"),
            dg.TableColumn("rmse_e_per_atom", "float", description="meV/atom"),
            dg.TableColumn("rmse_f", "float", description="meV/Å"),
            dg.TableColumn("rmse_stress", "float", description="meV/Å³"),
        ]
    )
    return dg.MetadataValue.table(records, schema)


@artifact_asset(
    FinetunedModel,
    reads=[Split, ReplaySubset, FoundationModel],
    config=FinetuneConfig,
    preflight=_training_fits,
    profile="gpu",
    group_name="training",
    kinds={"pytorch"},
)
def finetuned_model(step: Step, config) -> dg.MaterializeResult:
    """A model fine-tuned (or trained from scratch) by the trainer's own program (MACE's mace_run_train)."""
    trainer = get_trainer(config.trainer)
    settings = config.to_settings()
    uses = trainer.uses(settings)
    upstream = Upstream(
        split=step.read(Split),
        foundation=step.read(FoundationModel) if uses.foundation else None,
        replay=step.read(ReplaySubset) if uses.replay else None,
    )
    with step.refusing(TrainConfigError):  # impossible settings fail here, before training
        plan = plan_training(trainer, settings, upstream, step.store.work_root, step.launch)
    shortfall = plan.replay_shortfall
    if shortfall:
        step.log.warning(shortfall)
    for abandoned in clean_abandoned(step.store.work_root):
        step.log.info(f"removed the work directory of an abandoned training: {abandoned}")
    with step.training():
        artifact, result = step.write(lambda out: train_model(plan, out, step.log.info, config.model_dump()))
    plan.release()  # published: the checkpoints are no longer needed
    if result.resumed_from_epoch is not None:
        step.log.info(f"resumed an interrupted training from its checkpoint of epoch {result.resumed_from_epoch}")
    best = result.best
    return step.materialized(
        artifact,
        {
            "model_path": dg.MetadataValue.path(str(artifact.model_path)),
            "deploy_model_path": dg.MetadataValue.path(str(artifact.deploy_model_path)),
            "manifest_path": dg.MetadataValue.path(str(artifact.manifest_path)),
            "strategy": settings.strategy,
            "epochs_run": result.epochs_run,
            "heads": dg.MetadataValue.json(list(settings.heads)),
            "lr": settings.learning_rate,
            "device": resolve_device(settings.device),
            "best_epoch": best.get("epoch", -1),
            "resumed_from_epoch": -1 if result.resumed_from_epoch is None else result.resumed_from_epoch,
            "valid_rmse_e_mev_per_atom_best": 1000 * best.get("rmse_e_per_atom", float("nan")),
            "valid_rmse_f_mev_per_a_best": 1000 * best.get("rmse_f", float("nan")),
            "learning_curve": _curve_table(result.curve),
            "mace_command": dg.MetadataValue.md("```\n" + " ".join(result.argv) + "\n```"),
        },
    )
