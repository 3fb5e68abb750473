"""Frames: reading, writing, fingerprinting and describing labelled ASE structures.

Every label lives under an explicit REF_* key so MACE is told exactly which numbers to fit
(`--energy_key REF_energy` ...) and a frame missing one label is masked for that head instead
of being trained on zeros.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, get_args

import ase.io
import numpy as np
from ase import Atoms

Label = Literal["energy", "forces", "stress", "dipole", "polarizability"]
# label name -> REF_* key. Energy and stress are per-frame (atoms.info), forces per-atom (arrays).
REF_KEYS = {name: f"REF_{name}" for name in get_args(Label)}
PER_ATOM_LABELS = {"forces"}
# Per-atom partial charges (e) a labeller computes (xtb); not a label the project trains on, so
# not in REF_KEYS, and never a training input (core/training/mace/command.py, UNREAD_CHARGES_KEY).
CHARGES_KEY = "REF_charges"

# Keys a labelled input file may carry each label under, in order of preference (labelling.py
# moves them to REF_*). ASE's extxyz reader turns plain `energy=`/`forces`/`stress=` into
# calculator results, which labelling.py reads too.
LABEL_ALIASES = {
    "energy": ("REF_energy", "DFT_energy", "dft_energy", "energy", "Energy", "TotEnergy"),
    "forces": ("REF_forces", "DFT_forces", "dft_forces", "forces", "force", "Forces"),
    "stress": ("REF_stress", "DFT_stress", "dft_stress", "stress", "Stress"),
    "dipole": ("REF_dipole", "DFT_dipole", "dipole", "Dipole"),
    "polarizability": ("REF_polarizability", "DFT_polarizability", "polarizability"),
}

# Provenance written on every frame so errors can name the batch and the frame in it.
BATCH_KEY = "batch"
BATCH_INDEX_KEY = "batch_index"
CONFIG_TYPE_KEY = "config_type"
# The level of theory a frame's labels were computed at, as one canonical string the labeller
# writes (core/labelling.py): two levels are never trained as one head unless asked for.
LEVEL_KEY = "level_of_theory"
UNKNOWN_LEVEL = "unknown"


class FrameError(ValueError):
    """Bad input frames; the message names the file, frame and field."""


TEXT_FORMATS = {".xyz", ".extxyz"}


def iter_frames(path: str | Path) -> Iterator[Atoms]:
    """The frames of an ASE-readable file, one at a time, so memory holds a frame, not the file.
    A file ASE cannot read gets an error naming the file, and for extxyz the frame and line,
    with what was expected and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FrameError(f"{path}: no such file. Expected an extxyz (or other ASE-readable) file.")
    if path.stat().st_size == 0:
        raise FrameError(f"{path}: the file is empty. Expected frames in extxyz (or another format ASE reads).")
    n = 0
    try:
        for atoms in ase.io.iread(path, index=":"):
            n += 1
            yield atoms
    except Exception as exc:  # ASE raises many types for malformed files
        raise FrameError(_why_unreadable(path, exc)) from exc
    if n == 0:
        raise FrameError(f"{path}: contains no frames.")


def read_frames(path: str | Path) -> list[Atoms]:
    """Every frame of a file at once (iter_frames' errors); for files small enough to hold."""
    return list(iter_frames(path))


def count_frames(path: str | Path) -> int:
    """How many frames a file holds, reading it through once without keeping them."""
    return sum(1 for _ in iter_frames(path))


# Frames labelled, checked and written at a time: peak memory is this many frames, not the
# file (`python -m bench --rows 7`). A `command` labeller runs once per chunk.
CHUNK_FRAMES = 500


def chunks(frames: Iterable[Atoms], size: int | None = None) -> Iterator[list[Atoms]]:
    """`frames` in lists of up to `size` (default CHUNK_FRAMES)."""
    frames = iter(frames)
    while chunk := list(itertools.islice(frames, size or CHUNK_FRAMES)):
        yield chunk


def _why_unreadable(path: Path, exc: Exception) -> str:
    """A message for a file ASE failed on: for extxyz, locate the problem (line, frame)."""
    generic = (
        f"{path}: ASE could not read it ({type(exc).__name__}: {exc}). Expected an extxyz file "
        "(or another format ASE reads)."
    )
    if path.suffix.lower() not in TEXT_FORMATS:
        return generic
    raw = path.read_bytes()
    if b"\0" in raw[:65536]:
        return f"{path}: this is a binary file, not extxyz text. Check it is the file you meant to ingest."
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return (
                f"{path}, {_frame_at(lines, number)}, line {number}: not UTF-8 text (byte "
                f"0x{line[bad.start]:02x} at column {bad.start + 1}). extxyz files are UTF-8: re-save "
                "the file as UTF-8 or remove the stray characters (often in the comment line)."
            )
    if isinstance(exc, KeyError):
        symbol = str(exc.args[0]) if exc.args else "?"
        for number, line in enumerate(lines, 1):
            if line.split()[:1] == [symbol.encode()]:
                return (
                    f"{path}, {_frame_at(lines, number)}, line {number}, field species: unknown element "
                    f"symbol {symbol!r}. Expected a chemical symbol (Cu, Ni, O, ...) in the first column."
                )
    text = str(exc)
    if "Frame has" in text and "expected" in text:
        return (
            f"{path}: the file ends inside its last frame ({text.split(': ', 1)[-1]}). It is incomplete: "
            "an interrupted write or copy? Write it again, or remove the partial frame."
        )
    return generic + " Check the file is complete and each frame starts with its atom count."


