"""MACE model files: loading one, describing what it is, and naming its heads.

Every module that opens a `.model` file goes through `load_model`, so the one thing MACE's
pickled models need (importing `mace` first, which sets torch.load's defaults for them) and
the error a foreign file gets are written once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from ase import Atoms

from traincraft_assets.core.frames import symbols

# MACE's name for a single-head model's head and for the head a multihead fine-tuning trains
# (and deploys); the replay head of a multihead fine-tuned model is "pt_head". A multifidelity
# model names its deployed level's head TARGET_HEAD too (core/training/mace/command.py).
TARGET_HEAD = "Default"
# MACE's calculator type for each model class that is not an energy model ("MACE").
CALCULATOR_MODEL_TYPES = {
    "EnergyDipolesMACE": "EnergyDipoleMACE",
    "AtomicDipolesMACE": "DipoleMACE",
    "AtomicDielectricMACE": "DipolePolarizabilityMACE",
}
REPLAY_HEAD = "pt_head"

NOT_A_MODEL = (
    "Expected a .model file written by MACE (mace_run_train's <name>.model or a downloaded "
    "foundation); a checkpoint (.pt) or a state_dict will not do."
)


def load_model(model_path: str | Path, device: str = "cpu", *, inference: bool = True):
    """The model in `model_path` on `device`. With `inference`, its parameters are frozen (no
    gradients kept for them; forces still come from autograd on positions); an export that
    saves the model again loads it as it was written."""
    import mace  # noqa: F401  (sets the torch.load defaults MACE models need)
    import torch

    model = torch.load(str(model_path), map_location=device, weights_only=False)
    if inference:
        for param in model.parameters():
            param.requires_grad = False
    return model


def model_heads(model) -> list[str]:
    """The model's heads; single-head models have one, "Default"."""
    return list(getattr(model, "heads", [TARGET_HEAD]))


def model_head(heads: Sequence[str]) -> str:
    """The head a model is evaluated and deployed with: TARGET_HEAD when it has one, else the
    first that is not the replay head (mace.tools.scripts_utils.remove_pt_head's rule, which a
    foundation with heads of its own follows)."""
    heads = list(heads)
    if TARGET_HEAD in heads:
        return TARGET_HEAD
    return next((h for h in heads if h != REPLAY_HEAD), heads[0])


def model_elements(model) -> set[int]:
    """Atomic numbers the model has embeddings for."""
    return {int(z) for z in model.atomic_numbers}


def known_frames(frames: Sequence[Atoms], model) -> list[Atoms]:
    """The frames made only of elements `model` has embeddings for."""
    known = model_elements(model)
    return [atoms for atoms in frames if {int(z) for z in atoms.numbers} <= known]


def describe_model(model_path: str | Path) -> dict:
    """What the rest of the graph needs to know about a MACE model, read from the file itself:
    its class, elements, cutoff, heads (and the one fine-tuned), dtype, E0s and architecture.
    A file that is not a MACE model is refused, naming it."""
    try:
        model = load_model(model_path, inference=False)
    except Exception as exc:  # torch raises pickle, zip and IO errors alike for a foreign file
        raise ValueError(
            f"{model_path}: not a MACE model; torch could not load it ({type(exc).__name__}). {NOT_A_MODEL}"
        ) from exc
    missing = [name for name in ("atomic_numbers", "r_max") if not hasattr(model, name)]
    if missing:
        raise ValueError(f"{model_path}: not a MACE model: a {type(model).__name__} without {missing}. {NOT_A_MODEL}")
    numbers = [int(z) for z in model.atomic_numbers]
    heads = model_heads(model)
    head = model_head(heads)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    e0s = {}
    if hasattr(model, "atomic_energies_fn"):  # the dipole-only models have no energy, so no E0s
        table = model.atomic_energies_fn.atomic_energies.detach().cpu().numpy()
        # E0s are stored per head ([n_heads, n_elements]) in recent MACE, flat in older models.
        rows = table.reshape(len(heads), -1) if table.ndim == 2 else table.reshape(1, -1)
        row = rows[heads.index(head)] if len(rows) == len(heads) else rows[0]
        e0s = {str(z): float(e) for z, e in zip(numbers, row)}
    return {
        "shape": _shape(model),
        "model_class": type(model).__name__,
        "atomic_numbers": numbers,
        "elements": symbols(numbers),
        "r_max": float(model.r_max),
        "heads": heads,
        "head": head,
        "dtype": dtype,
        "e0s": e0s,
    }


def describe_file(model_path: Path) -> dict:
    """describe_model, once per version of the file in a process: every step of a run asks."""
    path = Path(model_path).resolve()
    return _described(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _described(path: str, mtime_ns: int) -> dict:
    return describe_model(path)


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
