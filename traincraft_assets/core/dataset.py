"""Merging labelled batches into one dataset, with exact duplicates removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import REF_KEYS, fingerprint, get_label, where

FINGERPRINT_KEY = "fingerprint"


@dataclass
class MergeReport:
    n_input: int = 0
    n_duplicates: int = 0
    conflicts: list[str] = field(default_factory=list)  # same structure, different labels


def _same_labels(a: Atoms, b: Atoms) -> bool:
    for name in REF_KEYS:
        x, y = get_label(a, name), get_label(b, name)
        if (x is None) != (y is None):
            return False
        if x is not None and (x.shape != y.shape or not np.allclose(x, y, rtol=1e-8, atol=1e-8)):
            return False
    return True


def merge_batches(batches: Sequence[Sequence[Atoms]]) -> tuple[list[Atoms], MergeReport]:
    """Concatenate batches in order, keeping the first copy of each structure.

    A later copy with identical labels is a plain duplicate. A later copy with different labels
    is a conflict: the first is kept and the conflict reported, because silently averaging or
    replacing reference data hides a labelling problem the user has to look at.
    """
    report = MergeReport()
    seen: dict[str, Atoms] = {}
    merged = []
    for frames in batches:
        for atoms in frames:
            report.n_input += 1
            key = fingerprint(atoms)
            if key in seen:
                report.n_duplicates += 1
                if not _same_labels(seen[key], atoms):
                    report.conflicts.append(
                        f"{where(atoms)} has the structure of {where(seen[key])} with different "
                        "labels; kept the first"
                    )
                continue
            atoms = atoms.copy()
            atoms.info[FINGERPRINT_KEY] = key
            seen[key] = atoms
            merged.append(atoms)
    return merged, report
