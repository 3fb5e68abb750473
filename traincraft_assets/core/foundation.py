"""Foundation models and their pretraining pools: where they come from, staged once.

Named models are fetched with MACE's own downloader into MACE's cache (so a cache seeded by
hand works offline) and then copied into the artifact store, where cluster pods read them:
GPU pods never download.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from ase import Atoms

from traincraft_assets.core import demo
from traincraft_assets.core.artifacts import FoundationModel
from traincraft_assets.core.frames import (
    FrameTally,
    chunks,
    elements,
    fingerprint,
    frame_writer,
    iter_frames,
    level_of,
    read_frames,
    write_frames,
)
from traincraft_assets.core.labelling import LabelOptions, prelabelled
from traincraft_assets.core.models import describe_file, describe_model
from traincraft_assets.core.paths import input_path, path_problems
from traincraft_assets.core.split import split_frames
from traincraft_assets.core.store import file_sha256
from traincraft_assets.core.training import Launch, TrainInputs, TrainResult, get_trainer
from traincraft_assets.core.training.mace import TrainSettings

# MACE fetches these inside run_train (mace/tools/multihead_tools.py) without exposing the
# table; kept in step with mace-torch 0.3.16.
NAMED_REPLAY_SETS = {
    "mp": "https://github.com/ACEsuit/mace-foundations/releases/download/mace_mp_0b/mp_traj_combined.xyz",
    "matpes_pbe": "https://github.com/ACEsuit/mace-foundations/releases/download/mace_matpes_0/matpes-pbe-replay-data.xyz",
    "matpes_r2scan": "https://github.com/ACEsuit/mace-foundations/releases/download/mace_matpes_0/matpes-r2scan-replay-data.extxyz",
    "omat": "https://github.com/ACEsuit/mace-foundations/releases/download/mace_omat_0/mp_traj_combined_omat.xyz",
}
MODEL_ALIASES = {"mp0": "medium", "mace-mp-0": "medium"}

PoolSource = Literal["demo", "file", "named", "batches"]
FoundationSource = Literal["demo", "scratch", "path", "named"]


@dataclass
class PoolSettings:
    source: PoolSource = field(
        default="demo",
        metadata={
            "help": "demo: EMT frames made here; file: path; named: one of MACE's replay sets; batches: the "
            "labelled batches' frames at `level` (pre-training on a cheap level of theory)"
        },
    )
    path: str | None = field(
        default=None, metadata=input_path("source 'file': any ASE-readable file with energy/forces labels")
    )
    name: str | None = field(default=None, metadata={"help": f"source 'named': {' | '.join(NAMED_REPLAY_SETS)}"})
    level: str | None = field(
        default=None,
        metadata={
            "help": "source 'batches': the level of theory to pre-train on; the pool is the labelled batches' "
            "frames at this level whose structure no other level labels (those the fine-tuned model trains, "
            "validates and is tested on stay out of pre-training)"
        },
    )
    heldout_path: str | None = field(
        default=None,
        metadata=input_path(
            "frames from the foundation's distribution that it never trained on, to measure "
            "forgetting (source 'demo' makes its own); without them, unselected pool frames are used"
        ),
    )
    demo_frames_per_metal: int = field(
        default=demo.POOL_FRAMES_PER_METAL,
        metadata={"help": "source 'demo': EMT frames per metal (100: the pool the shipped foundation trained on)"},
    )
    seed: int = field(default=0, metadata={"help": "source 'demo': the generator's seed"})


@dataclass
class StagedPool:
    origin: str
    summary: dict  # frames.summarize's numbers for the pool
    n_heldout: int  # frames never in the foundation's training; may be 0


@dataclass
class FoundationSettings:
    source: FoundationSource = field(
        default="demo",
        metadata={"help": "demo: the shipped demo foundation; scratch: train one here on the pool; path; named"},
    )
    path: str | None = field(default=None, metadata=input_path("source 'path': a MACE .model file"))
    name: str | None = field(
        default=None, metadata={"help": "source 'named': a MACE foundation name (small, medium, large, ...)"}
    )
    # source 'scratch': a MACE trained here on the pretraining pool, by default as the shipped
    # demo foundation was (source 'demo' copies that one)
    scratch: TrainSettings = field(default_factory=lambda: replace(demo.DEMO_FOUNDATION))


def scratch_recipe(settings: FoundationSettings, pool_sha256: str) -> str:
    """What a foundation trained here is made from: its training settings and its pool. Two
    trainings of one recipe differ only by float noise, so the store keeps the first."""
    blob = json.dumps({"scratch": asdict(settings.scratch), "pool": pool_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def named_models() -> list[str]:
    from mace.calculators.foundations_models import mace_mp_urls

    return sorted(mace_mp_urls) + sorted(MODEL_ALIASES)


def canonical_model_name(name: str) -> str:
    return MODEL_ALIASES.get(name, name)


def fetch_named_model(name: str) -> Path:
    """Local path of a named MACE foundation, downloading it into MACE's cache if needed."""
    from mace.calculators.foundations_models import download_mace_mp_checkpoint, mace_mp_urls

    name = canonical_model_name(name)
    if name not in mace_mp_urls:
        raise ValueError(
            f"unknown MACE foundation {name!r}; expected one of {named_models()} or a path to a "
            ".model file (source: path)."
        )
    try:
        return Path(download_mace_mp_checkpoint(name))
    except Exception as exc:
        raise RuntimeError(
            f"could not download MACE foundation {name!r} from {mace_mp_urls[name]} ({exc}). "
            "On a machine without internet, download it elsewhere and place it at "
            f"{mace_cache_path(mace_mp_urls[name])}, or use source: path."
        ) from exc


