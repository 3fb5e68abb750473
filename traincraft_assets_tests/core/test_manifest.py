"""manifest.json carries the package versions next to what the caller recorded."""

import json
from importlib.metadata import version

from traincraft_assets.core.manifest import write_manifest


def test_write_manifest(tmp_path):
    path = write_manifest(tmp_path / "manifest.json", {"strategy": "multihead", "argv": ["--name", "finetuned"]})
    assert path == tmp_path / "manifest.json"
    data = json.loads(path.read_text())
    assert data["strategy"] == "multihead" and data["argv"] == ["--name", "finetuned"]
    versions = data["package_versions"]
    assert versions["mace-torch"] == version("mace-torch")
    assert versions["ase"] == version("ase")
    assert set(versions) >= {"mace-torch", "torch", "dagster", "ase"}
