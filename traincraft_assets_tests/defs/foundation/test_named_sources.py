"""Named MACE foundations and replay sets through the real assets, offline.

This machine cannot reach MACE's download hosts, so MACE's cache is pre-seeded with real files
(the session's tiny foundation and pool) under the names MACE would download them to. That
stands in for the download; everything after it (MACE's own cache lookup, staging into the
store, describing the model, selecting replay) runs for real.
"""

import shutil
from pathlib import Path

import pytest

from traincraft_assets.core.foundation import NAMED_REPLAY_SETS, mace_cache_path

pytestmark = pytest.mark.integration


def _artifact(graph_run, asset) -> Path:
    return Path(graph_run.latest(asset).metadata["artifact_path"].value)


def test_named_foundation_and_replay_set_are_staged_from_maces_cache(project, graph_run, tmp_path, monkeypatch):
    from mace.calculators.foundations_models import mace_mp_urls

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model_cache = mace_cache_path(mace_mp_urls["medium"])
    replay_cache = mace_cache_path(NAMED_REPLAY_SETS["mp"])
    model_cache.parent.mkdir(parents=True)
    shutil.copyfile(_artifact(graph_run, "foundation_model") / "foundation.model", model_cache)
    shutil.copyfile(_artifact(graph_run, "pretraining_frames") / "pool.xyz", replay_cache)

    result = project.materialize(
        ["pretraining_frames", "foundation_model"],
        {
            "ops": {
                "pretraining_frames": {"config": {"source": "named", "name": "mp"}},
                "foundation_model": {"config": {"source": "named", "name": "mp0"}},  # alias of medium
            }
        },
    )
    assert result.success
    foundation = project.latest("foundation_model")
    staged = Path(foundation.metadata["model_path"].value)
    assert staged.is_relative_to(project.store) and staged.read_bytes() == model_cache.read_bytes()
    assert foundation.metadata["origin"].value == "medium"
    assert foundation.metadata["elements"].value == ["Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"]
    pool = project.latest("pretraining_frames")
    assert pool.metadata["source"].value == str(replay_cache)
    assert pool.metadata["n_frames"].value == graph_run.latest("pretraining_frames").metadata["n_frames"].value


def test_unknown_named_model_fails_listing_the_valid_names(project):
    result = project.materialize(
        ["foundation_model"],
        {"ops": {"foundation_model": {"config": {"source": "named", "name": "huge"}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = (
        failure.step_failure_data.error.cause.message
        if failure.step_failure_data.error.cause
        else failure.step_failure_data.error.message
    )
    assert "unknown MACE foundation 'huge'" in message and "medium-mpa-0" in message


@pytest.mark.parametrize("content", ["text", "state_dict"])
def test_a_path_that_is_not_a_mace_model_fails_clearly_and_stages_nothing(project, tmp_path, content):
    import torch

    path = tmp_path / f"{content}.model"
    if content == "text":
        path.write_text("not a model\n")
    else:
        torch.save({"weight": torch.zeros(2)}, path)
    result = project.materialize(
        ["foundation_model"],
        {"ops": {"foundation_model": {"config": {"source": "path", "path": str(path)}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    message = error.message + (error.cause.message if error.cause else "")
    assert f"{path}: not a MACE model" in message and "Expected a .model file written by MACE" in message
    assert not list((project.store / "foundation_model").glob("*"))
