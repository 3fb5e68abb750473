"""Content-addressed artifact store.

An artifact is a directory built in a temporary place and moved to `<root>/<asset>/<sha256>/`
with one rename, so a reader never sees half an artifact and two writers of the same content
end with the same directory. The sha256 doubles as the asset's Dagster DataVersion.

A staging directory's name says who fills it (`<asset>-<host>-<pid>-...`), so the next write
can remove those of writers that died (a killed run) and never one a live writer owns.
`verify` re-hashes what was published.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from traincraft_assets.core.processes import process_alive
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
        self.remove_stale_staging()
        prefix = f"{kind.asset}-{socket.gethostname()}-{os.getpid()}-"
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=staging_parent))
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

    def stale_staging(self, now: float | None = None) -> list[Path]:
        """Staging directories whose writer is gone: on this host, a dead pid; elsewhere (a
        pod on a shared volume), nothing written for STALE_STAGING_S."""
        parent, host, now = self.root / ".staging", socket.gethostname(), now or time.time()
        stale = []
        for entry in sorted(parent.iterdir()) if parent.is_dir() else []:
            owner = _staging_owner(entry.name)
            if owner and owner[0] == host:
                dead = not process_alive(owner[1], entry.stat().st_mtime)
            else:
                dead = now - max(p.stat().st_mtime for p in [entry, *entry.rglob("*")]) > STALE_STAGING_S
            if dead:
                stale.append(entry)
        return stale

    def remove_stale_staging(self) -> list[Path]:
        stale = self.stale_staging()
        for entry in stale:
            shutil.rmtree(entry, ignore_errors=True)
        return stale

    def verify(self, catalogue: dict[str, type[Artifact]]) -> list[tuple[Path, str]]:
        """Every published artifact re-hashed: (path, problem) for each whose content no longer
        matches its name, each folder the catalogue does not know, and stale staging."""
        problems = []
        for folder in (
            sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            if self.root.is_dir()
            else []
        ):
            if folder.name not in catalogue:
                problems.append((folder, f"not an asset of this project (known: {sorted(catalogue)})"))
                continue
            for artifact in sorted(folder.iterdir()):
                actual = tree_sha256(artifact)
                if actual != artifact.name:
                    problems.append((artifact, f"content changed since it was published: sha256 is now {actual}"))
        problems += [(entry, "staging left by a writer that is gone") for entry in self.stale_staging()]
        return problems

    @property
    def work_root(self) -> Path:
        """Where trainings keep their work directories (checkpoints) until they publish."""
        return self.root / ".training"

    def scratch(self, key: str) -> Path:
        """A folder for work passed between the steps of one run (a batch labelled as several
        steps), on the store's volume so that every pod sees it; `verify` does not look in it."""
        return self.root / ".scratch" / key

    def open(self, kind: type[A], sha256: str) -> A:
        path = self.root / kind.asset / sha256
        if not path.is_dir():
            raise FileNotFoundError(
                f"artifact {kind.asset}/{sha256} is not in the store at {self.root}. "
                f"Was {STORE_ENV} changed since it was written? Point {STORE_ENV} at the store "
                f"that holds it, or produce {kind.asset} again."
            )
        return kind(path, sha256)


STALE_STAGING_S = 24 * 3600.0  # another host's staging untouched this long belongs to no one


def _staging_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) from a staging directory's name `<asset>-<host>-<pid>-<random>`; asset
    names and mkdtemp's random part have no '-', host names may."""
    try:
        host_pid = name.split("-", 1)[1].rsplit("-", 1)[0]
        host, pid = host_pid.rsplit("-", 1)
        return host, int(pid)
    except (IndexError, ValueError):
        return None
