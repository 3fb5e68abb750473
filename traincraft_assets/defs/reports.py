"""parity_report: is the fine-tuned model better than the foundation, and what did it forget?"""


import json
from pathlib import Path
from typing import Literal

import dagster as dg

from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.foundation import model_head
from traincraft_assets.core.mace_train import resolve_device
from traincraft_assets.core.manifest import MANIFEST_FILE
from traincraft_assets.core.metrics import (
    errors_by_config_type,
    figure_thumbnail_base64,
    load_model,
    model_elements,
    parity_figure,
    predict,
    save_figure,
    to_mev,
)
from traincraft_assets.defs.data import SPLIT_FILES, split
from traincraft_assets.defs.foundation import HELDOUT_FILE, MODEL_FILE, foundation_model, replay_subset
from traincraft_assets.defs.k8s import GPU_STEP_TAGS
from traincraft_assets.defs.resources import StoreResource, latest_artifact, materialized, require_artifact
from traincraft_assets.defs.training import FINETUNED_FILE, finetuned_model

REPORT_FILE = "parity.json"
# CONTRACT (design.md): acceptance checks read these metadata keys.
PARITY_CONTRACT_KEYS = (
    "rmse_e_mev_per_atom",
    "rmse_f_mev_per_a",
    "rmse_s_mev_per_a3",
    "foundation_rmse_e_mev_per_atom",
    "foundation_rmse_f_mev_per_a",
    "replay_rmse_f_mev_per_a",
    "n_valid",
    "report_path",
)


class ParityConfig(dg.Config):
    batch_size: int = 32
    device: Literal["auto", "cpu", "cuda"] = "auto"


def _inputs_of_model(context, artifacts, finetuned) -> dict:
    """The split, foundation and replay versions the model was trained with (its manifest), so
    a split rematerialized since cannot put training frames into "valid". A foundation or
    replay set the strategy did not use (scratch, naive) falls back to the latest one."""
    used = json.loads(finetuned.file(MANIFEST_FILE).read_text())["data_versions"]
    return {
        asset: artifacts.open(asset, used[asset]) if used.get(asset) else latest_artifact(context, artifacts, asset)
        for asset in ("split", "foundation_model", "replay_subset")
    }


def _rows(finetuned: dict, foundation: dict) -> list[dict]:
    """Per-config_type rows in meV units, fine-tuned beside zero-shot foundation."""
    rows = []
    for name, ft in finetuned.items():
        fnd = foundation[name]
        rows.append(
            {
                "config_type": name,
                "n_frames": ft["n_frames"],
                "rmse_e_mev_per_atom": to_mev(ft["rmse_e_per_atom"]),
                "mae_e_mev_per_atom": to_mev(ft["mae_e_per_atom"]),
                "rmse_f_mev_per_a": to_mev(ft["rmse_f"]),
                "mae_f_mev_per_a": to_mev(ft["mae_f"]),
                "rmse_s_mev_per_a3": to_mev(ft["rmse_s"]),
                "foundation_rmse_e_mev_per_atom": to_mev(fnd["rmse_e_per_atom"]),
                "foundation_rmse_f_mev_per_a": to_mev(fnd["rmse_f"]),
                "foundation_rmse_s_mev_per_a3": to_mev(fnd["rmse_s"]),
            }
        )
    return rows


def _table(rows: list[dict]) -> dg.MetadataValue:
    columns = [
        dg.TableColumn("config_type", "string"),
        dg.TableColumn("n_frames", "int"),
        *[dg.TableColumn(k, "float") for k in rows[0] if k not in ("config_type", "n_frames")],
    ]
    return dg.MetadataValue.table([dg.TableRecord(r) for r in rows], dg.TableSchema(columns=columns))


