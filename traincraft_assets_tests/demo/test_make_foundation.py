"""Remaking the shipped demo foundation (`python -m traincraft_assets.demo.make_foundation`)."""

import dataclasses
import json

import pytest

from traincraft_assets.core import demo
from traincraft_assets.core.store import file_sha256
from traincraft_assets.core.training.mace import ModelShape
from traincraft_assets.demo.make_foundation import make_demo_foundation


@pytest.mark.integration
def test_the_remake_path_trains_and_writes_a_model_and_its_manifest(tmp_path):
    """What `python -m traincraft_assets.demo.make_foundation` runs, with a tiny budget."""
    tiny = dataclasses.replace(
        demo.DEMO_FOUNDATION, max_num_epochs=1, batch_size=20, shape=ModelShape(8, 0, 4.0, 1, 1), device="cpu"
    )
    manifest = make_demo_foundation(tmp_path / "out", tmp_path / "work", tiny, on_output=lambda line: None)
    assert (tmp_path / "out" / "foundation.model").is_file()
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert written["sha256"] == manifest["sha256"] == file_sha256(tmp_path / "out" / "foundation.model")
    assert written["settings"]["max_num_epochs"] == 1 and "--max_num_epochs" in written["argv"]
    assert written["heldout_errors"]["n_frames"] == demo.HELDOUT_FRAMES_PER_METAL * len(demo.PRETRAINING_METALS)
    assert written["package_versions"]["mace-torch"]