def mace_cache_path(url: str) -> Path:
    """Where MACE caches a download: its cache dir, the URL's file name stripped to [A-Za-z0-9_]."""
    from mace.tools.utils import get_cache_dir

    return Path(get_cache_dir()) / "".join(c for c in os.path.basename(url) if c.isalnum() or c == "_")


def fetch_named_replay_set(name: str) -> Path:
    """Local path of a named replay set, at the cache path MACE itself would use."""
    if name not in NAMED_REPLAY_SETS:
        raise ValueError(f"unknown replay set {name!r}; expected one of {sorted(NAMED_REPLAY_SETS)}.")
    url = NAMED_REPLAY_SETS[name]
    cached = mace_cache_path(url)
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".part")
        try:
            urllib.request.urlretrieve(url, partial)
        except Exception as exc:
            raise RuntimeError(
                f"could not download replay set {name!r} from {url} ({exc}). Without internet, "
                f"place the file at {cached}, or use source: file."
            ) from exc
        os.replace(partial, cached)
    return cached


def stage_pool(
    settings: PoolSettings, frames_path: Path, heldout_path: Path, batches: Sequence[Path] = ()
) -> StagedPool:
    """Write the replay pool to `frames_path` and its held-out frames to `heldout_path` (left
    absent when there are none), labels under REF_* keys. A file or named pool is copied chunk by
    chunk, so a pool of any size (MACE's `mp`) is never held whole. Source 'batches' reads the
    labelled `batches`."""
    if settings.source == "batches":
        return _stage_level(settings.level, batches, frames_path)
    if settings.source == "demo":
        pool = _copy_frames(demo.pretraining_frames(settings.demo_frames_per_metal, settings.seed), frames_path)
        heldout = demo.pretraining_frames(demo.HELDOUT_FRAMES_PER_METAL, settings.seed, heldout=True)
        n_heldout = _copy_frames(heldout, heldout_path).n_frames
        origin = f"demo (EMT bulk, strained, surfaces, vacancies of {', '.join(demo.PRETRAINING_METALS)})"
        return StagedPool(origin, pool.summary(), n_heldout)
    if settings.source == "file":
        if not settings.path:
            raise ValueError("pretraining frames from source 'file' need `path`.")
        source = Path(settings.path)
    else:
        if not settings.name:
            raise ValueError("pretraining frames from source 'named' need `name` (e.g. mp).")
        source = fetch_named_replay_set(settings.name)
    pool = _copy_frames(iter_frames(source), frames_path, relabel=True)
    n_heldout = 0
    if settings.heldout_path:
        n_heldout = _copy_frames(iter_frames(settings.heldout_path), heldout_path, relabel=True).n_frames
    return StagedPool(str(source), pool.summary(), n_heldout)


