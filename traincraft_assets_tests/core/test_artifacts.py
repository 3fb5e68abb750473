"""The artifact catalogue: typed artifacts, written and read through the same accessors."""

import json

import pytest

from traincraft_assets.core.artifacts import CATALOGUE, FinetunedModel, Split
from traincraft_assets.core.store import ArtifactStore


def test_fill_gets_a_typed_staging_artifact_and_open_returns_the_same_kind(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    seen = []

    def fill(staging):
        seen.append(staging)
        staging.train_path.write_text("train")
        staging.valid_path.write_text("valid")

    split, _ = store.write(Split, fill)
    assert isinstance(seen[0], Split) and seen[0].sha256 == ""  # still staging
    assert isinstance(split, Split) and split.path == store.root / "split" / split.sha256
    assert split.train_path.read_text() == "train"
    assert list(split.present_sides()) == ["train", "valid"]  # no test side was written
    assert not split.test_path.exists()
    assert store.open(Split, split.sha256).valid_path.read_text() == "valid"
    with pytest.raises(ValueError, match="unknown split side 'holdout'"):
        split.side_path("holdout")


def test_deploy_model_is_the_one_the_manifest_names(tmp_path):
    store = ArtifactStore(tmp_path / "store")

    def fill(staging):
        staging.model_path.write_bytes(b"two heads")
        staging.deploy_target.write_bytes(b"one head")
        staging.manifest_path.write_text(json.dumps({"deploy_model": staging.deploy_target.name}))

    model, _ = store.write(FinetunedModel, fill)
    assert model.deploy_model_path.read_bytes() == b"one head"
    assert model.manifest_path.name == "manifest.json"  # a contract with users (docs: Outputs and contracts)


def test_every_asset_has_its_own_folder():
    folders = [kind.asset for kind in CATALOGUE.values()]
    assert len(set(folders)) == len(folders) == 18  # champion_model, the comparison, the loop and the spectra included
    assert all(name == kind.asset for name, kind in CATALOGUE.items())
