"""Merging labelled batches into one dataset, with exact duplicates removed, streamed.

A structure is a duplicate only at the same level of theory: the same geometry labelled at two
levels (xTB and DFT, say) is two frames of the dataset, kept apart by their level."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import REF_KEYS, FrameTally, chunks, fingerprint, get_label, level_of, where

FINGERPRINT_KEY = "fingerprint"


class LabelConflict(ValueError):
    """One structure labelled differently in two batches at one level of theory."""


@dataclass
class MergeReport:
    n_input: int = 0
    n_duplicates: int = 0
    conflicts: list[str] = field(default_factory=list)  # same structure, different labels
    tally: FrameTally = field(default_factory=FrameTally)  # of the frames kept

    def conflict_message(self, listed: int = 20) -> str:
        """Why a dataset with conflicts is not made, and what to do."""
        more = f"\n- ... and {len(self.conflicts) - listed} more" if len(self.conflicts) > listed else ""
        return (
            f"{len(self.conflicts)} structure(s) appear in two batches with different labels at the same level "
            "of theory; a dataset would train on one of them silently, so none was made:\n"
            + "\n".join(f"- {c}" for c in self.conflicts[:listed])
            + more
            + "\nKeep one labelling: retire the batch you no longer trust "
            '(`traincraft retire BATCH --reason "..."`), then materialize dataset again.'
        )


def _labels_digest(atoms: Atoms) -> str:
    """sha256 of a frame's labels (which are present, and their values): two copies of one
    structure conflict when these differ. Only the digest is kept, not the frame."""
    h = hashlib.sha256()
    for name in REF_KEYS:
        value = get_label(atoms, name)
        h.update(name.encode() + (b"-" if value is None else np.ascontiguousarray(value, dtype=np.float64).tobytes()))
    return h.hexdigest()


def merge_batches(batches: Iterable[Iterable[Atoms]], write: Callable[[list[Atoms]], None]) -> MergeReport:
    """Stream batches, in order, into `write`, keeping the first copy of each structure at each
    level of theory; only a digest per structure and level stays in memory.

    A later copy with identical labels is a plain duplicate. A later copy with different labels
    is a conflict, reported (the first copy is the one written): silently averaging or replacing
    reference data hides a labelling problem the user has to look at.
    """
    report = MergeReport()
    seen: dict[tuple[str, str], tuple[str, str]] = {}  # (fingerprint, level) -> labels digest, first copy
    for frames in batches:
        for chunk in chunks(frames):
            kept = []
            for atoms in chunk:
                report.n_input += 1
                structure, labels = fingerprint(atoms), _labels_digest(atoms)
                key = (structure, level_of(atoms))
                if key in seen:
                    report.n_duplicates += 1
                    if seen[key][0] != labels:
                        report.conflicts.append(
                            f"{where(atoms)} has the structure of {seen[key][1]} (both at level {key[1]!r})"
                        )
                    continue
                seen[key] = (labels, where(atoms))
                atoms = atoms.copy()
                atoms.info[FINGERPRINT_KEY] = structure
                kept.append(atoms)
            report.tally.add(kept)
            write(kept)
    return report