def pool_problems(settings: PoolSettings, levels: dict[str, int] | None) -> list[str]:
    """What would stop staging, known before the run: a pool of batches without a level, or with
    one the labelled batches (`levels`: level -> frames, None before any is labelled) lack."""
    if settings.source != "batches":
        return []
    listed = ", ".join(f"{name!r} ({n} frames)" for name, n in (levels or {}).items())
    if settings.level is None:
        return [
            f"source 'batches' pre-trains on one level of theory: set `level`{f', one of: {listed}' if listed else ''}."
        ]
    if levels and settings.level not in levels:
        return [f"level {settings.level!r} is not in the labelled batches; their levels of theory: {listed}."]
    return []


def _stage_level(level: str | None, batches: Sequence[Path], frames_path: Path) -> StagedPool:
    """The labelled batches' frames at `level` whose structure no other level labels, each
    structure once. The sequential multi-fidelity recipe pre-trains on a cheap level; structures
    also labelled at another (the expensive) level are the ones the fine-tuned model trains,
    validates and is tested on, so they stay out of pre-training, as in the study's disjoint
    subsets."""
    levels: Counter = Counter()
    elsewhere: set[str] = set()
    for path in batches:
        for atoms in iter_frames(path):
            levels[level_of(atoms)] += 1
            if level_of(atoms) != level:
                elsewhere.add(fingerprint(atoms))
    listed = ", ".join(f"{name!r} ({n} frames)" for name, n in sorted(levels.items()))
    if level is None or level not in levels:
        found = "needs `level`" if level is None else f"found no frame at level {level!r}"
        raise ValueError(f"pretraining frames from source 'batches' {found}; the labelled batches' levels: {listed}.")
    kept: set[str] = set()

    def only_here() -> Iterator[Atoms]:
        for path in batches:
            for atoms in iter_frames(path):
                key = fingerprint(atoms)
                if level_of(atoms) == level and key not in elsewhere and key not in kept:
                    kept.add(key)
                    yield atoms

    pool = _copy_frames(only_here(), frames_path)
    if not pool.n_frames:
        raise ValueError(
            f"every structure at level {level!r} is also labelled at another level, so none is left to pre-train "
            "on without training on the fine-tuned model's own structures; label other structures at this level."
        )
    return StagedPool(f"labelled batches at level {level!r}", pool.summary(), 0)


def _copy_frames(frames: Iterable[Atoms], path: Path, relabel: bool = False) -> FrameTally:
    """Append `frames` to `path` a chunk at a time (labels moved to REF_* with `relabel`),
    tallying them on the way."""
    tally = FrameTally()
    with frame_writer(path) as write:
        for chunk in chunks(frames):
            chunk = prelabelled(chunk, LabelOptions()) if relabel else chunk
            tally.add(chunk)
            write(chunk)
    return tally


def train_from_scratch(
    pool: Path, settings: TrainSettings, launch: Launch, workdir: Path, on_output: Callable[[str], None]
) -> TrainResult:
    """Train a MACE from scratch on the pool file: 90% to train on, 10% to validate (a stable
    split of its own), on the labels the pool carries."""
    frames = read_frames(pool)
    sides = split_frames(frames, valid_fraction=0.1, salt="demo-foundation")
    files = {}
    for side in ("train", "valid"):
        files[side] = workdir / f"{side}.xyz"
        write_frames(files[side], [frames[i] for i in sides[side]])
    facts = FrameTally().add(frames[i] for i in sides["train"]).summary()
    inputs = TrainInputs(
        train_file=files["train"],
        valid_file=files["valid"],
        data_labels=tuple(facts["labels"]),
        data_elements=elements(frames),
        data_levels=facts["levels_of_theory"],
    )
    return get_trainer("mace").train(settings, inputs, launch, workdir / "mace", on_output, "foundation")


