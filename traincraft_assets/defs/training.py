"""finetuned_model: one MACE training run for the configured strategy, heads and settings."""


import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Literal, Optional

import dagster as dg

from traincraft_assets.core.frames import (
    elements,
    get_label,
    labels_present,
    read_frames,
    set_label,
    write_frames,
)
from traincraft_assets.core.mace_train import (
    RUN_NAME,
    TARGET_HEAD,
    ModelShape,
    TrainInputs,
    TrainSettings,
    resolve_device,
)
from traincraft_assets.core.manifest import MANIFEST_FILE, utc_now, write_manifest
from traincraft_assets.core.trainers import TRAINERS, get_trainer
from traincraft_assets.defs.data import SPLIT_FILES, split
from traincraft_assets.defs.foundation import (
    MODEL_FILE,
    REPLAY_FILE,
    foundation_info,
    foundation_model,
    replay_subset,
)
from traincraft_assets.defs.k8s import GPU_STEP_TAGS
from traincraft_assets.defs.resources import StoreResource, materialized, require_artifact

FINETUNED_FILE = f"{RUN_NAME}.model"

class FinetuneConfig(dg.Config):
    """Defaults follow the fine-tuning strategies study (see README: Configuration)."""

    trainer: Literal[tuple(TRAINERS)] = "mace"  # type: ignore[valid-type]  # core.trainers registry
    strategy: Literal["multihead", "naive", "scratch"] = "multihead"
    freeze: Optional[int] = None  # MACE --freeze N: 1-4 embedding, 5 + interactions, 6 + products
    lora: bool = False
    lora_rank: int = 4
    lora_alpha: float = 1.0
    replay_labels: Literal["reference", "pseudo"] = "reference"
    # any of energy, forces, stress, dipole, polarizability (Dagster config has no list of
    # Literal; unknown names are rejected with the other rules before MACE starts)
    heads: list[str] = ["energy", "forces"]
    e0s: Literal["foundation", "average", "dict", "file"] = "foundation"
    e0s_dict: Optional[dict[str, float]] = None  # element symbol -> eV
    e0s_file: Optional[str] = None
    weight_decay: float = 0.0
    ema_decay: float = 0.995
    energy_weight: float = 10.0
    forces_weight: float = 10.0
    stress_weight: float = 1.0
    dipole_weight: float = 1.0
    polarizability_weight: float = 1.0
    lr: Optional[float] = None  # default: multihead 1e-4, naive 1e-3, scratch 1e-2
    batch_size: int = 10
    valid_batch_size: Optional[int] = None
    max_num_epochs: int = 30
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when the step's machine has one
    dtype: Literal["float32", "float64"] = "float64"
    seed: int = 0
    # architecture, used by strategy 'scratch' only
    num_channels: int = 128
    max_L: int = 1
    r_max: float = 5.0
    num_interactions: int = 2
    correlation: int = 3
    extra: dict[str, str] = {}  # any other mace_run_train flag, e.g. {"scheduler_patience": "5"}

    def settings(self) -> TrainSettings:
        """The plain-Python settings core.mace_train renders; same field names, plus the shape."""
        shared = {f.name for f in dataclasses.fields(TrainSettings)} - {"heads", "device", "shape", "extra"}
        return TrainSettings(
            **{name: getattr(self, name) for name in shared},
            heads=tuple(self.heads),
            device=resolve_device(self.device),
            shape=ModelShape(self.num_channels, self.max_L, self.r_max, self.num_interactions, self.correlation),
            extra=dict(self.extra),
        )


def _pseudolabel_ready(src: Path, dst: Path) -> Path:
    """Replay frames with zero labels: MACE's pseudolabelling replaces existing labels but leaves
    frames without any at loss weight 0 (notes/mace.md), so every frame gets placeholders."""
    frames = read_frames(src)
    for atoms in frames:
        set_label(atoms, "energy", 0.0)
        set_label(atoms, "forces", [[0.0, 0.0, 0.0]] * len(atoms))
        atoms.info.pop("REF_stress", None)
    write_frames(dst, frames)
    return dst


def _curve_table(curve: list[dict]) -> dg.MetadataValue:
    records = [
        dg.TableRecord(
            {
                "epoch": row["epoch"],
                "head": row["head"],
                "loss": row.get("loss"),
                "rmse_e_per_atom": 1000 * row["rmse_e_per_atom"] if "rmse_e_per_atom" in row else None,
                "rmse_f": 1000 * row["rmse_f"] if "rmse_f" in row else None,
                "rmse_stress": 1000 * row["rmse_stress"] if "rmse_stress" in row else None,
            }
        )
        for row in curve
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("epoch", "int", description="-1: before the first update"),
            dg.TableColumn("head", "string"),
            dg.TableColumn("loss", "float"),
            dg.TableColumn("rmse_e_per_atom", "float", description="meV/atom"),
            dg.TableColumn("rmse_f", "float", description="meV/Å"),
            dg.TableColumn("rmse_stress", "float", description="meV/Å³"),
        ]
    )
    return dg.MetadataValue.table(records, schema)


