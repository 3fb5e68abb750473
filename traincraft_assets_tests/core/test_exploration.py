"""Committee MD: saved frames carry the committee's deviation; a walk stops where the deviation
passes trust_hi and says where; NPT runs on periodic cells and refuses others. The committee is
the shipped demo foundation and a copy of it with one weight changed (real MACE models)."""

import pytest
import torch

from traincraft_assets.core.committee import FORCE_DEVIATION_KEY, TrustLevels
from traincraft_assets.core.demo import SHIPPED_FOUNDATION_DIR, loop_starts
from traincraft_assets.core.exploration import (
    ExploreSettings,
    committee_calculator,
    parse_walk,
    run_walk,
    walk_name,
    walk_names,
)

FOUNDATION = SHIPPED_FOUNDATION_DIR / "foundation.model"


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    """The foundation and a copy whose readout is scaled by 1.05: they disagree a little."""
    model = torch.load(FOUNDATION, map_location="cpu", weights_only=False)
    with torch.no_grad():
        for parameter in model.readouts[0].parameters():
            parameter.mul_(1.05)
    other = tmp_path_factory.mktemp("committee") / "other.model"
    torch.save(model, other)
    return committee_calculator([str(FOUNDATION), str(other)], "cpu")


def _settings(**changes) -> ExploreSettings:
    return ExploreSettings(**{"structures": "-", "steps": 12, "save_interval": 4, "timestep_fs": 1.0, **changes})


def test_a_walk_saves_scored_frames_every_save_interval(committee):
    result = run_walk(loop_starts()[1], 1, 300.0, committee, _settings(trust=TrustLevels(0.0, 10.0)))
    assert [a.info["md_step"] for a in result.frames] == [4, 8, 12]
    assert result.stopped_at is None and result.steps_run == 12
    assert all(0 < a.info[FORCE_DEVIATION_KEY] < 10 for a in result.frames)
    assert {a.info["config_type"] for a in result.frames} == {"surface"}


def test_a_walk_stops_past_trust_hi_and_says_where(committee):
    first = run_walk(loop_starts()[1], 1, 300.0, committee, _settings(trust=TrustLevels(0.0, 10.0)))
    just_below = first.frames[0].info[FORCE_DEVIATION_KEY] * 0.5  # the very first step passes it
    result = run_walk(loop_starts()[1], 1, 300.0, committee, _settings(trust=TrustLevels(0.0, just_below)))
    assert result.stopped_at == 0 and result.steps_run == 0
    assert result.record()["stopped_early"] and result.stop_deviation > just_below
    [failed] = result.frames  # the frame that passed it is kept, to be counted as failed
    assert failed.info["md_step"] == 0


def test_npt_needs_a_periodic_cell(committee):
    bulk, slab = loop_starts()[:2]
    result = run_walk(bulk, 0, 300.0, committee, _settings(ensemble="npt", trust=TrustLevels(0.0, 10.0)))
    assert result.steps_run == 12 and len(result.frames) == 3
    with pytest.raises(ValueError, match="NPT needs a cell"):
        run_walk(slab, 1, 300.0, committee, _settings(ensemble="npt"))


def test_walk_names_round_trip_and_bad_names_are_refused():
    assert walk_names(2, [300, 900.5]) == ["0@300K", "0@900.5K", "1@300K", "1@900.5K"]
    assert parse_walk(walk_name(3, 600)) == (3, 600.0)
    with pytest.raises(ValueError, match="is not <structure index>@<temperature>K"):
        parse_walk("surface-hot")
