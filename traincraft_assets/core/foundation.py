"""Foundation models and their pretraining pools: where they come from, staged once.

Named models are fetched with MACE's own downloader into MACE's cache (so a cache seeded by
hand works offline) and then copied into the artifact store, where cluster pods read them:
GPU pods never download.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import ase.data
from ase import Atoms

from traincraft_assets.core import demo
from traincraft_assets.core.artifacts import FoundationModel
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.labelling import LabelOptions, prelabelled
from traincraft_assets.core.paths import input_path, path_problems
from traincraft_assets.core.store import file_sha256
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

PoolSource = Literal["demo", "file", "named"]
FoundationSource = Literal["demo", "scratch", "path", "named"]


@dataclass
class PoolSettings:
    source: PoolSource = "demo"
    path: str | None = field(
        default=None, metadata=input_path("source 'file': any ASE-readable file with energy/forces labels")
    )
    name: str | None = field(default=None, metadata={"help": f"source 'named': {' | '.join(NAMED_REPLAY_SETS)}"})
    heldout_path: str | None = field(
        default=None,
        metadata=input_path(
            "frames from the foundation's distribution that it never trained on, to measure "
            "forgetting (source 'demo' makes its own); without them, unselected pool frames are used"
        ),
    )
    demo_frames_per_metal: int = demo.POOL_FRAMES_PER_METAL
    seed: int = 0


@dataclass
class Pool:
    frames: list[Atoms]
    heldout: list[Atoms]  # never in the foundation's training; may be empty
    origin: str


@dataclass
class FoundationSettings:
    source: FoundationSource = "demo"
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


def load_pool(settings: PoolSettings) -> Pool:
    """The replay pool and the frames held out from the foundation's training, labels under
    REF_* keys, and where they came from."""
    if settings.source == "demo":
        return Pool(
            demo.pretraining_frames(settings.demo_frames_per_metal, settings.seed),
            demo.pretraining_frames(demo.HELDOUT_FRAMES_PER_METAL, settings.seed, heldout=True),
            f"demo (EMT bulk, strained, surfaces, vacancies of {', '.join(demo.PRETRAINING_METALS)})",
        )
    if settings.source == "file":
        if not settings.path:
            raise ValueError("pretraining frames from source 'file' need `path`.")
        source = Path(settings.path)
    else:
        if not settings.name:
            raise ValueError("pretraining frames from source 'named' need `name` (e.g. mp).")
        source = fetch_named_replay_set(settings.name)
    heldout = prelabelled(read_frames(settings.heldout_path), LabelOptions()) if settings.heldout_path else []
    return Pool(prelabelled(read_frames(source), LabelOptions()), heldout, str(source))


def stage_foundation(
    settings: FoundationSettings, pool: Path | None, out: FoundationModel, on_output: Callable[[str], None]
) -> dict:
    """Copy (or, from scratch, train on `pool`) the model into `out`, with foundation.json
    describing it; return that description. A file that is not a MACE model is refused, naming
    it, before anything is copied."""
    made = {}
    if settings.source == "scratch":
        if pool is None:
            raise ValueError("a foundation from scratch is trained on a pretraining pool; none was given.")
        # MACE's checkpoints and logs stay out of the artifact: only the model is kept.
        with tempfile.TemporaryDirectory(dir=out.path.parent, prefix="foundation-train-") as scratch:
            model = demo.train_foundation(pool, settings.scratch, Path(scratch), on_output).model_path
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
        return _described(str(model.resolve()), model.stat().st_mtime_ns), []
    except (OSError, ValueError) as exc:
        return None, [str(exc)]


@functools.lru_cache(maxsize=8)
def _described(path: str, mtime_ns: int) -> dict:
    """describe_model, once per file version in a process: every step of a run previews."""
    return describe_model(path)


REPLAY_HEAD = "pt_head"


def model_head(heads) -> str:
    """The head MACE fine-tunes from and deploys: the first that is not the replay head
    (mace.tools.scripts_utils.remove_pt_head's rule). Single-head models have "Default"."""
    heads = list(heads)
    return next((h for h in heads if h != REPLAY_HEAD), heads[0])


def describe_model(model_path: str | Path) -> dict:
    """What the rest of the graph needs to know about a MACE model, read from the file itself."""
    import mace  # noqa: F401  (sets torch.load defaults MACE models need)
    import torch

    expected = (
        "Expected a .model file written by MACE (mace_run_train's <name>.model or a downloaded "
        "foundation); a checkpoint (.pt) or a state_dict will not do."
    )
    try:
        model = torch.load(str(model_path), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises pickle, zip and IO errors alike for a foreign file
        raise ValueError(
            f"{model_path}: not a MACE model; torch could not load it ({type(exc).__name__}). {expected}"
        ) from exc
    missing = [name for name in ("atomic_numbers", "atomic_energies_fn", "r_max") if not hasattr(model, name)]
    if missing:
        raise ValueError(f"{model_path}: not a MACE model: a {type(model).__name__} without {missing}. {expected}")
    numbers = [int(z) for z in model.atomic_numbers]
    e0s = model.atomic_energies_fn.atomic_energies.detach().cpu().numpy()
    heads = list(getattr(model, "heads", ["Default"]))
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    # E0s are stored per head ([n_heads, n_elements]) in recent MACE, flat in older models.
    e0_rows = e0s.reshape(len(heads), -1) if e0s.ndim == 2 else e0s.reshape(1, -1)
    head = model_head(heads)
    row = e0_rows[heads.index(head)] if len(e0_rows) == len(heads) else e0_rows[0]
    return {
        "shape": _shape(model),
        "model_class": type(model).__name__,
        "atomic_numbers": numbers,
        "elements": [ase.data.chemical_symbols[z] for z in numbers],
        "r_max": float(model.r_max),
        "heads": heads,
        "head": head,
        "dtype": dtype,
        "e0s": {str(z): float(e) for z, e in zip(numbers, row)},
    }


def _shape(model) -> dict | None:
    """The architecture as core.training.mace.ModelShape's fields (to train another model like
    it from scratch), read with MACE's own extractor; None for a model it cannot read."""
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(model)
    if "error" in config:
        return None
    correlation = config["correlation"]
    return {
        "num_channels": int(config["hidden_irreps"][0].mul),
        "max_L": int(config["hidden_irreps"].lmax),
        "r_max": float(config["r_max"]),
        "num_interactions": int(config["num_interactions"]),
        "correlation": int(correlation[0] if isinstance(correlation, (list, tuple)) else correlation),
    }