@dg.asset(
    deps=[split, replay_subset, foundation_model],
    code_version="1",
    group_name="training",
    kinds={"pytorch"},
    op_tags=GPU_STEP_TAGS,
)
def finetuned_model(
    context: dg.AssetExecutionContext, config: FinetuneConfig, store: StoreResource
) -> dg.MaterializeResult:
    """A MACE model fine-tuned (or trained from scratch) by MACE's own mace_run_train."""
    artifacts = store.store()
    settings = config.settings()
    trainer = get_trainer(config.trainer)
    split_artifact = require_artifact(context, artifacts, "split")
    uses_foundation = settings.strategy != "scratch" or settings.e0s == "foundation"
    foundation = require_artifact(context, artifacts, "foundation_model") if uses_foundation else None
    replay = require_artifact(context, artifacts, "replay_subset") if settings.strategy == "multihead" else None
    sides = {
        side: read_frames(split_artifact.file(name))
        for side, name in SPLIT_FILES.items()
        if split_artifact.file(name).is_file()
    }
    train_frames = sides["train"]
    test_file = split_artifact.file(SPLIT_FILES["test"])

    with tempfile.TemporaryDirectory(prefix="finetune-inputs-") as tmp:
        replay_file = replay.file(REPLAY_FILE) if replay else None
        if replay_file and settings.replay_labels == "pseudo":
            replay_file = _pseudolabel_ready(replay_file, Path(tmp) / "replay_pseudo.xyz")
        inputs = TrainInputs(
            train_file=split_artifact.file(SPLIT_FILES["train"]),
            valid_file=split_artifact.file(SPLIT_FILES["valid"]),
            test_file=test_file if test_file.is_file() else None,
            replay_file=replay_file,
            foundation_model=foundation.file(MODEL_FILE) if foundation and settings.strategy != "scratch" else None,
            foundation=foundation_info(foundation) if foundation else None,
            data_labels=labels_present(train_frames),
            # MACE's element table covers every file it reads, not only the training file.
            data_elements=elements([a for frames in sides.values() for a in frames]),
            n_frames_without_energy=sum(get_label(a, "energy") is None for a in train_frames),
        )
        trainer.check(settings, inputs)  # fail on impossible settings before anything starts

        def fill(d: Path):
            started = utc_now()
            result = trainer.train(settings, inputs, d, context.log.info)
            # The final model is MACE's best checkpoint; the checkpoints themselves stay out.
            shutil.rmtree(d / "checkpoints", ignore_errors=True)
            shutil.rmtree(d / "downloads", ignore_errors=True)
            write_manifest(
                d,
                {
                    "trainer": config.trainer,
                    "foundation": (
                        {
                            "name_or_path": inputs.foundation["origin"],
                            "sha256": inputs.foundation["sha256"],
                        }
                        if inputs.foundation
                        else None
                    ),
                    "strategy": {
                        "strategy": settings.strategy,
                        "freeze": settings.freeze,
                        "lora": settings.lora,
                        "replay_labels": settings.replay_labels if settings.strategy == "multihead" else None,
                    },
                    "heads": list(settings.heads),
                    "e0s": {
                        "mode": settings.e0s,
                        "argument": result.argv[result.argv.index("--E0s") + 1],
                        "foundation_e0s_ev": inputs.foundation["e0s"] if inputs.foundation else None,
                    },
                    "argv": result.argv,
                    "deploy_model": result.deploy_model_path.name,
                    "data_versions": {
                        "split": split_artifact.sha256,
                        "replay_subset": replay.sha256 if replay else None,
                        "foundation_model": foundation.sha256 if foundation else None,
                    },
                    "split_sizes": {side: len(frames) for side, frames in sides.items()},
                    "config": config.model_dump(),
                    "start_time": started,
                    "end_time": utc_now(),
                    "device": settings.device,
                    "epochs_run": result.epochs_run,
                },
            )
            return result

        artifact, result = artifacts.write("finetuned_model", fill)

    # MACE keeps the checkpoint with the lowest validation loss of the target head.
    target = [row for row in result.curve if row["head"] == TARGET_HEAD and row["epoch"] >= 0]
    best = min(target, key=lambda row: row.get("loss", float("inf")), default={})
    return materialized(
        artifact,
        {
            "model_path": dg.MetadataValue.path(str(artifact.file(FINETUNED_FILE))),
            "deploy_model_path": dg.MetadataValue.path(str(artifact.file(result.deploy_model_path.name))),
            "manifest_path": dg.MetadataValue.path(str(artifact.file(MANIFEST_FILE))),
            "strategy": settings.strategy,
            "epochs_run": result.epochs_run,
            "heads": dg.MetadataValue.json(list(settings.heads)),
            "lr": settings.learning_rate,
            "device": settings.device,
            "best_epoch": best.get("epoch", -1),
            "valid_rmse_e_mev_per_atom_best": 1000 * best.get("rmse_e_per_atom", float("nan")),
            "valid_rmse_f_mev_per_a_best": 1000 * best.get("rmse_f", float("nan")),
            "learning_curve": _curve_table(result.curve),
            "mace_command": dg.MetadataValue.md("```\n" + " ".join(result.argv) + "\n```"),
        },
    )
