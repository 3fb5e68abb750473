"""Train/valid/test assignment by a hash of each frame's content.

A frame's side depends only on its structure and the salt, never on the other frames, so a
frame keeps its side when batches are added and two copies of one structure cannot land on
different sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ase import Atoms

from traincraft_assets.core.dataset import FINGERPRINT_KEY
from traincraft_assets.core.frames import fingerprint

SIDES = ("train", "valid", "test")


@dataclass
class SplitSettings:
    valid_fraction: float = field(default=0.1, metadata={"help": "fraction of frames on the valid side (> 0)"})
    test_fraction: float = field(default=0.0, metadata={"help": "fraction on the test side; valid + test < 1"})
    salt: str = field(default="traincraft", metadata={"help": "change it to draw a different (but again stable) split"})


def side_of(frame_fingerprint: str, valid_fraction: float, test_fraction: float, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}:{frame_fingerprint}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if u < valid_fraction:
        return "valid"
    if u < valid_fraction + test_fraction:
        return "test"
    return "train"


def split_frames(
    frames: Sequence[Atoms],
    valid_fraction: float,
    test_fraction: float = SplitSettings.test_fraction,
    salt: str = SplitSettings.salt,
) -> dict[str, list[int]]:
    """Indices of `frames` on each side."""
    if not (0 < valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"split fractions must satisfy 0 < valid_fraction, 0 <= test_fraction and "
            f"valid_fraction + test_fraction < 1; got valid_fraction={valid_fraction}, "
            f"test_fraction={test_fraction}."
        )
    sides: dict[str, list[int]] = {side: [] for side in SIDES}
    for index, atoms in enumerate(frames):
        key = atoms.info.get(FINGERPRINT_KEY) or fingerprint(atoms)
        sides[side_of(key, valid_fraction, test_fraction, salt)].append(index)
    for side, wanted in (("train", True), ("valid", True), ("test", test_fraction > 0)):
        if wanted and not sides[side]:
            raise ValueError(
                f"the {side} side is empty: {len(frames)} frames with valid_fraction="
                f"{valid_fraction}, test_fraction={test_fraction}. Add data or change the fractions."
            )
    return sides
