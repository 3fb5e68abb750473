"""The shipped demo foundation: made as the code declares, accurate on frames of its own
distribution that it never trained on, staged by `source: demo`; and the remake path runs."""

import dataclasses
import json

import pytest

from traincraft_assets.core import demo
from traincraft_assets.core.artifacts import FoundationModel
from traincraft_assets.core.evaluation import evaluate
from traincraft_assets.core.foundation import FoundationSettings, stage_foundation
from traincraft_assets.core.models import describe_model, load_model
from traincraft_assets.core.store import file_sha256
from traincraft_assets.core.training import Launch
from traincraft_assets.core.training.mace import ModelShape

SHIPPED = demo.SHIPPED_FOUNDATION_DIR


def _manifest():
    return json.loads((SHIPPED / "manifest.json").read_text())


def test_the_shipped_model_is_the_one_its_manifest_describes_made_with_the_declared_settings():
    manifest = _manifest()
    assert manifest["sha256"] == file_sha256(SHIPPED / "foundation.model")
    declared = json.loads(json.dumps(dataclasses.asdict(demo.DEMO_FOUNDATION)))
    assert {**manifest["settings"], "device": "auto"} == declared  # device: where it ran, not what it is
    assert manifest["pool"]["frames_per_metal"] == demo.POOL_FRAMES_PER_METAL
    assert manifest["remake"] == "python -m traincraft_assets.demo.make_foundation"
    info = describe_model(SHIPPED / "foundation.model")
    assert set(info["elements"]) == set(demo.PRETRAINING_METALS)
    assert ModelShape(**info["shape"]) == demo.DEMO_FOUNDATION.shape


def test_the_shipped_foundation_is_accurate_on_its_own_distribution_where_it_never_trained():
    heldout = demo.pretraining_frames(demo.HELDOUT_FRAMES_PER_METAL, heldout=True)
    errors = evaluate(load_model(SHIPPED / "foundation.model"), heldout).overall
    recorded = _manifest()["heldout_errors"]
    assert 1000 * errors["rmse_f"] == pytest.approx(recorded["rmse_f_mev_per_a"], rel=1e-3)
    assert 1000 * errors["rmse_e_per_atom"] == pytest.approx(recorded["rmse_e_mev_per_atom"], rel=1e-3)
    # well below how far the target's level of theory moves forces (~100 meV/Å, core/demo.py)
    assert 1000 * errors["rmse_f"] < 60


def test_source_demo_stages_the_shipped_model_with_how_it_was_made(tmp_path):
    out = FoundationModel(tmp_path / "staging")
    out.path.mkdir()
    info = stage_foundation(FoundationSettings(source="demo"), None, out, print, Launch())
    assert info["sha256"] == _manifest()["sha256"] == file_sha256(out.model_path)
    assert info["made"]["heldout_errors"] == _manifest()["heldout_errors"]
    assert json.loads(out.info_path.read_text())["origin"].startswith("demo (shipped")
