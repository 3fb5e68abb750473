"""The inbox: one file per data batch, the file name is the batch name.

The rules for taking a file in live here, shared by `traincraft ingest` and the inbox sensor:
every file is read before anything changes; a name is one batch forever (different content
under a known name is refused); the same content again, under its name or another, is a no-op;
a batch's sha256 is recorded when it is registered (`.registry/<name>.json`) and checked again
when the batch is used, so a file edited afterwards is refused, not trained on.

Files dropped straight into the inbox (the sensor's way in) are taken when whole: a file is
considered whole once its size and modification time have not changed for `settle_s` seconds.
Names starting with "." are never taken, so a writer can also write `.name.partial` and rename
it into place when done. Only regular files are taken: a symbolic link (wherever it points) or
a directory is refused without being opened. Registering the batch with the orchestrator is
the caller's job.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from traincraft_assets.core.frames import FrameError, count_frames
from traincraft_assets.core.settings import DEFAULT_INBOX_SETTLE_S
from traincraft_assets.core.store import file_sha256


@dataclass(frozen=True)
class Batch:
    name: str  # the batch (and partition) name: the file name
    path: Path  # the file in the inbox
    n_frames: int
    sha256: str
    new: bool  # False when identical content was already in the inbox


REGISTRY = ".registry"  # <inbox>/.registry/<batch>.json: the sha256 each batch was registered with
RETIRED = ".retired"  # <inbox>/.retired/<batch>: files of retired batches, kept, never taken again


def name_problem(name: str) -> str | None:
    """Why a file name cannot be a batch (and partition) name, or None."""
    if not name.isprintable() or "..." in name:
        return f"the file name {name!r} cannot be a batch name (no '...' and no control characters); rename the file."
    return None


def _retired(*records: dict | None) -> str | None:
    """Why a file is refused because its name or content belongs to a retired batch."""
    for record in records:
        if record and "retired" in record:
            return (
                f"batch {record['name']!r} was retired on {record['retired']['at']} "
                f"({record['retired']['reason']}); its name and content are not taken again. Put "
                "corrected data in a new file under a new name."
            )
    return None


@dataclass
class Scan:
    """One look at the inbox: the batches to register now, what to tell the user (each refusal
    once), and the memory to pass to the next look (`seen`, kept in the sensor's cursor)."""

    new: list[Batch] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # file name -> why
    seen: dict[str, list] = field(default_factory=dict)  # file name -> [size, mtime_ns, verdict]


class Inbox:
    def __init__(self, path: str | Path, settle_s: float = DEFAULT_INBOX_SETTLE_S):
        self.path = Path(path).absolute()
        self.settle_s = settle_s

    def batch_file(self, name: str) -> Path:
        """The file of a registered batch, checked against the sha256 it was registered with."""
        path = self.path / name
        if path.is_symlink() or not path.is_file():
            raise FileNotFoundError(
                f"data batch {name!r} is registered but {path} is "
                f"{'a symbolic link' if path.is_symlink() else 'missing'}. "
                f"Ingest it again with `traincraft ingest <file>` (inbox: {self.path})."
            )
        registered = self.registered(name)
        if registered is not None:
            sha256 = file_sha256(path)
            if sha256 != registered["sha256"]:
                raise FrameError(
                    f"{path}: the file changed after batch {name!r} was registered (sha256 "
                    f"{registered['sha256'][:12]}… at registration, {sha256[:12]}… now). Batches "
                    "are immutable: restore the original file, or add the new content under a new "
                    "name."
                )
        return path

    def registered(self, name: str) -> dict | None:
        """What batch `name` was registered with (sha256, n_frames), None if not recorded."""
        try:
            return json.loads((self.path / REGISTRY / f"{name}.json").read_text())
        except FileNotFoundError:
            return None

    def record(self, batch: Batch, declared: dict | None = None) -> None:
        """Write the batch's registration (idempotent: the same batch writes the same record).
        `declared`: what the batch's maker says about it (`labeller`, `origin`), kept with it."""
        self._write_record({"name": batch.name, "sha256": batch.sha256, "n_frames": batch.n_frames, **(declared or {})})

    def declared_labeller(self, name: str) -> str | None:
        """The labeller batch `name` was ingested with (`traincraft ingest --labeller`, or the
        loop's selected_frames), None when it declares none."""
        return (self.registered(name) or {}).get("labeller")

    def _write_record(self, record: dict) -> None:
        registry = self.path / REGISTRY
        registry.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=registry, prefix=".", delete=False) as tmp:
            tmp.write(json.dumps(record))
        os.replace(tmp.name, registry / f"{record['name']}.json")

    def retire(self, name: str, reason: str) -> Path:
        """Take batch `name` out of future datasets: its file moves to `.retired/` (kept, for the
        models already trained on it) and its registration records why and when. The name and
        the content stay taken: dropping either in again is refused. Returns the file's new place."""
        if not reason.strip():
            raise FrameError(f'say why batch {name!r} is retired (--reason "..."): the reason is kept with it.')
        registered = self.registered(name)
        if registered is None and (self.path / name).is_file():  # registered before the registry existed
            registered = {"name": name, "sha256": file_sha256(self.path / name), "n_frames": -1}
        if registered is None:
            known = sorted(r["name"] for r in self.registrations() if "retired" not in r)
            raise FrameError(
                f"no batch named {name!r} in the inbox {self.path}; registered batches: {known or 'none'}."
            )
        if "retired" in registered:
            raise FrameError(
                f"batch {name!r} was already retired on {registered['retired']['at']}: {registered['retired']['reason']}"
            )
        source = self.path / name
        target = self.path / RETIRED / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        registered["retired"] = {"reason": reason.strip(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._write_record(registered)
        return target

    def scan(self, known: set[str], seen: dict[str, list], now: float | None = None) -> Scan:
        """Look at every entry of the inbox once. `known`: the batches the orchestrator has
        registered; `seen`: the previous scan's memory. A file is hashed, parsed and judged
        only when its size or modification time changed since it was last judged."""
        now = time.time() if now is None else now
        scan = Scan()
        registrations = self.registrations()
        by_content = {r["sha256"]: r["name"] for r in registrations if "retired" not in r}
        by_retired = {r["sha256"]: r for r in registrations if "retired" in r}
        entries = sorted(self.path.iterdir(), key=lambda p: p.name) if self.path.is_dir() else []
        for path in entries:
            name = path.name
            if name.startswith("."):
                continue
            info = path.lstat()
            fingerprint = [info.st_size, info.st_mtime_ns]
            if seen.get(name, [None, None])[:2] == fingerprint:
                scan.seen[name] = seen[name]
                continue
            verdict = self._judge(path, info, name in known, by_content, by_retired, now, scan)
            if verdict is not None:
                scan.seen[name] = [*fingerprint, verdict]
        return scan

    def _judge(
        self, path: Path, info: os.stat_result, known: bool, by_content: dict, by_retired: dict, now: float, scan: Scan
    ):
        """The verdict on one changed entry ("taken", "same", "refused"), or None to look again
        next time (still being written)."""
        name = path.name
        if stat.S_ISLNK(info.st_mode):
            scan.refused[name] = (
                f"{path} is a symbolic link; the inbox takes regular files only and never follows "
                "links. Copy the file into the inbox (or use `traincraft ingest <file>`)."
            )
            return "refused"
        if not stat.S_ISREG(info.st_mode):
            scan.refused[name] = (
                f"{path} is not a regular file (a directory?); put one batch file per name in the inbox."
            )
            return "refused"
        if name_problem(name):
            scan.refused[name] = f"{path}: {name_problem(name)}"
            return "refused"
        if now - info.st_mtime < self.settle_s:
            return None  # may still be being written
        sha256 = file_sha256(path)
        registered = self.registered(name)
        retired = _retired(registered, by_retired.get(sha256))
        if retired:
            scan.refused[name] = f"{path}: {retired}"
            return "refused"
        if registered is not None and registered["sha256"] != sha256:
            scan.refused[name] = (
                f"{path}: batch {name!r} is already registered with different content (sha256 "
                f"{registered['sha256'][:12]}…, now {sha256[:12]}…). Batches are immutable: "
                "restore the file, or put the new content under a new name."
            )
            return "refused"
        if known:
            if registered is None:  # registered before the registry existed: record it as it is
                self.record(Batch(name, path, -1, sha256, new=False))
            return "same"
        owner = by_content.get(sha256, name)
        if owner != name:
            scan.refused[name] = f"{path} has the same content as batch {owner!r}; nothing to do. Remove the copy."
            return "refused"
        try:
            n_frames = count_frames(path)
        except Exception as exc:  # anything a malformed file raises: report it, never crash the sensor
            why = (
                str(exc)
                if isinstance(exc, FrameError)
                else f"{path}: cannot be read as a batch file ({type(exc).__name__}: {exc})."
            )
            scan.refused[name] = f"{why} The file stays in the inbox untaken; replace it (same name) with a fixed file."
            return "refused"
        batch = Batch(name, path, n_frames, sha256, new=True)
        self.record(batch)
        by_content[sha256] = name
        scan.new.append(batch)
        return "taken"

    def registrations(self) -> list[dict]:
        """Every batch ever registered (retired ones too), by name."""
        registry = self.path / REGISTRY
        if not registry.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(registry.glob("*.json"))]

    def ingest(self, paths: Sequence[Path], declared: dict | None = None) -> list[Batch]:
        """Check every file, then copy the new ones in; nothing changes if any file is refused.
        `declared` (labeller, origin) is recorded with each new batch."""
        paths = [Path(p) for p in paths]
        names = [path.name for path in paths]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise FrameError(
                f"several files are named {repeated}; the file name is the batch name, so rename them before ingesting."
            )
        checked = []
        registrations = self.registrations()
        by_content = {r["sha256"]: r["name"] for r in registrations if "retired" not in r}
        by_retired = {r["sha256"]: r for r in registrations if "retired" in r}
        for path in paths:
            if name_problem(path.name):
                raise FrameError(f"{path}: {name_problem(path.name)}")
            n_frames = count_frames(path)
            sha256 = file_sha256(path)
            retired = _retired(self.registered(path.name), by_retired.get(sha256))
            if retired:
                raise FrameError(f"{path}: {retired}")
            if by_content.get(sha256, path.name) != path.name:  # a renamed copy: that batch already
                existing = by_content[sha256]
                checked.append(Batch(existing, self.path / existing, n_frames, sha256, new=False))
                continue
            by_content[sha256] = path.name
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
                self.record(batch, declared)
            elif self.registered(batch.name) is None:  # ingested before the registry existed
                self.record(batch, declared)
        return checked

    def _place(self, source: Path, target: Path) -> None:
        """Copy beside the target, then rename: a reader never sees half a file."""
        with tempfile.NamedTemporaryFile(dir=self.path, prefix=".incoming-", delete=False) as tmp:
            shutil.copyfile(source, tmp.name)
        os.replace(tmp.name, target)
