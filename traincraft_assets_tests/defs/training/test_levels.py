"""Two levels of theory in one project, through the graph: the session's demo batches at the
target's level (emt_morse) and a new batch labelled here at a cheaper one (emt). The dataset
keeps both; a single-head fine-tune is stopped in the run's first step naming both levels; a
multifidelity training gives each level its own head, deploys the chosen one, and the parity
report judges each head on its own level's valid frames; the sequential recipe pre-trains a
foundation on the cheap level's train frames and fine-tunes it on the expensive level."""

import ast
import json
from pathlib import Path

import pytest

from traincraft_assets.core.artifacts import Dataset, LabelledFrames, PretrainingFrames, Split
from traincraft_assets.core.frames import fingerprint, level_of, read_frames, write_frames
from traincraft_assets.core.labelling import LabelOptions, level_of_theory
from traincraft_assets.core.models import TARGET_HEAD, load_model
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG
from traincraft_assets_tests.core.helpers import cu_bulk

pytestmark = pytest.mark.integration

TRAIN = ["dataset", "split", "finetuned_model", "parity_report"]
CHEAP, EXPENSIVE = (level_of_theory(name, LabelOptions()) for name in ("emt", "emt_morse"))
N_CHEAP = 24


@pytest.fixture
def two_levels(graph_copy, tmp_path):
    """The session's graph (its batches at the target's level) plus 12 Cu frames labelled with
    `emt` here."""
    path = tmp_path / "cu_cheap.xyz"
    write_frames(path, [cu_bulk(rattle=0.05, seed=100 + k, repeat=1) for k in range(N_CHEAP)])
    batch = graph_copy.add_batch(path)
    graph_copy.label(batch, {"ops": {"labelled_frames": {"config": {"labeller": "emt"}}}})
    assert graph_copy.latest("labelled_frames", batch).metadata["levels_of_theory"].value == {CHEAP: N_CHEAP}
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
    assert dataset["levels_of_theory"].value == {CHEAP: N_CHEAP, EXPENSIVE: 16}

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


def test_multifidelity_with_a_replay_head_fine_tunes_the_foundation_and_measures_its_forgetting(two_levels):
    """replay_head: the foundation fine-tuned with a head per level plus MACE's replay head; the
    expensive head is deployed alone, and parity judges the replay head on the held-out replay
    frames as it does for multihead."""
    config = _config(strategy="multifidelity", replay_head=True, level=EXPENSIVE, e0s="average", lr=0.01)
    config["ops"]["replay_subset"] = TINY_RUN_CONFIG["ops"]["replay_subset"]
    two_levels.materialize([*TRAIN[:2], "replay_subset", *TRAIN[2:]], config)
    artifact = _artifact(two_levels, "finetuned_model")
    manifest = json.loads((artifact / "manifest.json").read_text())
    argv = manifest["argv"]
    assert argv[argv.index("--multiheads_finetuning") + 1] == "True"
    assert manifest["replay_levels_of_theory"] and manifest["head_levels"][TARGET_HEAD] == EXPENSIVE
    heads = manifest["effective"]["heads"]  # what MACE's log says it trained
    assert set(heads) == {"pt_head", *manifest["head_levels"]}, heads
    assert list(load_model(artifact / manifest["deploy_model"]).heads) == [TARGET_HEAD]
    report = two_levels.latest("parity_report").metadata
    assert report["replay_head_forgetting_f_ratio"].value > 0 and "per_head" in report


def _artifact(project, asset: str, partition: str | None = None) -> Path:
    return Path(project.latest(asset, partition).metadata["artifact_path"].value)


def test_sequential_pre_trains_on_the_cheap_level_and_fine_tunes_on_the_expensive_one(two_levels, tmp_path):
    """pretraining_frames from the labelled batches' cheap level, a foundation trained on it from
    scratch, then a naive fine-tune of that foundation on the expensive level. Structures labelled
    at both levels are the fine-tuned model's own: they stay out of pre-training."""
    expensive_batch = next(b for b in two_levels.instance.get_dynamic_partitions("data_batches") if "cheap" not in b)
    expensive = LabelledFrames(_artifact(two_levels, "labelled_frames", expensive_batch))
    both = tmp_path / "cu_both.xyz"
    write_frames(both, read_frames(expensive.frames_path)[:4])
    two_levels.label(two_levels.add_batch(both), {"ops": {"labelled_frames": {"config": {"labeller": "emt"}}}})

    config = _config(strategy="naive", level=EXPENSIVE, e0s="average")
    config["ops"]["pretraining_frames"] = {"config": {"source": "batches", "level": CHEAP}}
    config["ops"]["foundation_model"] = {
        "config": {**TINY_RUN_CONFIG["ops"]["foundation_model"]["config"], "batch_size": 2}
    }
    two_levels.materialize(["pretraining_frames", "foundation_model", "dataset", "split", "finetuned_model"], config)

    pool = read_frames(PretrainingFrames(_artifact(two_levels, "pretraining_frames")).frames_path)
    assert len(pool) == N_CHEAP and {level_of(a) for a in pool} == {CHEAP}
    dataset = read_frames(Dataset(_artifact(two_levels, "dataset")).frames_path)
    assert sum(level_of(a) == CHEAP for a in dataset) == N_CHEAP + 4
    # no structure the fine-tuned model trains, validates or is tested on was pre-trained on
    assert not {fingerprint(a) for a in pool} & {fingerprint(a) for a in dataset if level_of(a) == EXPENSIVE}

    foundation = two_levels.latest("foundation_model").metadata
    assert foundation["origin"].value == "scratch"
    manifest = json.loads((_artifact(two_levels, "finetuned_model") / "manifest.json").read_text())
    assert manifest["level_of_theory"] == EXPENSIVE and set(manifest["data_levels_of_theory"]) == {CHEAP, EXPENSIVE}
    # the fine-tuned model starts from that foundation
    assert manifest["data_versions"]["foundation_model"] == foundation["artifact_sha256"].value
    assert manifest["foundation"]["sha256"] == foundation["model_sha256"].value
    assert manifest["argv"][manifest["argv"].index("--multiheads_finetuning") + 1] == "False"


def test_a_pool_of_batches_without_a_level_is_refused_naming_the_levels(two_levels):
    config = {"ops": {"pretraining_frames": {"config": {"source": "batches"}}}}
    result = two_levels.materialize(["pretraining_frames"], config, raise_on_error=False)
    assert not result.success
    message = "\n".join(
        e.step_failure_data.user_failure_data.description for e in result.all_events if e.is_step_failure
    )
    assert "nothing was run or written" in message and "set `level`" in message
    assert f"{CHEAP!r}" in message and f"{EXPENSIVE!r}" in message
