"""The inbox: one file per data batch, the file name is the batch name.

The rules for taking a file in live here, shared by `traincraft ingest` and (later) the inbox
sensor: every file is read before anything changes, a name is one batch forever (different
content under a known name is refused), the same content again is a no-op, and a file appears
in the inbox whole (copied aside, then renamed into place). Registering the batch with the
orchestrator is the caller's job.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from traincraft_assets.core.frames import FrameError, read_frames
from traincraft_assets.core.store import file_sha256


@dataclass(frozen=True)
class Batch:
    name: str  # the batch (and partition) name: the file name
    path: Path  # the file in the inbox
    n_frames: int
    sha256: str
    new: bool  # False when identical content was already in the inbox


class Inbox:
    def __init__(self, path: str | Path):
        self.path = Path(path).absolute()

    def batch_file(self, name: str) -> Path:
        """The file of a registered batch."""
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(
                f"data batch {name!r} is registered but {path} does not exist. "
                f"Ingest it again with `traincraft ingest <file>` (inbox: {self.path})."
            )
        return path

    def ingest(self, paths: Sequence[Path]) -> list[Batch]:
        """Check every file, then copy the new ones in; nothing changes if any file is refused."""
        paths = [Path(p) for p in paths]
        names = [path.name for path in paths]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise FrameError(
                f"several files are named {repeated}; the file name is the batch name, so rename "
                "them before ingesting."
            )
        checked = []
        for path in paths:
            n_frames = len(read_frames(path))
            sha256 = file_sha256(path)
            target = self.path / path.name
            if target.exists() and file_sha256(target) != sha256:
                raise FrameError(
                    f"{path}: a different batch named {path.name!r} is already in the inbox "
                    f"({target}). Batches are immutable; give the new file a new name."
                )
            checked.append(Batch(path.name, target, n_frames, sha256, new=not target.exists()))
        self.path.mkdir(parents=True, exist_ok=True)
        for source, batch in zip(paths, checked):
            if batch.new:
                self._place(source, batch.path)
        return checked

    def _place(self, source: Path, target: Path) -> None:
        """Copy beside the target, then rename: a reader never sees half a file."""
        with tempfile.NamedTemporaryFile(dir=self.path, prefix=".incoming-", delete=False) as tmp:
            shutil.copyfile(source, tmp.name)
        os.replace(tmp.name, target)
