"""Demo data made with ASE calculators, so the whole graph runs with no downloads.

Two levels of theory, as in real fine-tuning (a foundation trained on one functional, target
data computed with a better one):
- the foundation's: EMT (`FOUNDATION_THEORY`, the `emt` labeller). Its pool is broad: seven fcc
  metals, each as bulk over a range of temperatures, strained bulk, surfaces and vacancies;
- the target's: EMT plus a weak Morse pair term (`TARGET_THEORY`, the `emt_morse` labeller). Like
  a different functional it changes the physics systematically, not randomly: Cu's lattice
  constant is 0.8% shorter (3.560 vs 3.590 Å), cohesive energy about 0.39 eV/atom deeper, and
  forces on the target frames differ by about 0.1 eV/Å RMS. The target is Cu in environments the
  pool shows (surfaces, vacancies) and ones it never shows (adatoms, hot rattles).
So the foundation is good on its own theory and wrong on the target's in a learnable way: what
fine-tuning is for.

The demo foundation ships with the package (traincraft_assets/demo/foundation/: the model and a
manifest saying how it was made); `python -m traincraft_assets.demo.make_foundation` remakes it.
Frames drawn with `heldout=True` come from the pool's distribution but a separate random stream:
the foundation never trained on them, so they measure what fine-tuning makes it forget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc100, fcc111

from traincraft_assets.core.frames import CONFIG_TYPE_KEY, LEVEL_KEY, write_frames
from traincraft_assets.core.labelling import LABELLERS, LabelOptions, level_of_theory
from traincraft_assets.core.training.mace import ModelShape, TrainSettings

# The demo's two levels of theory, as labellers (core/labelling.py).
FOUNDATION_THEORY = "emt"
TARGET_THEORY = "emt_morse"

PRETRAINING_METALS = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al")
POOL_FRAMES_PER_METAL = 100  # the pool the shipped foundation trained on
HELDOUT_FRAMES_PER_METAL = 20
SHIPPED_FOUNDATION_DIR = Path(__file__).parent.parent / "demo" / "foundation"

# The demo foundation: a MACE trained from scratch on the pool. Two interactions of 32 scalar
# channels (body order 3) learn EMT well and keep fine-tuning to minutes on 2 CPU cores; higher
# correlation order cost 5x the time per epoch here. One labeller (EMT) made every frame, so E0s
# fitted from the data are consistent.
DEMO_FOUNDATION = TrainSettings(
    strategy="scratch",
    heads=("energy", "forces", "stress"),
    e0s="average",
    ema_decay=0.99,
    energy_weight=10.0,  # at 1 (MACE's scratch default) energies lagged: 63 meV/atom after 20 epochs
    forces_weight=10.0,
    stress_weight=10.0,
    lr=0.01,
    batch_size=10,
    max_num_epochs=90,
    dtype="float32",
    shape=ModelShape(num_channels=32, max_L=0, r_max=5.0, num_interactions=2, correlation=2),
)
# The settings a user may change for a foundation trained in the graph; the loss and E0s stay.
DEMO_FOUNDATION_OPTIONS = (
    "dtype",
    "max_num_epochs",
    "num_channels",
    "max_L",
    "r_max",
    "num_interactions",
    "correlation",
    "batch_size",
    "lr",
    "seed",
    "device",
)


def _labelled(frames: list[Atoms], labeller: str) -> list[Atoms]:
    """`frames` labelled by one of the project's labellers (emt: the foundation's theory;
    emt_morse: the target's), each carrying its level of theory like any labelled batch, so the
    demo's files and the loop's labelled picks are one level."""
    for atoms in frames:
        atoms.info.pop("adsorbate_info", None)  # ase.build bookkeeping; extxyz cannot store it
    options = LabelOptions(compute_stress=True)
    labelled = LABELLERS[labeller](frames, options)
    for atoms in labelled:
        atoms.info[LEVEL_KEY] = level_of_theory(labeller, options)
    return labelled


def _strained_bulk(symbol: str, rng: np.random.Generator, rattle: float, strain: float = 0.04) -> Atoms:
    atoms = bulk(symbol, "fcc", cubic=True).repeat((2, 2, 2))
    deform = np.eye(3) + rng.uniform(-strain, strain, size=(3, 3)) * np.array([[1, 0.3, 0.3]] * 3)
    atoms.set_cell(atoms.cell[:] @ deform, scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, size=atoms.positions.shape)
    return atoms


def _surface(symbol: str, rng: np.random.Generator) -> Atoms:
    make = fcc111 if rng.random() < 0.5 else fcc100
    atoms = make(symbol, size=(2, 2, 4), vacuum=5.0)
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


def _vacancy(symbol: str, rng: np.random.Generator) -> Atoms:
    atoms = bulk(symbol, "fcc", cubic=True).repeat((2, 2, 2))
    del atoms[int(rng.integers(len(atoms)))]
    atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
    atoms.info[CONFIG_TYPE_KEY] = "vacancy"
    return atoms


def _hot_rattle(rng: np.random.Generator) -> Atoms:
    atoms = _strained_bulk("Cu", rng, rattle=rng.uniform(0.08, 0.12))
    atoms.info[CONFIG_TYPE_KEY] = "hot_rattle"
    return atoms


# The pool's kinds per metal. Thermal rattles of 0.02-0.12 Å span roughly 100-1200 K in these metals.
POOL_KINDS = {
    "bulk": lambda symbol, rng: _strained_bulk(symbol, rng, rattle=rng.uniform(0.02, 0.12), strain=0.01),
    "strained": lambda symbol, rng: _strained_bulk(symbol, rng, rattle=rng.uniform(0.02, 0.05), strain=0.06),
    "surface": _surface,
    "vacancy": _vacancy,
}


def pretraining_frames(
    frames_per_metal: int = POOL_FRAMES_PER_METAL, seed: int = 0, heldout: bool = False
) -> list[Atoms]:
    """The foundation's pool: each of the seven fcc metals as thermal bulk, strained bulk,
    surfaces and vacancies (in turn), EMT-labelled; stress on fully periodic frames.
    `heldout`: other frames of the same distribution, which the pool never contains."""
    rng = np.random.default_rng([seed, 1] if heldout else seed)
    frames = []
    kinds = list(POOL_KINDS.items())
    for symbol in PRETRAINING_METALS:
        for i in range(frames_per_metal):
            kind, make = kinds[i % len(kinds)]
            atoms = make(symbol, rng)
            atoms.info[CONFIG_TYPE_KEY] = f"{kind}_{symbol}"
            frames.append(atoms)
    return _labelled(frames, FOUNDATION_THEORY)


def target_batches(frames_per_kind: int = 30, seed: int = 1) -> dict[str, list[Atoms]]:
    """Two batches of Cu target data at the target's level of theory, as two labelling
    campaigns would deliver them."""
    rng = np.random.default_rng(seed)
    campaigns = {
        "cu_surfaces": (lambda rng: _surface("Cu", rng), _adatom),
        "cu_defects": (lambda rng: _vacancy("Cu", rng), _hot_rattle),
    }
    batches = {}
    for name, makers in campaigns.items():
        frames = [make(rng) for make in makers for _ in range(frames_per_kind)]
        batches[name] = _labelled(frames, TARGET_THEORY)
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


# ---- the active-learning demo -------------------------------------------------------------


def _bulk(rng: np.random.Generator) -> Atoms:
    atoms = _strained_bulk("Cu", rng, rattle=rng.uniform(0.02, 0.06), strain=0.01)
    atoms.info[CONFIG_TYPE_KEY] = "bulk"
    return atoms


def loop_starts(seed: int = 3) -> list[Atoms]:
    """Where the loop's walks start: one structure of each kind the test set holds (bulk, a
    surface, a vacancy, an adatom), so exploration can reach what the narrow start lacks."""
    rng = np.random.default_rng(seed)
    slab = fcc111("Cu", size=(2, 2, 4), vacuum=5.0)
    slab.info[CONFIG_TYPE_KEY] = "surface"
    frames = [_bulk(rng), slab, _vacancy("Cu", rng), _adatom(rng)]
    for atoms in frames:
        atoms.info.pop("adsorbate_info", None)
    return frames


def loop_data(directory: Path, n_start: int = 20, n_test_per_kind: int = 10, seed: int = 3) -> dict[str, Path]:
    """The active-learning demo's files: a deliberately narrow first batch (Cu bulk only, at the
    target's theory), the walks' starting structures, and a held-out test set of every kind
    (surfaces, vacancies, adatoms, hot rattles and bulk) the loop is scored on."""
    rng = np.random.default_rng(seed)
    test_rng = np.random.default_rng([seed, 1])
    makers = {
        "bulk": _bulk,
        "surface": lambda r: _surface("Cu", r),
        "vacancy": lambda r: _vacancy("Cu", r),
        "adatom": _adatom,
        "hot_rattle": _hot_rattle,
    }
    files = {
        "start": (directory / "cu_bulk_start.xyz", _labelled([_bulk(rng) for _ in range(n_start)], TARGET_THEORY)),
        "structures": (directory / "loop_structures.xyz", loop_starts(seed)),
        "test": (
            directory / "loop_test.xyz",
            _labelled([make(test_rng) for make in makers.values() for _ in range(n_test_per_kind)], TARGET_THEORY),
        ),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for path, frames in files.values():
        write_frames(path, frames)
    return {name: path for name, (path, _) in files.items()}
