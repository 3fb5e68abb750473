"""This directory's Dagster home and instance: the one `traincraft`, `traincraft ui`, `dagster
dev` and `dagster asset materialize` share when run from here."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from traincraft_assets.defs.instance import open_instance

HOME = ".dagster_home"


def local_home(directory: Path | None = None) -> Path:
    """`directory`'s Dagster home, ./.dagster_home. With ./dagster.yaml present it is linked in,
    so `dagster dev` with DAGSTER_HOME set here reads the same instance config."""
    directory = directory or Path.cwd()
    home = directory / HOME
    home.mkdir(exist_ok=True)
    config, link = directory / "dagster.yaml", home / "dagster.yaml"
    if config.is_file() and not link.is_symlink() and not link.exists():
        link.symlink_to(config)
    return home


def local_instance() -> dg.DagsterInstance:
    """$DAGSTER_HOME's instance when it is set, else ./.dagster_home's (configured by
    ./dagster.yaml when there is one)."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return open_instance(local_home())
