"""`traincraft verify`: is the store what the instance says it is?"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from traincraft_assets.core.artifacts import CATALOGUE
from traincraft_assets.core.store import ArtifactStore
from traincraft_assets.defs import instance


def verify(dagster_instance: dg.DagsterInstance, store_root: Path) -> tuple[int, list[tuple[Path, str]]]:
    """Re-hash every artifact in the store; find changed ones, unknown folders, stale staging,
    and orphans (artifacts no materialization on this instance records). Returns the number
    of artifacts checked and the problems found, as (path, what is wrong)."""
    store = ArtifactStore(store_root)
    problems = store.verify(CATALOGUE)
    checked = 0
    for asset in CATALOGUE:
        folder = store.root / asset
        recorded = instance.recorded_data_versions(dagster_instance, asset)
        for artifact in sorted(folder.iterdir()) if folder.is_dir() else []:
            checked += 1
            if artifact.name not in recorded:
                problems.append((artifact, "orphan: no materialization on this Dagster instance records it"))
    return checked, problems
