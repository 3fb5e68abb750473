"""Foundation-side assets: pretraining_frames (the replay pool), foundation_model, replay_subset."""


import json
import tempfile
from pathlib import Path
from typing import Literal, Optional

import dagster as dg

from traincraft_assets.core import demo
from traincraft_assets.core.foundation import (
    canonical_model_name,
    copy_into,
    describe_model,
    fetch_named_model,
    fetch_named_replay_set,
)
from traincraft_assets.core.frames import elements, read_frames, summarize, write_frames
from traincraft_assets.core.labelling import LabelOptions, prelabelled
from traincraft_assets.core.mace_train import ModelShape, TrainInputs, TrainSettings, resolve_device
from traincraft_assets.core.replay import select_replay
from traincraft_assets.core.split import split_frames
from traincraft_assets.core.store import file_sha256
from traincraft_assets.core.trainers import get_trainer
from traincraft_assets.defs.data import DATASET_FILE, dataset
from traincraft_assets.defs.k8s import GPU_STEP_TAGS
from traincraft_assets.defs.resources import StoreResource, materialized, require_artifact

POOL_FILE = "pool.xyz"
MODEL_FILE = "foundation.model"
FOUNDATION_INFO = "foundation.json"
REPLAY_FILE = "replay.xyz"
HELDOUT_FILE = "heldout.xyz"


class PretrainingFramesConfig(dg.Config):
    source: Literal["demo", "file", "named"] = "demo"
    path: Optional[str] = None  # source 'file': any ASE-readable file with energy/forces labels
    name: Optional[str] = None  # source 'named': mp | matpes_pbe | matpes_r2scan | omat
    demo_frames_per_metal: int = 40
    seed: int = 0


@dg.asset(code_version="1", group_name="foundation", kinds={"ase"})
def pretraining_frames(
    context: dg.AssetExecutionContext, config: PretrainingFramesConfig, store: StoreResource
) -> dg.MaterializeResult:
    """The pool replay frames are drawn from, staged once into the store, labels as REF_*."""
    if config.source == "demo":
        frames = demo.pretraining_frames(config.demo_frames_per_metal, config.seed)
        origin = f"demo (EMT bulk {', '.join(demo.PRETRAINING_METALS)})"
    else:
        if config.source == "file":
            if not config.path:
                raise ValueError("pretraining_frames source 'file' needs `path`.")
            source = Path(config.path)
        else:
            if not config.name:
                raise ValueError("pretraining_frames source 'named' needs `name` (e.g. mp).")
            source = fetch_named_replay_set(config.name)
        context.log.info(f"reading pretraining frames from {source}")
        frames = prelabelled(read_frames(source), LabelOptions())
        origin = str(source)
    artifact, _ = store.store().write("pretraining_frames", lambda d: write_frames(d / POOL_FILE, frames))
    summary = summarize(frames)
    return materialized(
        artifact,
        {
            "source": origin,
            "n_frames": summary["n_frames"],
            "n_atoms": summary["n_atoms"],
            "elements": dg.MetadataValue.json(summary["elements"]),
            "labels": dg.MetadataValue.json(summary["labels"]),
        },
    )


class FoundationConfig(dg.Config):
    source: Literal["demo", "path", "named"] = "demo"
    path: Optional[str] = None  # source 'path': a MACE .model file
    name: Optional[str] = None  # source 'named': small | medium | large | medium-mpa-0 | ...
    # source 'demo': a small MACE trained from scratch on pretraining_frames
    dtype: Literal["float32", "float64"] = "float64"
    max_num_epochs: int = 20
    num_channels: int = 32
    max_L: int = 0
    r_max: float = 4.5
    num_interactions: int = 2
    correlation: int = 2
    batch_size: int = 10
    lr: float = 0.01
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


def _train_demo_foundation(context, config: FoundationConfig, pool_path: Path, workdir: Path) -> Path:
    frames = read_frames(pool_path)
    sides = split_frames(frames, valid_fraction=0.1, salt="demo-foundation")
    files = {}
    for side in ("train", "valid"):
        files[side] = workdir / f"{side}.xyz"
        write_frames(files[side], [frames[i] for i in sides[side]])
    settings = TrainSettings(
        strategy="scratch",
        heads=("energy", "forces", "stress"),
        e0s="average",  # one labeller (EMT) for all frames: fitted E0s are consistent here
        ema_decay=0.99,
        energy_weight=1.0,
        forces_weight=10.0,
        stress_weight=10.0,
        lr=config.lr,
        batch_size=config.batch_size,
        max_num_epochs=config.max_num_epochs,
        device=resolve_device(config.device),
        dtype=config.dtype,
        seed=config.seed,
        shape=ModelShape(
            num_channels=config.num_channels,
            max_L=config.max_L,
            r_max=config.r_max,
            num_interactions=config.num_interactions,
            correlation=config.correlation,
        ),
    )
    inputs = TrainInputs(
        train_file=files["train"],
        valid_file=files["valid"],
        data_labels=("energy", "forces", "stress"),
        data_elements=elements(frames),
    )
    result = get_trainer("mace").train(settings, inputs, workdir / "mace", context.log.info)
    return result.model_path


