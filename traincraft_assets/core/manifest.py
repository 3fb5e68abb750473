"""manifest.json: everything needed to know exactly how a model was made (docs: Outputs and contracts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from traincraft_assets.core.frames import LEVEL_KEY

TRACKED_PACKAGES = ("mace-torch", "torch", "dagster", "ase", "traincraft_assets")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def trained_properties(manifest: dict) -> dict[str, list[str]]:
    """Per head, the properties the training fitted, as the trainer's own log says (empty for
    a model trained before this was recorded)."""
    return {head: record["fitted"] for head, record in manifest.get("effective", {}).get("heads", {}).items()}


def model_level(manifest: dict) -> str | None:
    """The level of theory the model deploys (None for a model trained before levels were
    recorded): the frames it is judged on."""
    return manifest.get(LEVEL_KEY)


def head_levels(manifest: dict) -> dict[str, str]:
    """A multifidelity model's heads and the level each predicts ({} for other models)."""
    return manifest.get("head_levels", {})


def write_manifest(path: Path, manifest: dict) -> Path:
    """Write `manifest` with the package versions of this environment added."""
    Path(path).write_text(json.dumps({**manifest, "package_versions": package_versions()}, indent=1))
    return Path(path)