def _frame_at(lines: Sequence[bytes], number: int) -> str:
    """'frame i' holding 1-based line `number` of an extxyz file (atom count, comment, atoms)."""
    index, start = 0, 0
    while start < len(lines):
        try:
            n_atoms = int(lines[start].split()[0])
        except (ValueError, IndexError):
            break
        if number <= start + n_atoms + 2:
            return f"frame {index}"
        start += n_atoms + 2
        index += 1
    return "frame ?"


@contextlib.contextmanager
def frame_writer(path: str | Path) -> Iterator[Callable[[Sequence[Atoms]], None]]:
    """A function appending frames to one extxyz file, for writing a file chunk by chunk.
    Calculator results are dropped (Atoms.copy): labels travel as REF_* keys only."""
    with open(path, "w") as handle:
        yield lambda frames: ase.io.write(handle, [atoms.copy() for atoms in frames], format="extxyz")


def write_frames(path: str | Path, frames: Sequence[Atoms]) -> None:
    """Write frames as extxyz (see frame_writer)."""
    with frame_writer(path) as write:
        write(frames)


def get_label(atoms: Atoms, name: str):
    """The REF_* label `name` of a frame, or None when the frame does not carry it."""
    key = REF_KEYS[name]
    store = atoms.arrays if name in PER_ATOM_LABELS else atoms.info
    value = store.get(key)
    return None if value is None else np.asarray(value, dtype=float)


def set_label(atoms: Atoms, name: str, value) -> None:
    key = REF_KEYS[name]
    value = np.asarray(value, dtype=float)
    if name in PER_ATOM_LABELS:
        atoms.arrays[key] = value.reshape(len(atoms), 3)
    elif name == "energy":
        atoms.info[key] = float(value.item())
    else:
        atoms.info[key] = value.reshape(-1)  # extxyz stores per-frame arrays flat


def labels_present(frames: Iterable[Atoms]) -> list[str]:
    """Label names carried by at least one frame, in REF_KEYS order."""
    found = set()
    for atoms in frames:
        found.update(name for name in REF_KEYS if get_label(atoms, name) is not None)
    return [name for name in REF_KEYS if name in found]


def level_of(atoms: Atoms) -> str:
    """The frame's level of theory; frames labelled before levels were recorded are "unknown"."""
    return str(atoms.info.get(LEVEL_KEY, UNKNOWN_LEVEL))


def frames_at_level(frames: Iterable[Atoms], level: str | None) -> list[Atoms]:
    """The frames labelled at `level`: what a model trained on that level is judged on. All of
    them when `level` is None or no frame carries it (a model of merged levels)."""
    frames = list(frames)
    chosen = [a for a in frames if level_of(a) == level]
    return chosen if chosen else frames


def symbols(numbers: Iterable[int]) -> list[str]:
    """Chemical symbols of atomic numbers, sorted by atomic number, each once."""
    return [ase.data.chemical_symbols[z] for z in sorted({int(z) for z in numbers})]


def elements(frames: Iterable[Atoms]) -> list[str]:
    """Chemical symbols present, sorted by atomic number."""
    return symbols(z for atoms in frames for z in atoms.numbers)


def fingerprint(atoms: Atoms) -> str:
    """sha256 of a frame's structure: species, positions, cell and pbc.

    Coordinates are hashed as the 8-decimal text extxyz writes, so a frame and its copy read
    back from an extxyz file have the same fingerprint (rounding the floats instead would flip
    values that sit near a rounding boundary). Labels are not part of it, so one structure
    labelled twice is recognised as the same frame.
    """
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell[:]):
        text = np.char.mod("%.8f", np.asarray(array, dtype=float).ravel())
        h.update(" ".join(text).replace("-0.00000000", "0.00000000").encode())
        h.update(b";")
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return h.hexdigest()


class FrameTally:
    """Numbers a person wants to see about a set of frames, added up as the frames stream by."""

    def __init__(self):
        self.n_frames, self.n_atoms, self.numbers = 0, 0, set()
        self.config_types: Counter = Counter()
        self.levels: Counter = Counter()
        self.labels: set[str] = set()

    def add(self, frames: Iterable[Atoms]) -> FrameTally:
        for atoms in frames:
            self.n_frames += 1
            self.n_atoms += len(atoms)
            self.numbers.update(int(z) for z in atoms.numbers)
            self.config_types[str(atoms.info.get(CONFIG_TYPE_KEY, "Default"))] += 1
            self.levels[level_of(atoms)] += 1
            self.labels.update(labels_present([atoms]))
        return self

    def add_summary(self, summary: dict) -> FrameTally:
        """Count another tally's frames from its `summary()`: a batch labelled in parts."""
        self.n_frames += summary["n_frames"]
        self.n_atoms += summary["n_atoms"]
        self.numbers.update(ase.data.atomic_numbers[symbol] for symbol in summary["elements"])
        self.config_types.update(summary["config_types"])
        self.levels.update(summary["levels_of_theory"])
        self.labels.update(summary["labels"])
        return self

    def summary(self) -> dict:
        return {
            "n_frames": self.n_frames,
            "n_atoms": self.n_atoms,
            "elements": symbols(self.numbers),
            "config_types": dict(sorted(self.config_types.items())),
            "labels": [name for name in REF_KEYS if name in self.labels],
            "levels_of_theory": dict(sorted(self.levels.items())),
        }


def summarize(frames: Iterable[Atoms]) -> dict:
    return FrameTally().add(frames).summary()


def where(atoms: Atoms) -> str:
    """'batch X, frame i' for messages, from the provenance keys."""
    batch = atoms.info.get(BATCH_KEY, "?")
    index = atoms.info.get(BATCH_INDEX_KEY, "?")
    return f"batch {batch!r}, frame {index}"
