"""Content-addressed artifact store.

An artifact is a directory built in a temporary place and moved to `<root>/<asset>/<sha256>/`
with one rename, so a reader never sees half an artifact and two writers of the same content
end with the same directory. The sha256 doubles as the asset's Dagster DataVersion.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, TypeVar

from traincraft_assets.core.settings import STORE_ENV

T = TypeVar("T")


@dataclass(frozen=True)
class Artifact:
    """One artifact directory. Subclasses in core/artifacts.py name the asset folder and the
    files inside; `sha256` is empty while the directory is still being filled (staging)."""

    asset: ClassVar[str]
    path: Path
    sha256: str = ""


A = TypeVar("A", bound=Artifact)


def tree_sha256(directory: Path) -> str:
    """sha256 over the relative paths and bytes of every file under `directory`."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(path.relative_to(directory).as_posix().encode())
        h.update(b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()

    def write(self, kind: type[A], fill: Callable[[A], T]) -> tuple[A, T]:
        """Run `fill(staging)` on an empty artifact of `kind`, then publish it; return the
        published artifact and fill's result.

        If `fill` raises, the staging directory is removed and nothing appears in the store.
        """
        staging_parent = self.root / ".staging"
        staging_parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{kind.asset}-", dir=staging_parent))
        try:
            result = fill(kind(staging))
            return self.publish(kind, staging), result
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def publish(self, kind: type[A], staging: Path) -> A:
        """Move a finished staging directory into place under its content hash."""
        digest = tree_sha256(staging)
        staging.chmod(0o755)  # mkdtemp makes it 0700; pods on a shared volume may run as other users
        final = self.root / kind.asset / digest
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, final)
        except OSError:
            # Same content already published (rename onto a non-empty directory fails):
            # the existing copy is identical by construction, keep it.
            if not final.is_dir():
                raise
        return kind(final, digest)

    @property
    def work_root(self) -> Path:
        """Where trainings keep their work directories (checkpoints) until they publish."""
        return self.root / ".training"

    def open(self, kind: type[A], sha256: str) -> A:
        path = self.root / kind.asset / sha256
        if not path.is_dir():
            raise FileNotFoundError(
                f"artifact {kind.asset}/{sha256} is not in the store at {self.root}. "
                f"Was {STORE_ENV} changed since it was written? Point {STORE_ENV} at the store "
                f"that holds it, or produce {kind.asset} again."
            )
        return kind(path, sha256)
