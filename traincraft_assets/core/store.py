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
from typing import Callable, TypeVar

T = TypeVar("T")

DEFAULT_ROOT = ".traincraft/store"


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str

    def file(self, name: str) -> Path:
        return self.path / name


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
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or os.environ.get("TRAINCRAFT_STORE") or DEFAULT_ROOT).absolute()

    def write(self, asset: str, fill: Callable[[Path], T]) -> tuple[Artifact, T]:
        """Run `fill(staging_dir)`, then publish the directory; return the artifact and fill's result.

        If `fill` raises, the staging directory is removed and nothing appears in the store.
        """
        staging_parent = self.root / ".staging"
        staging_parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{asset}-", dir=staging_parent))
        try:
            result = fill(staging)
            return self.publish(asset, staging), result
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def publish(self, asset: str, staging: Path) -> Artifact:
        """Move a finished staging directory into place under its content hash."""
        digest = tree_sha256(staging)
        staging.chmod(0o755)  # mkdtemp makes it 0700; pods on a shared volume may run as other users
        final = self.root / asset / digest
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, final)
        except OSError:
            # Same content already published (rename onto a non-empty directory fails):
            # the existing copy is identical by construction, keep it.
            if not final.is_dir():
                raise
        return Artifact(final, digest)

    def open(self, asset: str, sha256: str) -> Artifact:
        path = self.root / asset / sha256
        if not path.is_dir():
            raise FileNotFoundError(
                f"artifact {asset}/{sha256} is not in the store at {self.root}. "
                "Was TRAINCRAFT_STORE changed since it was materialized? "
                f"Re-materialize {asset!r} or point TRAINCRAFT_STORE at the store that holds it."
            )
        return Artifact(path, sha256)