@dg.asset(
    deps=[pretraining_frames],
    code_version="1",
    group_name="foundation",
    kinds={"pytorch"},
    op_tags=GPU_STEP_TAGS,
)
def foundation_model(
    context: dg.AssetExecutionContext, config: FoundationConfig, store: StoreResource
) -> dg.MaterializeResult:
    """The model to fine-tune, staged once into the store so training pods never download it."""
    artifacts = store.store()

    def fill(d: Path):
        if config.source == "demo":
            pool = require_artifact(context, artifacts, "pretraining_frames").file(POOL_FILE)
            # MACE's checkpoints and logs stay out of the artifact: only the model is kept.
            with tempfile.TemporaryDirectory(dir=d.parent, prefix="foundation-train-") as scratch:
                model = _train_demo_foundation(context, config, pool, Path(scratch))
                copy_into(model, d, MODEL_FILE)
            origin = "demo"
        elif config.source == "path":
            if not config.path:
                raise ValueError("foundation_model source 'path' needs `path` to a .model file.")
            copy_into(Path(config.path), d, MODEL_FILE)
            origin = str(Path(config.path).absolute())
        else:
            if not config.name:
                raise ValueError("foundation_model source 'named' needs `name` (e.g. medium).")
            copy_into(fetch_named_model(config.name), d, MODEL_FILE)
            origin = canonical_model_name(config.name)
        info = {
            "source": config.source,
            "origin": origin,
            "sha256": file_sha256(d / MODEL_FILE),
            **describe_model(d / MODEL_FILE),
        }
        (d / FOUNDATION_INFO).write_text(json.dumps(info, indent=1))
        return info

    artifact, info = artifacts.write("foundation_model", fill)
    return materialized(
        artifact,
        {
            "origin": info["origin"],
            "model_path": dg.MetadataValue.path(str(artifact.file(MODEL_FILE))),
            "model_sha256": info["sha256"],
            "model_class": info["model_class"],
            "elements": dg.MetadataValue.json(info["elements"]),
            "dtype": info["dtype"],
            "r_max": info["r_max"],
            "heads": dg.MetadataValue.json(info["heads"]),
        },
    )


def foundation_info(artifact) -> dict:
    return json.loads(artifact.file(FOUNDATION_INFO).read_text())


class ReplayConfig(dg.Config):
    num_samples: int = 10000  # MACE's guide: as many as affordable (~30000 with mp)
    subselect: Literal["fps", "random"] = "fps"
    filtering: Literal["combinations", "exclusive", "inclusive", "none"] = "combinations"
    num_heldout: int = 200  # filtered but unselected frames kept to measure forgetting
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dg.asset(
    deps=[pretraining_frames, dataset, foundation_model],
    code_version="1",
    group_name="foundation",
    kinds={"ase"},
)
def replay_subset(
    context: dg.AssetExecutionContext, config: ReplayConfig, store: StoreResource
) -> dg.MaterializeResult:
    """Replay frames for the dataset's elements, chosen here because MACE uses a replay file whole."""
    artifacts = store.store()
    pool = read_frames(require_artifact(context, artifacts, "pretraining_frames").file(POOL_FILE))
    target_elements = elements(read_frames(require_artifact(context, artifacts, "dataset").file(DATASET_FILE)))
    foundation = require_artifact(context, artifacts, "foundation_model")
    info = foundation_info(foundation)
    selection = select_replay(
        pool,
        target_elements,
        num_samples=config.num_samples,
        subselect=config.subselect,
        filtering=config.filtering,
        foundation_model=str(foundation.file(MODEL_FILE)),
        num_heldout=config.num_heldout,
        seed=config.seed,
        device=resolve_device(config.device),
        dtype=info["dtype"],
    )
    if len(selection.selected) < config.num_samples:
        context.log.warning(
            f"asked for {config.num_samples} replay frames but only {selection.n_filtered} of the "
            f"{selection.n_pool} pretraining frames pass filtering {config.filtering!r}; using "
            f"{len(selection.selected)}."
        )

    def fill(d):
        write_frames(d / REPLAY_FILE, selection.selected)
        if selection.heldout:
            write_frames(d / HELDOUT_FILE, selection.heldout)

    artifact, _ = artifacts.write("replay_subset", fill)
    return materialized(
        artifact,
        {
            "n_selected": len(selection.selected),
            "n_heldout": len(selection.heldout),
            "n_pool": selection.n_pool,
            "n_after_filtering": selection.n_filtered,
            "elements": dg.MetadataValue.json(elements(selection.selected)),
            "subselect": config.subselect,
            "filtering": config.filtering,
        },
    )
