"""Dataset health: problems that make training silently wrong, each tied to a batch and frame.

MACE masks a missing label instead of failing, averages NaNs into its statistics, and happily
trains on two atoms sitting on top of each other. These checks catch that before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from traincraft_assets.core.frames import (
    BATCH_INDEX_KEY,
    BATCH_KEY,
    PER_ATOM_LABELS,
    REF_KEYS,
    elements,
    get_label,
)
from traincraft_assets.core.labelling import LABEL_ALIASES

REQUIRED_LABELS = ("energy", "forces")
# Closer than this, two atoms overlap: the shortest real bond (H2) is 0.74 Å.
DEFAULT_MIN_DISTANCE = 0.5
# Above this, a force on an atom that does not overlap another is a unit or key mix-up, not
# physics (meV/Å or kcal/mol/Å read as eV/Å; eV/Bohr is only 1.9x): even hot, strained
# structures stay within tens of eV/Å.
MAX_PLAUSIBLE_FORCE_EV_PER_A = 100.0


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
    return Problem(
        str(atoms.info.get(BATCH_KEY, "?")), int(atoms.info.get(BATCH_INDEX_KEY, -1)), field, message
    )


def frame_problems(atoms: Atoms, min_distance: float = DEFAULT_MIN_DISTANCE) -> list[Problem]:
    """Everything wrong with one frame's atoms and labels."""
    if len(atoms) == 0:
        return [_problem(atoms, "numbers", "frame has zero atoms")]
    problems = []
    for name in REF_KEYS:
        value = get_label(atoms, name)
        if value is None:
            if name in REQUIRED_LABELS:
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
            problems.append(
                _problem(atoms, REF_KEYS[name], f"{int(bad.sum())} non-finite value(s) (NaN or inf)")
            )
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
        elif name == "forces" and len(value):
            largest = float(np.linalg.norm(np.asarray(value).reshape(-1, 3), axis=1).max())
            if largest > MAX_PLAUSIBLE_FORCE_EV_PER_A:
                problems.append(
                    _problem(
                        atoms,
                        REF_KEYS[name],
                        f"a force of {largest:.0f} eV/Å, far above {MAX_PLAUSIBLE_FORCE_EV_PER_A:.0f} eV/Å: "
                        "likely a unit mix-up (meV/Å or kcal/mol/Å stored as eV/Å). Convert to eV/Å",
                    )
                )
    # also pairs with periodic images: a single atom in a small cell can overlap itself
    i, j, d = neighbor_list("ijd", atoms, min_distance)
    if len(d):
        k = int(np.argmin(d))
        problems.append(
            _problem(
                atoms,
                "positions",
                f"atoms {int(i[k])} and {int(j[k])} are {d[k]:.3f} Å apart "
                f"(overlapping: closer than {min_distance} Å)",
            )
        )
    return problems


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
                    f"elements {missing} are not covered by the foundation model "
                    f"(it covers {sorted(covered_set)})",
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
