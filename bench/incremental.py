"""Row 3: incremental work. On a fresh project, the first full run labels 10 batches and merges
the dataset (anchor); adding an 11th batch then labels only that one and merges again (target).
Both go through Dagster (one labelled_frames run per partition, then dataset), as the inbox
sensor and the retrain job would."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Project, Row, median

FRAMES_PER_KIND = {"quick": 1, "full": 30}  # 4 kinds: a batch holds 4 x this many frames
N_BATCHES = 10


def write_batches(directory: Path, frames_per_kind: int) -> list[Path]:
    """N_BATCHES + 1 demo target batches, each from its own seed, named batch_00 ..."""
    from traincraft_assets.core.demo import target_batches
    from traincraft_assets.core.frames import write_frames

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(N_BATCHES + 1):
        path = directory / f"batch_{i:02d}.xyz"
        write_frames(path, [a for frames in target_batches(frames_per_kind, seed=100 + i).values() for a in frames])
        paths.append(path)
    return paths


def one_project(root: Path, frames_per_kind: int) -> dict:
    """Seconds and frames labelled: the first full run, then the 11th batch."""
    paths = write_batches(root / "batches", frames_per_kind)
    with Project(root) as project:
        start = time.perf_counter()
        full_frames = sum(project.label(batch) for batch in project.add_batches(paths[:N_BATCHES]))
        project.materialize(["dataset"])
        full_s = time.perf_counter() - start
        start = time.perf_counter()
        new_frames = sum(project.label(batch) for batch in project.add_batches(paths[N_BATCHES:]))
        project.materialize(["dataset"])
        new_s = time.perf_counter() - start
    return {"full_s": full_s, "full_frames": full_frames, "new_s": new_s, "new_frames": new_frames}


def measure(mode: str, repeats: int) -> list[Row]:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_project(Path(tmp), FRAMES_PER_KIND[mode]))
    full, new = median([r["full_s"] for r in runs]), median([r["new_s"] for r in runs])
    frames_full, frames_new = runs[0]["full_frames"], runs[0]["new_frames"]
    per_batch = frames_full / N_BATCHES
    return [
        Row(
            "3",
            "incremental: an 11th batch vs the first full run",
            f"first run ({N_BATCHES} batches)",
            "11th batch",
            full,
            new,
            "s",
            full / new,
            "labels only the new batch",
            frames_new == per_batch,
            f"frames labelled {frames_full} vs {frames_new}; both include merging the dataset; ratio = anchor/target",
            {"runs": runs},
        )
    ]
