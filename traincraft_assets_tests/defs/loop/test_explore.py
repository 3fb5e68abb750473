"""`traincraft explore`'s loop (app/explore.py) for one iteration with tiny models: the loop and
its random control arm spend the same labels, both are scored on the held-out test set, and the
table, findings, rank correlation and figure are written."""

import dataclasses
import json
import math

import pytest

from traincraft_assets.app import explore
from traincraft_assets.core.inbox import Inbox
from traincraft_assets.core.settings import load_settings
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, with_session_foundation

pytestmark = pytest.mark.integration

LOOP = {
    "ops": {
        "committee": {"config": {"members": 2, "strategy": "naive", "dtype": "float32", "max_num_epochs": 1}},
        "exploration": {
            "config": {"temperatures_k": [600], "steps": 20, "save_interval": 5, "trust_lo": 1e-6, "trust_hi": 50.0}
        },
        "candidates": {"config": {"max_candidates": 3}},
        "selected_frames": {"config": {"labeller": "emt_morse", "max_iterations": 1}},
    }
}


def test_the_loop_and_its_random_control_spend_the_same_labels(project, graph_run, tmp_path):
    data = tmp_path / "loop_data"
    base = with_session_foundation(graph_run, TINY_RUN_CONFIG)
    config = explore.loop_config(base, LOOP, data / "loop_structures.xyz", quick=False)
    settings = dataclasses.replace(load_settings(), store=project.store, inbox=project.inbox)
    lines = []
    results = explore.run(project.instance, project.defs, settings, config, data, say=lines.append)

    start, first = results["rows"]
    assert (start["n_labelled"], first["n_labelled"]) == (20, 23)
    for row in results["rows"]:
        for arm in ("loop", "random"):
            assert math.isfinite(row[arm]["rmse_f_mev_per_a"]) and math.isfinite(row[arm]["rmse_e_mev_per_atom"])
    assert start["loop"] == pytest.approx(start["random"], rel=0.2)  # the same start, trained alike
    assert 0 <= first["accurate_fraction"] <= 1
    assert -1 <= results["rank_correlation"]["all"] <= 1 and "surface" in results["rank_correlation"]
    assert results["findings"][0].startswith("at 23 labelled frames: committee selection")

    # the control labelled as many frames, from the same walks, with the loop's labeller
    control = [r for r in Inbox(data / "random_arm" / "inbox").registrations() if r["name"].startswith("random-")]
    assert [(r["n_frames"], r["labeller"]) for r in control] == [(3, "emt_morse")]
    assert json.loads((data / "loop_vs_random.json").read_text())["rows"] == json.loads(json.dumps(results["rows"]))
    assert "| 1 | 23 |" in (data / "loop_vs_random.md").read_text()
    assert (data / "loop_vs_random.png").stat().st_size > 10_000
    assert any(line.startswith("iteration 1/1: walk 4/4") for line in lines)