@dg.asset(
    deps=[finetuned_model, foundation_model, split, replay_subset],
    code_version="1",
    group_name="reports",
    kinds={"pytorch"},
    op_tags=GPU_STEP_TAGS,
)
def parity_report(
    context: dg.AssetExecutionContext, config: ParityConfig, store: StoreResource
) -> dg.MaterializeResult:
    """Fine-tuned vs zero-shot foundation on the valid set, and fine-tuned on held-out replay."""
    artifacts = store.store()
    device = resolve_device(config.device)
    finetuned = require_artifact(context, artifacts, "finetuned_model")
    inputs = _inputs_of_model(context, artifacts, finetuned)
    split_artifact, foundation, replay = inputs["split"], inputs["foundation_model"], inputs["replay_subset"]
    if foundation is None:
        raise RuntimeError("parity_report compares against the zero-shot foundation; materialize foundation_model.")

    valid = read_frames(split_artifact.file(SPLIT_FILES["valid"]))
    ft_model = load_model(finetuned.file(FINETUNED_FILE), device)
    fnd_model = load_model(foundation.file(MODEL_FILE), device)
    ft_head = model_head(getattr(ft_model, "heads", ["Default"]))  # the head predict() uses
    ft_valid = predict(ft_model, valid, ft_head, config.batch_size, device)
    fnd_valid = predict(fnd_model, valid, None, config.batch_size, device)
    valid_ft = errors_by_config_type(valid, ft_valid)
    valid_fnd = errors_by_config_type(valid, fnd_valid)
    # The test side, when the split has one, is reported in parity.json beside valid.
    test_path = split_artifact.file(SPLIT_FILES["test"])
    test = read_frames(test_path) if test_path.is_file() else []
    test_rows = (
        _rows(
            errors_by_config_type(test, predict(ft_model, test, ft_head, config.batch_size, device)),
            errors_by_config_type(test, predict(fnd_model, test, None, config.batch_size, device)),
        )
        if test
        else []
    )

    # Forgetting: replay frames never trained on, restricted to elements the fine-tuned model
    # kept (naive fine-tuning drops the foundation's other elements).
    heldout = []
    if replay is not None and replay.file(HELDOUT_FILE).is_file():
        known = model_elements(ft_model)
        heldout = [a for a in read_frames(replay.file(HELDOUT_FILE)) if set(a.numbers) <= known]
    ft_replay = predict(ft_model, heldout, ft_head, config.batch_size, device)
    fnd_replay = predict(fnd_model, heldout, None, config.batch_size, device)
    replay_ft = errors_by_config_type(heldout, ft_replay)["all"]
    replay_fnd = errors_by_config_type(heldout, fnd_replay)["all"]

    metrics = {
        "rmse_e_mev_per_atom": to_mev(valid_ft["all"]["rmse_e_per_atom"]),
        "rmse_f_mev_per_a": to_mev(valid_ft["all"]["rmse_f"]),
        "rmse_s_mev_per_a3": to_mev(valid_ft["all"]["rmse_s"]),
        "foundation_rmse_e_mev_per_atom": to_mev(valid_fnd["all"]["rmse_e_per_atom"]),
        "foundation_rmse_f_mev_per_a": to_mev(valid_fnd["all"]["rmse_f"]),
        "replay_rmse_f_mev_per_a": to_mev(replay_ft["rmse_f"]),
        "n_valid": len(valid),
    }
    rows = _rows(valid_ft, valid_fnd)
    figure = parity_figure(
        [("foundation (zero-shot)", valid, fnd_valid), ("fine-tuned", valid, ft_valid)],
        f"valid set ({len(valid)} frames)",
    )
    thumbnail = figure_thumbnail_base64(figure)
    replay_figure = parity_figure(
        [("foundation", heldout, fnd_replay), ("fine-tuned", heldout, ft_replay)],
        f"held-out replay frames ({len(heldout)}): forgetting",
    )

    def fill(d: Path):
        save_figure(figure, d / "parity_valid.png")
        save_figure(replay_figure, d / "parity_replay.png")
        report = {
            **metrics,
            "units": "meV/atom (energy), meV/Å (forces), meV/Å³ (stress)",
            "rows": rows,
            "test_rows": test_rows,
            "replay_heldout": {
                "n_frames": len(heldout),
                "rmse_e_mev_per_atom": to_mev(replay_ft["rmse_e_per_atom"]),
                "rmse_f_mev_per_a": to_mev(replay_ft["rmse_f"]),
                "foundation_rmse_e_mev_per_atom": to_mev(replay_fnd["rmse_e_per_atom"]),
                "foundation_rmse_f_mev_per_a": to_mev(replay_fnd["rmse_f"]),
            },
            "finetuned_head": ft_head,
            "data_versions": {
                "finetuned_model": finetuned.sha256,
                "foundation_model": foundation.sha256,
                "split": split_artifact.sha256,
                "replay_subset": replay.sha256 if replay else None,
            },
        }
        (d / REPORT_FILE).write_text(json.dumps(report, indent=1))

    artifact, _ = artifacts.write("parity_report", fill)
    better = metrics["rmse_f_mev_per_a"] < metrics["foundation_rmse_f_mev_per_a"]
    context.log.info(
        f"valid force RMSE: fine-tuned {metrics['rmse_f_mev_per_a']:.1f} meV/Å vs zero-shot "
        f"foundation {metrics['foundation_rmse_f_mev_per_a']:.1f} meV/Å "
        f"({'better' if better else 'NOT better'})"
    )
    return materialized(
        artifact,
        {
            **metrics,
            "report_path": dg.MetadataValue.path(str(artifact.file(REPORT_FILE))),
            "replay_rmse_f_foundation_mev_per_a": to_mev(replay_fnd["rmse_f"]),
            "n_replay_heldout": len(heldout),
            "beats_foundation_on_forces": better,
            "per_config_type": _table(rows),
            "parity_plot": dg.MetadataValue.md(f"![parity](data:image/png;base64,{thumbnail})"),
            "parity_plot_path": dg.MetadataValue.path(str(artifact.file("parity_valid.png"))),
        },
    )
