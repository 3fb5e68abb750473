"""parity_report: is the fine-tuned model better than the foundation, and what did it forget?"""

import math

import dagster as dg

from traincraft_assets.core.artifacts import (
    ChampionModel,
    FinetunedModel,
    FoundationModel,
    ParityReport,
    ReplaySubset,
    Split,
)
from traincraft_assets.core.evaluation import EvalSettings, parity, write_parity_report
from traincraft_assets.core.manifest import head_levels, model_level, trained_properties
from traincraft_assets.core.metrics import to_mev
from traincraft_assets.core.training import get_trainer
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.steps import Step, artifact_asset

ParityConfig = settings_config("ParityConfig", EvalSettings, "How the models are evaluated.")


def _inputs_of_model(step: Step, finetuned: FinetunedModel) -> dict:
    """The split, foundation and replay versions the model was trained with (its manifest), so
    a split rematerialized since cannot put training frames into "valid". A foundation or
    replay set the strategy did not use (scratch, naive) falls back to the latest one."""
    used = finetuned.manifest["data_versions"]
    return {
        kind: step.open(kind, used[kind.asset]) if used.get(kind.asset) else step.latest(kind)
        for kind in (Split, FoundationModel, ReplaySubset)
    }


def _serving_champion(step: Step, finetuned: FinetunedModel) -> FinetunedModel | None:
    """The champion serving now, to compare against; None before the first or when this model
    is the champion."""
    champion = instance.latest_metadata(step.context.instance, ChampionModel.asset) or {}
    serving = champion.get("serving_finetuned_model")
    if serving is None or serving == finetuned.sha256:
        return None
    return step.open(FinetunedModel, serving)


def table_cell(value):
    """NaN (no frame of that kind carries the label) as an empty cell: the UI cannot parse a
    record holding NaN and hides the whole row. meV to 0.01, as the table is read."""
    if isinstance(value, float):
        return round(value, 2) if math.isfinite(value) else None
    return value


def _table(rows: list[dict]) -> dg.MetadataValue:
    """Rows of numbers named by their text columns (a config_type; a head and its level)."""
    text = [k for k, v in rows[0].items() if isinstance(v, str)]
    columns = [
        *[dg.TableColumn(k, "string") for k in text],
        dg.TableColumn("n_frames", "int"),
        *[dg.TableColumn(k, "float") for k in rows[0] if k not in (*text, "n_frames")],
    ]
    records = [dg.TableRecord({k: table_cell(v) for k, v in row.items()}) for row in rows]
    return dg.MetadataValue.table(records, dg.TableSchema(columns=columns))


def markdown_image(name: str, png_base64: str) -> dg.MetadataValue:
    """An image embedded in metadata, shown by the UI's [Show Markdown]."""
    return dg.MetadataValue.md(f"![{name}](data:image/png;base64,{png_base64})")


@artifact_asset(
    ParityReport,
    reads=[FinetunedModel, FoundationModel, Split, ReplaySubset],
    config=ParityConfig,
    profile="gpu",
    group_name="reports",
    kinds={"pytorch"},
)
def parity_report(step: Step, config) -> dg.MaterializeResult:
    """Fine-tuned vs zero-shot foundation on the valid set, and fine-tuned on held-out replay."""
    finetuned = step.read(FinetunedModel)
    inputs = _inputs_of_model(step, finetuned)
    split_artifact, foundation, replay = inputs[Split], inputs[FoundationModel], inputs[ReplaySubset]
    if foundation is None:
        raise RuntimeError("parity_report compares against the zero-shot foundation; materialize foundation_model.")

    result = parity(
        finetuned.model_path,
        foundation.model_path,
        split_artifact.valid_path,
        split_artifact.test_path,
        replay.heldout_path if replay is not None else None,
        config.to_settings(),
        champion.model_path if (champion := _serving_champion(step, finetuned)) else None,
        model_level(finetuned.manifest),
        head_levels(finetuned.manifest),
    )
    data_versions = {
        FinetunedModel.asset: finetuned.sha256,
        FoundationModel.asset: foundation.sha256,
        Split.asset: split_artifact.sha256,
        ReplaySubset.asset: replay.sha256 if replay else None,
    }
    trained = trained_properties(finetuned.manifest)
    curve = get_trainer(finetuned.manifest["trainer"]).learning_curve(finetuned.path)
    artifact, figures = step.write(lambda out: write_parity_report(result, out, data_versions, trained, curve))
    metrics, forgetting, kept = result.metrics, result.forgetting, result.replay_head_errors
    better = result.beats_foundation_on_forces
    kept_note = (
        f"; its replay head (the foundation's theory): forces {kept['replay_head_forgetting_f_ratio']:.2f}x, "
        f"energies {kept['replay_head_forgetting_e_ratio']:.2f}x"
        if kept
        else ""
    )
    if properties := result.property_metrics:
        step.log.info("valid dipole/polarizability errors: " + ", ".join(f"{k} {v:.2f}" for k, v in properties.items()))
    step.log.info(
        f"valid force RMSE: fine-tuned {metrics['rmse_f_mev_per_a']:.1f} meV/Å vs zero-shot "
        f"foundation {metrics['foundation_rmse_f_mev_per_a']:.1f} meV/Å "
        f"({'better' if better else 'NOT better'}); held-out replay (forgetting) vs the foundation: "
        f"forces {forgetting['forgetting_f_ratio']:.2f}x, energies {forgetting['forgetting_e_ratio']:.2f}x{kept_note}"
    )
    return step.materialized(
        artifact,
        {
            **metrics,
            **result.property_metrics,
            "report_path": dg.MetadataValue.path(str(artifact.report_path)),
            "replay_rmse_f_foundation_mev_per_a": to_mev(result.replay_foundation.overall["rmse_f"]),
            "replay_rmse_e_mev_per_atom": to_mev(result.replay.overall["rmse_e_per_atom"]),
            "replay_rmse_e_foundation_mev_per_atom": to_mev(result.replay_foundation.overall["rmse_e_per_atom"]),
            **forgetting,
            **kept,
            **result.champion_metrics,
            **({"champion_model": champion.sha256} if champion else {}),
            "trained_properties": dg.MetadataValue.json(trained),
            "n_replay_heldout": len(result.replay.frames),
            "beats_foundation_on_forces": better,
            "per_config_type": _table(result.rows),
            **({"per_head": _table(result.head_rows)} if result.head_rows else {}),
            "parity_plot": markdown_image("parity, valid set", figures[artifact.valid_plot_path.stem]),
            "forgetting_plot": markdown_image("parity, held-out replay", figures[artifact.replay_plot_path.stem]),
            "learning_curve": markdown_image("learning curve", figures[artifact.learning_curve_path.stem]),
            "parity_plot_path": dg.MetadataValue.path(str(artifact.valid_plot_path)),
        },
    )