def stage_foundation(
    settings: FoundationSettings,
    pool: Path | None,
    out: FoundationModel,
    on_output: Callable[[str], None],
    launch: Launch,
) -> dict:
    """Copy (or, from scratch, train on `pool`, started as `launch` says) the model into `out`,
    with foundation.json describing it; return that description. A file that is not a MACE
    model is refused, naming it, before anything is copied."""
    made = {}
    if settings.source == "scratch":
        if pool is None:
            raise ValueError("a foundation from scratch is trained on a pretraining pool; none was given.")
        # MACE's checkpoints and logs stay out of the artifact: only the model is kept.
        with tempfile.TemporaryDirectory(dir=out.path.parent, prefix="foundation-train-") as scratch:
            model = train_from_scratch(pool, settings.scratch, launch, Path(scratch), on_output).model_path
            shutil.copyfile(model, out.model_path)
        origin, source = "scratch", out.model_path
    elif settings.source == "demo":
        shipped = demo.SHIPPED_FOUNDATION_DIR
        if not (shipped / "foundation.model").is_file():
            raise FileNotFoundError(
                f"the shipped demo foundation is missing from {shipped}: a broken install. Reinstall "
                "traincraft_assets, remake it (python -m traincraft_assets.demo.make_foundation), or "
                "use source: scratch."
            )
        manifest = json.loads((shipped / "manifest.json").read_text())
        made = {key: manifest[key] for key in ("remake", "pool", "heldout_errors", "wall_time_s", "machine")}
        origin, source = f"demo (shipped: {shipped})", shipped / "foundation.model"
    elif settings.source == "path":
        if not settings.path:
            raise ValueError("a foundation from source 'path' needs `path` to a .model file.")
        source = Path(settings.path).absolute()
        if not source.is_file():
            raise FileNotFoundError(f"foundation_model path {source}: no such file. Expected a MACE .model file.")
        origin = str(source)
    else:
        if not settings.name:
            raise ValueError("a foundation from source 'named' needs `name` (e.g. medium).")
        source, origin = fetch_named_model(settings.name), canonical_model_name(settings.name)
    described = describe_model(source)
    if source != out.model_path:
        shutil.copyfile(source, out.model_path)
    info = {
        "source": settings.source,
        "origin": origin,
        "sha256": file_sha256(out.model_path),
        **described,
        **({"made": made} if made else {}),
    }
    out.info_path.write_text(json.dumps(info, indent=1))
    return info


def foundation_preview(settings: FoundationSettings, roots: Sequence[Path]) -> tuple[dict | None, list[str]]:
    """What staging with `settings` will give, known before it runs: the model's description
    (None when the run trains or downloads it) and the problems that would stop staging."""
    problems = path_problems(settings, roots)
    if settings.source == "path" and not settings.path:
        problems.append("source 'path' needs `path` to a MACE .model file.")
    if settings.source == "named" and not settings.name:
        problems.append("source 'named' needs `name` (e.g. medium).")
    if problems:
        return None, problems
    if settings.source == "path":
        model = Path(settings.path)
    elif settings.source == "demo":
        model = demo.SHIPPED_FOUNDATION_DIR / "foundation.model"
    elif settings.source == "named":
        from mace.calculators.foundations_models import mace_mp_urls

        url = mace_mp_urls.get(canonical_model_name(settings.name))
        if url is None:
            return None, [f"unknown MACE foundation {settings.name!r}; expected one of {named_models()}."]
        model = mace_cache_path(url)
        if not model.is_file():
            return None, []  # downloaded by the run
    else:
        return None, []  # trained by the run
    try:
        return describe_file(model), []
    except (OSError, ValueError) as exc:
        return None, [str(exc)]
