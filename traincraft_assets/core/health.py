"""Dataset health: problems that make training silently wrong, each tied to a batch and frame.

MACE masks a missing label instead of failing, averages NaNs into its statistics, and happily
trains on two atoms sitting on top of each other. These checks catch that before training.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from traincraft_assets.core.frames import (
    BATCH_INDEX_KEY,
    BATCH_KEY,
    LABEL_ALIASES,
    PER_ATOM_LABELS,
    REF_KEYS,
    elements,
    get_label,
)

REQUIRED_LABELS = ("energy", "forces")
MAX_LISTED = 20  # problems listed in one message; the rest are counted
# Closer than this, two atoms overlap: the shortest real bond (H2) is 0.74 Å.
DEFAULT_MIN_DISTANCE = 0.5
# Above this, a force on an atom that does not overlap another is a unit or key mix-up, not
# physics (meV/Å or kcal/mol/Å read as eV/Å; eV/Bohr is only 1.9x): even hot, strained
# structures stay within tens of eV/Å.
MAX_PLAUSIBLE_FORCE_EV_PER_A = 100.0
# 5 eV/Å³ is 800 GPa, beyond any training set but extreme-pressure studies; stress in kbar or
# GPa stored as eV/Å³ lands far above it.
MAX_PLAUSIBLE_STRESS_EV_PER_A3 = 5.0
# What "turn the check off" is called, in messages and in config.
PLAUSIBILITY_OVERRIDE = "check_plausibility: false"


@dataclass(frozen=True)
class Problem:
    batch: str
    frame: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"batch {self.batch!r}, frame {self.frame}, {self.field}: {self.message}"

    def as_row(self) -> dict:
        return {"batch": self.batch, "frame": self.frame, "field": self.field, "message": self.message}


def _problem(atoms: Atoms, field: str, message: str) -> Problem:
    return Problem(str(atoms.info.get(BATCH_KEY, "?")), int(atoms.info.get(BATCH_INDEX_KEY, -1)), field, message)


def frame_problems(
    atoms: Atoms, min_distance: float = DEFAULT_MIN_DISTANCE, plausibility: bool = True, require_labels: bool = True
) -> list[Problem]:
    """Everything wrong with one frame's atoms and labels. `plausibility`: also flag magnitudes
    that look like a unit mix-up; `require_labels`: a missing energy or force is a problem (a
    labeller's partial batch is reported by `unlabelled_frames` instead)."""
    if len(atoms) == 0:
        return [_problem(atoms, "numbers", "frame has zero atoms")]
    problems = []
    for name in REF_KEYS:
        value = get_label(atoms, name)
        if value is None:
            if name in REQUIRED_LABELS and require_labels:
                store = atoms.arrays if name in PER_ATOM_LABELS else atoms.info
                found = sorted(k for k in store if k not in ("numbers", "positions"))
                problems.append(
                    _problem(
                        atoms,
                        REF_KEYS[name],
                        f"missing; every frame needs {REF_KEYS[name]}. The frame has "
                        f"{'per-atom arrays' if name in PER_ATOM_LABELS else 'info keys'} {found or 'none'}; "
                        f"{name} is read from any of {list(LABEL_ALIASES[name])}: rename the key in the file",
                    )
                )
            continue
        bad = ~np.isfinite(value)
        if bad.any():
            problems.append(_problem(atoms, REF_KEYS[name], f"{int(bad.sum())} non-finite value(s) (NaN or inf)"))
        elif name == "stress" and not atoms.pbc.all():
            problems.append(
                _problem(
                    atoms,
                    REF_KEYS[name],
                    f"stress on a frame that is not periodic in all directions (pbc {atoms.pbc.tolist()}): "
                    "stress is undefined without a periodic cell. Remove the stress from this frame "
                    "(or set the cell and pbc if it is bulk)",
                )
            )
        elif plausibility:
            problems += _implausible(atoms, name, value)
    pair = closest_pair(atoms, min_distance)
    if pair is not None:
        i, j, d = pair
        problems.append(
            _problem(
                atoms, "positions", f"atoms {i} and {j} are {d:.3f} Å apart (overlapping: closer than {min_distance} Å)"
            )
        )
    return problems


def closest_pair(atoms: Atoms, cutoff: float) -> tuple[int, int, float] | None:
    """The closest two atoms nearer than `cutoff` (i <= j), periodic images included (an atom in
    a small cell can overlap its own image), or None. A k-d tree over the atoms and their
    neighbouring images: ASE's neighbor_list takes about 5 ms a frame whatever its size, which
    was most of checking a prelabelled batch; this takes a fraction of a millisecond."""
    from scipy.spatial import cKDTree

    cell, positions = atoms.cell.array, atoms.positions
    volume = abs(np.linalg.det(cell))
    # the cell's thickness along each periodic direction: its volume over the face the other two span
    heights = [
        volume / np.linalg.norm(np.cross(cell[k - 2], cell[k - 1])) if volume else 0.0
        for k in np.flatnonzero(atoms.pbc)
    ]
    if heights and min(heights) <= cutoff:  # images beyond the next cell can be this close
        i, j, d = neighbor_list("ijd", atoms, cutoff)
    else:  # every periodic cell height is above the cutoff: only the neighbouring images can be
        if heights:
            positions = atoms.get_scaled_positions(wrap=True) @ cell
        shifts = np.array(list(itertools.product(*[(-1, 0, 1) if p else (0,) for p in atoms.pbc])))
        images = (positions[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
        found = cKDTree(positions).sparse_distance_matrix(cKDTree(images), cutoff, output_type="ndarray")
        i, image, d = found["i"], found["j"], found["v"]
        itself = image == np.flatnonzero(~shifts.any(axis=1))[0] * len(atoms) + i
        i, j, d = i[~itself], image[~itself] % len(atoms), d[~itself]
    keep = (i <= j) & (d < cutoff)
    if not keep.any():
        return None
    k = np.lexsort((j[keep], i[keep], d[keep]))[0]
    return int(i[keep][k]), int(j[keep][k]), float(d[keep][k])


def _implausible(atoms: Atoms, name: str, value: np.ndarray) -> list[Problem]:
    """A force or stress far outside physical magnitudes: a unit or key mix-up, not physics."""
    if name == "forces" and value.size:
        what, largest = "a force", float(np.linalg.norm(value.reshape(-1, 3), axis=1).max())
        limit, unit, likely = MAX_PLAUSIBLE_FORCE_EV_PER_A, "eV/Å", "meV/Å or kcal/mol/Å stored as eV/Å"
    elif name == "stress":
        what, largest = "a stress component", float(np.abs(value).max())
        limit, unit = MAX_PLAUSIBLE_STRESS_EV_PER_A3, "eV/Å³"
        likely = "kbar or GPa stored as eV/Å³ (1 eV/Å³ = 160.2 GPa)"
    else:
        return []
    if largest <= limit:
        return []
    return [
        _problem(
            atoms,
            REF_KEYS[name],
            f"{what} of {largest:.4g} {unit}, far above {limit:g} {unit}: likely a unit mix-up ({likely}). "
            f"Convert the labels to {unit}; if the magnitudes are real, set {PLAUSIBILITY_OVERRIDE}",
        )
    ]


class BatchError(ValueError):
    """A batch whose labelled frames cannot be trained on; the message lists every problem."""


def batch_problems(frames: Iterable[Atoms], plausibility: bool = True, require_labels: bool = True) -> list[Problem]:
    """What refuses a labelled batch: missing, non-finite or implausible labels, empty frames,
    overlapping atoms. With `require_labels` off (a labeller that computes labels), frames it
    could not label are not problems here: the batch is marked partial by its check instead."""
    return [
        p for atoms in frames for p in frame_problems(atoms, plausibility=plausibility, require_labels=require_labels)
    ]


def refuse_batch(source: str, problems: Sequence[Problem], n_frames: int) -> BatchError:
    """The error refusing batch file `source`, naming every frame and field (the first 20)."""
    listed = "\n".join(f"  - frame {p.frame}, field {p.field}: {p.message}" for p in problems[:MAX_LISTED])
    more = f"\n  - ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return BatchError(
        f"{source}: {len(problems)} problem(s) in {n_frames} frames; nothing was stored:\n{listed}{more}\n"
        "Fix these frames (or drop them) in the file and ingest it again."
    )


# A labeller that could not label a frame (a DFT run that did not converge) says why here; a
# `command` labeller writes it into output.xyz as `label_error="..."`.
LABEL_ERROR_KEY = "label_error"


def unlabelled_frames(frames: Sequence[Atoms]) -> list[Problem]:
    """Frames a labeller returned without a required label, with the labeller's reason when it
    gave one: the batch is partial."""
    problems = []
    for atoms in frames:
        missing = [REF_KEYS[name] for name in REQUIRED_LABELS if get_label(atoms, name) is None]
        if missing:
            reason = atoms.info.get(LABEL_ERROR_KEY)
            problems.append(
                _problem(atoms, ", ".join(missing), f"not labelled ({reason})" if reason else "not labelled")
            )
    return problems


def uncovered_elements(frames: Iterable[Atoms], covered: Sequence[str]) -> list[Problem]:
    """Frames holding elements the foundation model has no embedding for."""
    covered_set = set(covered)
    problems = []
    for atoms in frames:
        missing = [s for s in elements([atoms]) if s not in covered_set]
        if missing:
            problems.append(
                _problem(
                    atoms,
                    "numbers",
                    f"elements {missing} are not covered by the foundation model (it covers {sorted(covered_set)})",
                )
            )
    return problems


def dataset_problems(
    frames: Sequence[Atoms],
    covered_elements: Sequence[str] | None = None,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> list[Problem]:
    problems = [p for atoms in frames for p in frame_problems(atoms, min_distance)]
    if covered_elements is not None:
        problems += uncovered_elements(frames, covered_elements)
    return problems


# A label that is this many times what the foundation predicts is in this unit, read as eV-based
# (a force in kcal/mol/Å is 23.06 times its value in eV/Å).
UNIT_FACTORS = {
    "forces": {
        1000.0: "meV/Å",
        96.485: "kJ/mol/Å",
        23.061: "kcal/mol/Å",
        0.5292: "eV/Bohr",
        0.03675: "Hartree/Å (or Rydberg/Bohr, 0.0389)",
        0.01945: "Hartree/Bohr",
    },
    "energy": {1000.0: "meV", 96.485: "kJ/mol", 23.061: "kcal/mol", 0.07350: "Rydberg", 0.03675: "Hartree"},
}
# Zero-shot foundations soften forces (predict them somewhat too low) but are not 3x off:
# outside this band the labels' scale, not the model, is likely wrong.
MAX_SCALE_RATIO = 3.0
# Where force labels follow the foundation's forces closely (correlation at least this), their
# fitted scale is sharp: another level of theory moves it by tens of percent, mostly upwards
# (the demo's target: 1.13x; zero-shot foundations are soft), while eV/Bohr read as eV/Å gives
# 0.53x that. So the band narrows to this, which catches eV/Bohr.
CORRELATED = 0.8
CORRELATED_SLOPE_BAND = (0.75, 1.5)
# Below this RMS of the foundation's predictions the scale is noise: frames near equilibrium
# (forces, eV/Å), or frames of one composition that barely differ (energy spread, eV/atom).
MIN_SIGNAL = {"forces": 0.05, "energy": 0.005}


@dataclass
class UnitCheckSettings:
    block_on_unit_mismatch: bool = field(
        default=True,
        metadata={
            "help": "false: report labels on another scale than the foundation's without blocking (when the foundation, not the data, is off)"
        },
    )


@dataclass(frozen=True)
class LabelScale:
    """How large one batch's labels of one kind are next to the foundation's zero-shot predictions."""

    label: str  # "forces", or "energy": its spread within each composition, per atom
    batch: str
    n_frames: int
    ratio: float  # RMS of the labels / RMS of the foundation's predictions
    slope: float  # least-squares factor from the predictions to the labels
    correlation: float  # of labels and predictions (uncentred)

    @property
    def fitted(self) -> bool:
        """Forces that follow the foundation closely are judged by their fitted slope, sharp
        enough to catch eV/Bohr; energies, whose units lie 13x or more apart, by RMS."""
        return self.label == "forces" and self.correlation >= CORRELATED

    @property
    def scale(self) -> float:
        return self.slope if self.fitted else self.ratio

    @property
    def band(self) -> tuple[float, float]:
        return CORRELATED_SLOPE_BAND if self.fitted else (1 / MAX_SCALE_RATIO, MAX_SCALE_RATIO)

    @property
    def plausible(self) -> bool:
        low, high = self.band
        return low <= self.scale <= high

    @property
    def likely_unit(self) -> str:
        factors = UNIT_FACTORS[self.label]
        return factors[min(factors, key=lambda f: abs(math.log(self.scale / f)))]

    def __str__(self) -> str:
        what = "force labels" if self.label == "forces" else "energy labels' spread within each composition"
        text = (
            f"batch {self.batch!r} ({self.n_frames} frames): {what} {self.scale:.3g}x the foundation's "
            f"({'fitted' if self.fitted else 'RMS'}; correlation {self.correlation:.2f}, "
            f"allowed {self.band[0]:.2g}-{self.band[1]:.2g}x)"
        )
        if self.plausible:
            return text
        if self.scale <= 0:
            return f"{text}, every label is the same"
        return f"{text}, likely {self.likely_unit} read as {'eV/Å' if self.label == 'forces' else 'eV'}"


def _scales(label: str, sums: dict[str, np.ndarray]) -> list[LabelScale]:
    """LabelScales from per-batch sums: frames, values, Σlabel², Σpredicted², Σlabel·predicted."""
    return [
        LabelScale(
            label,
            batch,
            int(n),
            ratio=math.sqrt(label_sq / predicted_sq),
            slope=cross / predicted_sq,
            correlation=cross / math.sqrt(label_sq * predicted_sq) if label_sq > 0 else 0.0,
        )
        for batch, (n, size, label_sq, predicted_sq, cross) in sums.items()
        if math.sqrt(predicted_sq / size) > MIN_SIGNAL[label]
    ]


def force_scales(frames: Sequence[Atoms], predicted_forces: Sequence[np.ndarray]) -> list[LabelScale]:
    """Per batch, the force labels' scale next to the foundation's forces on the same frames.
    Blind to E0s, so a unit mix-up shows as a clean factor. Batches of near-equilibrium
    frames, where the scale would be noise, are left out."""
    sums: dict[str, np.ndarray] = {}
    for atoms, predicted in zip(frames, predicted_forces):
        label = get_label(atoms, "forces")
        if label is None or not np.isfinite(label).all():
            continue
        predicted = np.asarray(predicted)
        row = sums.setdefault(str(atoms.info.get(BATCH_KEY, "?")), np.zeros(5))
        row += (1, label.size, np.sum(label**2), np.sum(predicted**2), np.sum(label * predicted))
    return _scales("forces", sums)


def energy_scales(frames: Sequence[Atoms], predicted_energies: Sequence[float]) -> list[LabelScale]:
    """Per batch, the spread of the energy labels per atom about their composition's mean
    (where the E0s cancel) next to the foundation's spread on the same frames: an energy unit
    mix-up shows as a clean factor even when the E0s differ. Compositions seen once carry no
    spread and are left out, as are batches whose spread is noise."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for atoms, predicted in zip(frames, predicted_energies):
        energy = get_label(atoms, "energy")
        if energy is None or not np.isfinite(energy) or len(atoms) == 0:
            continue
        key = (str(atoms.info.get(BATCH_KEY, "?")), atoms.get_chemical_formula())
        groups.setdefault(key, []).append((float(energy) / len(atoms), float(predicted) / len(atoms)))
    sums: dict[str, np.ndarray] = {}
    for (batch, _), pairs in groups.items():
        if len(pairs) < 2:
            continue
        label, predicted = np.asarray(pairs).T
        label, predicted = label - label.mean(), predicted - predicted.mean()
        row = sums.setdefault(batch, np.zeros(5))
        row += (len(pairs), len(pairs), np.sum(label**2), np.sum(predicted**2), np.sum(label * predicted))
    return _scales("energy", sums)
