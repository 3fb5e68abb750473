"""Foundation-side assets: pretraining_frames (the replay pool), foundation_model, replay_subset."""

import dagster as dg

from traincraft_assets.core.artifacts import Dataset, FoundationModel, LabelledFrames, PretrainingFrames, ReplaySubset
from traincraft_assets.core.demo import DEMO_FOUNDATION_OPTIONS
from traincraft_assets.core.foundation import (
    FoundationSettings,
    PoolSettings,
    foundation_preview,
    pool_problems,
    scratch_recipe,
    stage_foundation,
    stage_pool,
)
from traincraft_assets.core.frames import FrameTally, elements, iter_frames, write_frames
from traincraft_assets.core.replay import ReplaySettings, descriptor_cache, select_replay
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.data.assets import latest_batches, summary_metadata
from traincraft_assets.defs.steps import EveryPartition, Step, artifact_asset

PretrainingFramesConfig = settings_config(
    "PretrainingFramesConfig",
    PoolSettings,
    "The replay pool: the demo generator, a file, a MACE named set, or the labelled batches at one level of theory.",
)


@artifact_asset(
    PretrainingFrames,
    reads=[EveryPartition(LabelledFrames)],
    config=PretrainingFramesConfig,
    preflight=lambda config, run: pool_problems(config.to_settings(), run.data and run.data.levels),
    group_name="foundation",
    kinds={"ase"},
)
def pretraining_frames(step: Step, config) -> dg.MaterializeResult:
    """The pool replay frames are drawn from, and frames held out from the foundation's training,
    staged once into the store, labels as REF_*, chunk by chunk: a pool of any size fits. Only
    source 'batches' reads the labelled batches (a foundation pre-trained on a cheap level of
    theory); it cannot read the split, which waits on checks against the foundation."""
    settings = config.to_settings()
    batches = latest_batches(step) if settings.source == "batches" else None
    paths = [b.frames_path for b in batches.labelled] if batches else []
    with step.refusing(ValueError):  # a level the batches lack: a retry would find the same batches
        artifact, staged = step.write(lambda out: stage_pool(settings, out.frames_path, out.heldout_path, paths))
    step.log.info(
        f"staged {staged.summary['n_frames']} pretraining frames and {staged.n_heldout} held-out frames "
        f"from {staged.origin}"
    )
    return step.materialized(
        artifact,
        {
            "source": staged.origin,
            "n_heldout": staged.n_heldout,
            **summary_metadata(staged.summary),
            **({"batches": dg.MetadataValue.json(batches.used)} if batches else {}),
        },
    )


FoundationConfig = settings_config(
    "FoundationConfig",
    FoundationSettings,
    "The model to fine-tune: the shipped demo foundation, a path, a MACE named foundation, or a "
    "MACE trained here from scratch on the pretraining pool.",
    only=("source", "path", "name", "heads", *DEMO_FOUNDATION_OPTIONS),
)


def _trained_before(step: Step, recipe: str):
    """The latest materialization of this recipe and its model, if the store still holds it."""
    earlier = instance.latest_with(step.context.instance, FoundationModel.asset, "recipe", recipe)
    if earlier is None:
        return None, None
    try:
        return earlier, step.open(FoundationModel, instance.version_of(earlier))
    except FileNotFoundError:  # the store was cleaned since: train it again
        return None, None


@artifact_asset(
    FoundationModel,
    reads=[PretrainingFrames],
    config=FoundationConfig,
    preflight=lambda config, run: foundation_preview(config.to_settings(), run.roots)[1],
    profile="gpu",
    group_name="foundation",
    kinds={"pytorch"},
)
def foundation_model(step: Step, config) -> dg.MaterializeResult:
    """The model to fine-tune, staged once into the store so training pods never download it.
    A foundation trained here is trained once per recipe (settings and pool): materializing it
    again (`--select 'not group:comparison and not group:loop and not group:spectra'`) re-records the stored one instead of retraining."""
    settings = config.to_settings()
    pool = step.read(PretrainingFrames) if settings.source == "scratch" else None
    recipe = scratch_recipe(settings, pool.sha256) if pool else None
    earlier, artifact = _trained_before(step, recipe) if recipe else (None, None)
    if artifact is not None:
        step.log.info(
            f"this foundation's recipe (settings and pool) was trained in run {earlier.run_id}; reusing its "
            f"model {artifact.sha256[:12]} instead of training again. Change `seed` or any setting to train a new one."
        )
        metadata = {
            k: v
            for k, v in earlier.asset_materialization.metadata.items()
            if k not in ("artifact_path", "artifact_sha256", "read_artifacts")
        }
        return step.materialized(artifact, {**metadata, "reused_from_run": earlier.run_id})
    with step.refusing(ValueError, FileNotFoundError), step.training():  # wrong input: a retry would not help
        artifact, info = step.write(
            lambda out: stage_foundation(settings, pool and pool.frames_path, out, step.log.info, step.launch)
        )
    return step.materialized(
        artifact,
        {
            "origin": info["origin"],
            "model_path": dg.MetadataValue.path(str(artifact.model_path)),
            "model_sha256": info["sha256"],
            "model_class": info["model_class"],
            "elements": dg.MetadataValue.json(info["elements"]),
            "dtype": info["dtype"],
            "r_max": info["r_max"],
            "heads": dg.MetadataValue.json(info["heads"]),
            **({"recipe": recipe} if recipe else {}),
        },
    )


ReplayConfig = settings_config(
    "ReplayConfig", ReplaySettings, "How replay frames are chosen from the pool for the dataset's elements."
)


@artifact_asset(
    ReplaySubset,
    reads=[PretrainingFrames, Dataset, FoundationModel],
    config=ReplayConfig,
    group_name="foundation",
    kinds={"ase"},
)
def replay_subset(step: Step, config) -> dg.MaterializeResult:
    """Replay frames for the dataset's elements, chosen here because MACE uses a replay file whole."""
    settings = config.to_settings()
    pretraining = step.read(PretrainingFrames)
    heldout_pool = pretraining.heldout_path if pretraining.heldout_path.is_file() else None
    target_elements = FrameTally().add(iter_frames(step.read(Dataset).frames_path)).summary()["elements"]
    foundation = step.read(FoundationModel)
    selection = select_replay(
        pretraining.frames_path,
        target_elements,
        settings,
        str(foundation.model_path),
        foundation.info["dtype"],
        heldout_pool,
        descriptor_cache(step.store.root),
    )
    for note in selection.notes:
        step.log.info(note)
    if len(selection.selected) < settings.num_samples:
        step.log.warning(
            f"asked for {settings.num_samples} replay frames but only {selection.n_filtered} of the "
            f"{selection.n_pool} pretraining frames pass filtering {settings.filtering!r}; using "
            f"{len(selection.selected)}."
        )

    def fill(out: ReplaySubset):
        write_frames(out.selected_path, selection.selected)
        if selection.heldout:
            write_frames(out.heldout_path, selection.heldout)

    artifact, _ = step.write(fill)
    return step.materialized(
        artifact,
        {
            "n_selected": len(selection.selected),
            "n_heldout": len(selection.heldout),
            "heldout_source": selection.heldout_source,
            "n_pool": selection.n_pool,
            "n_after_filtering": selection.n_filtered,
            "elements": dg.MetadataValue.json(elements(selection.selected)),
            "subselect": settings.subselect,
            "filtering": settings.filtering,
        },
    )
