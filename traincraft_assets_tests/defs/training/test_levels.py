"""Two levels of theory in one project, through the graph: the session's demo batches at the
target's level (emt_morse) and a new batch labelled here at a cheaper one (emt). The dataset
keeps both; a single-head fine-tune is stopped in the run's first step naming both levels; a
multifidelity training gives each level its own head, deploys the chosen one, and the parity
report judges each head on its own level's valid frames."""

import ast
import json
from pathlib import Path

import pytest

from traincraft_assets.core.artifacts import Split
from traincraft_assets.core.frames import level_of, read_frames, write_frames
from traincraft_assets.core.labelling import LabelOptions, level_of_theory
from traincraft_assets.core.models import TARGET_HEAD, load_model
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG
from traincraft_assets_tests.core.helpers import cu_bulk

pytestmark = pytest.mark.integration

TRAIN = ["dataset", "split", "finetuned_model", "parity_report"]
CHEAP, EXPENSIVE = (level_of_theory(name, LabelOptions()) for name in ("emt", "emt_morse"))


@pytest.fixture
def two_levels(graph_copy, tmp_path):
    """The session's graph (its batches at the target's level) plus 12 Cu frames labelled with
    `emt` here."""
    path = tmp_path / "cu_cheap.xyz"
    write_frames(path, [cu_bulk(rattle=0.05, seed=100 + k, repeat=1) for k in range(12)])
    batch = graph_copy.add_batch(path)
    graph_copy.label(batch, {"ops": {"labelled_frames": {"config": {"labeller": "emt"}}}})
    assert graph_copy.latest("labelled_frames", batch).metadata["levels_of_theory"].value == {CHEAP: 12}
    return graph_copy


def _config(**finetuned):
    return {
        "ops": {
            "finetuned_model": {"config": {**TINY_RUN_CONFIG["ops"]["finetuned_model"]["config"], **finetuned}},
            "split": TINY_RUN_CONFIG["ops"]["split"],
            "quality_gates": TINY_RUN_CONFIG["ops"]["quality_gates"],
        }
    }


def test_a_single_head_fine_tune_on_two_levels_stops_before_anything_is_written(two_levels):
    result = two_levels.materialize(TRAIN, _config(), raise_on_error=False)
    assert not result.success and not [e for e in result.all_events if e.is_step_success]
    message = "\n".join(
        e.step_failure_data.user_failure_data.description for e in result.all_events if e.is_step_failure
    )
    assert "nothing was run or written" in message
    assert f"{CHEAP!r}" in message and f"{EXPENSIVE!r}" in message and "'multifidelity'" in message


def test_multifidelity_trains_a_head_per_level_and_parity_judges_each_on_its_own_level(two_levels):
    config = _config(
        strategy="multifidelity", level=EXPENSIVE, e0s="average", num_channels=8, max_L=0, r_max=4.0, lr=0.01
    )
    two_levels.materialize(TRAIN, config)
    dataset = two_levels.latest("dataset").metadata
    assert dataset["levels_of_theory"].value == {CHEAP: 12, EXPENSIVE: 16}

    model = two_levels.latest("finetuned_model").metadata
    manifest = json.loads((Path(model["artifact_path"].value) / "manifest.json").read_text())
    assert manifest["level_of_theory"] == EXPENSIVE
    heads = manifest["head_levels"]
    assert heads[TARGET_HEAD] == EXPENSIVE and set(heads.values()) == {CHEAP, EXPENSIVE}
    # the heads config MACE was given is the one the manifest records
    argv = manifest["argv"]
    assert manifest["heads_config"] == ast.literal_eval(argv[argv.index("--heads") + 1])
    # the deployed model is the expensive level's head alone
    assert list(load_model(Path(model["artifact_path"].value) / manifest["deploy_model"]).heads) == [TARGET_HEAD]

    report = two_levels.latest("parity_report").metadata
    parity = json.loads(Path(report["report_path"].value).read_text())
    valid = read_frames(Split(Path(two_levels.latest("split").metadata["artifact_path"].value)).valid_path)
    per_level = {level: sum(level_of(a) == level for a in valid) for level in (CHEAP, EXPENSIVE)}
    # the contract numbers are the deployed head's, on the expensive level's valid frames only
    assert parity["level_of_theory"] == EXPENSIVE and report["n_valid"].value == per_level[EXPENSIVE]
    rows = {row["head"]: row for row in parity["heads"]}
    assert set(rows) == set(heads)
    for head, level in heads.items():
        assert per_level[level] > 0 and rows[head]["n_frames"] == per_level[level]
        assert rows[head]["level_of_theory"] == level and rows[head]["rmse_f_mev_per_a"] > 0
    assert "per_head" in report
