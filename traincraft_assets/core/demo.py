"""Demo data made with ASE's EMT, so the whole graph runs with no downloads.

The pretraining pool is strained, rattled bulk of seven fcc metals; the target data is Cu in
environments that pool never shows (surfaces, adatoms, vacancies, hot rattles), so a fine-tuned
model has something real to learn over the zero-shot foundation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc100, fcc111
from ase.calculators.emt import EMT

from traincraft_assets.core.frames import CONFIG_TYPE_KEY, elements, read_frames, set_label, write_frames
from traincraft_assets.core.split import split_frames
from traincraft_assets.core.training import TrainInputs, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings

PRETRAINING_METALS = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al")

# The demo foundation: a small MACE trained from scratch on the pool, sized for minutes on a
# laptop. One labeller (EMT) made every frame, so E0s fitted from the data are consistent.
DEMO_FOUNDATION = TrainSettings(
    strategy="scratch",
    heads=("energy", "forces", "stress"),
    e0s="average",
    ema_decay=0.99,
    energy_weight=1.0,
    forces_weight=10.0,
    stress_weight=10.0,
    lr=0.01,
    batch_size=10,
    max_num_epochs=20,
    shape=ModelShape(num_channels=32, max_L=0, r_max=4.5, num_interactions=2, correlation=2),
)
# The demo-foundation settings a user may change; the loss and E0s stay as above.
DEMO_FOUNDATION_OPTIONS = (
    "dtype", "max_num_epochs", "num_channels", "max_L", "r_max", "num_interactions",
    "correlation", "batch_size", "lr", "seed", "device",
)


def _label_emt(atoms: Atoms, stress: bool) -> Atoms:
    atoms.calc = EMT()
    set_label(atoms, "energy", atoms.get_potential_energy())
    set_label(atoms, "forces", atoms.get_forces())
    if stress:
        set_label(atoms, "stress", atoms.get_stress(voigt=False).reshape(-1))
    atoms.calc = None
    atoms.info.pop("adsorbate_info", None)  # ase.build bookkeeping; extxyz cannot store it
    return atoms


def _strained_bulk(symbol: str, rng: np.random.Generator, rattle: float) -> Atoms:
    atoms = bulk(symbol, "fcc", cubic=True).repeat((2, 2, 2))
    strain = np.eye(3) + rng.uniform(-0.04, 0.04, size=(3, 3)) * np.array([[1, 0.3, 0.3]] * 3)
    atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, size=atoms.positions.shape)
    return atoms


def pretraining_frames(frames_per_metal: int = 40, seed: int = 0) -> list[Atoms]:
    """Strained and rattled bulk of the seven fcc metals, EMT-labelled with stress."""
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in PRETRAINING_METALS:
        for _ in range(frames_per_metal):
            atoms = _strained_bulk(symbol, rng, rattle=rng.uniform(0.02, 0.08))
            atoms.info[CONFIG_TYPE_KEY] = f"bulk_{symbol}"
            frames.append(_label_emt(atoms, stress=True))
    return frames


def _surface(rng: np.random.Generator) -> Atoms:
    make = fcc111 if rng.random() < 0.5 else fcc100
    atoms = make("Cu", size=(2, 2, 4), vacuum=5.0)
    atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
    atoms.info[CONFIG_TYPE_KEY] = "surface"
    return atoms


def _adatom(rng: np.random.Generator) -> Atoms:
    atoms = fcc100("Cu", size=(2, 2, 3), vacuum=5.0)
    add_adsorbate(atoms, "Cu", height=rng.uniform(1.5, 2.0), position="hollow")
    atoms.center(vacuum=5.0, axis=2)
    atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
    atoms.info[CONFIG_TYPE_KEY] = "adatom"
    return atoms


def _vacancy(rng: np.random.Generator) -> Atoms:
    atoms = bulk("Cu", "fcc", cubic=True).repeat((2, 2, 2))
    del atoms[int(rng.integers(len(atoms)))]
    atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
    atoms.info[CONFIG_TYPE_KEY] = "vacancy"
    return atoms


def _hot_rattle(rng: np.random.Generator) -> Atoms:
    atoms = _strained_bulk("Cu", rng, rattle=rng.uniform(0.08, 0.12))
    atoms.info[CONFIG_TYPE_KEY] = "hot_rattle"
    return atoms


def target_batches(frames_per_kind: int = 30, seed: int = 1) -> dict[str, list[Atoms]]:
    """Two batches of Cu target data, as two labelling campaigns would deliver them."""
    rng = np.random.default_rng(seed)
    campaigns = {
        "cu_surfaces": (_surface, _adatom),
        "cu_defects": (_vacancy, _hot_rattle),
    }
    batches = {}
    for name, makers in campaigns.items():
        frames = []
        for make in makers:
            for _ in range(frames_per_kind):
                atoms = make(rng)
                frames.append(_label_emt(atoms, stress=bool(atoms.pbc.all())))
        batches[name] = frames
    return batches


def write_target_batches(directory: Path, frames_per_kind: int = 30, seed: int = 1) -> list[Path]:
    """Write the demo target batches as extxyz files, one per batch; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frames in target_batches(frames_per_kind, seed).items():
        path = directory / f"{name}.xyz"
        write_frames(path, frames)
        paths.append(path)
    return paths


def train_foundation(pool: Path, settings: TrainSettings, workdir: Path, on_output: Callable[[str], None]) -> Path:
    """Train the demo foundation on the pool file (90/10 split); return the model's path."""
    frames = read_frames(pool)
    sides = split_frames(frames, valid_fraction=0.1, salt="demo-foundation")
    files = {}
    for side in ("train", "valid"):
        files[side] = workdir / f"{side}.xyz"
        write_frames(files[side], [frames[i] for i in sides[side]])
    inputs = TrainInputs(
        train_file=files["train"],
        valid_file=files["valid"],
        data_labels=("energy", "forces", "stress"),
        data_elements=elements(frames),
    )
    return get_trainer("mace").train(settings, inputs, workdir / "mace", on_output, "foundation").model_path
