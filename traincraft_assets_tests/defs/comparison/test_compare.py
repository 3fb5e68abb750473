"""`traincraft compare` on the session's tiny graph: every arm is its own real run of a real
MACE training (tiny models, all training frames, 2 epochs), then one table and two figures.

Four of the six trained arms run here (`--arms`), the ones the findings compare; the other two
(frozen, lora) are the same path with other settings (core/test_comparison.py) and train for
real in core/training/mace/test_strategies.py. The table then names the arms left out."""

import json
import math

import pytest

from traincraft_assets.app import comparison as compare
from traincraft_assets.app.comparison import arm_run_config
from traincraft_assets.core.comparison import ARMS, QUICK, ZERO_SHOT
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.training.mace.settings import DEFAULT_LR
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, copied_project, with_session_foundation

pytestmark = pytest.mark.integration


ARM_CONFIG = {"dtype": "float32", "lr": 0.005, "batch_size": 4, "sizes": [0], "max_num_epochs": 2}  # 0: all
TRAINED = ["naive", "naive_average_e0s", "multihead", "scratch"]
LEFT_OUT = [arm for arm in ARMS if arm not in TRAINED]


def test_quick_puts_its_small_budget_over_the_configured_one():
    quick = arm_run_config({"ops": {"strategy_arm": {"config": ARM_CONFIG}}}, quick=True)["ops"]["strategy_arm"][
        "config"
    ]
    assert quick == {**ARM_CONFIG, "sizes": list(QUICK["sizes"]), "max_num_epochs": QUICK["max_num_epochs"]}
    assert (
        arm_run_config({"ops": {"strategy_arm": {"config": ARM_CONFIG}}}, quick=False)["ops"]["strategy_arm"]["config"]
        == ARM_CONFIG
    )


def _flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


@pytest.fixture(scope="module")
def comparison(graph_run, tmp_path_factory):
    """The comparison run on a copy of the session's graph (its split, replay and foundation)."""
    config = with_session_foundation(
        graph_run, {**TINY_RUN_CONFIG, "ops": {**TINY_RUN_CONFIG["ops"], "strategy_arm": {"config": ARM_CONFIG}}}
    )
    with copied_project(graph_run, tmp_path_factory.mktemp("compare")) as project:
        content = compare.run(
            project.instance,
            project.defs,
            config,
            tmp_path_factory.mktemp("batches"),
            project.inbox,
            arms=[ZERO_SHOT, *TRAINED],
            say=print,
        )
        yield project, content


def test_every_arm_is_one_run_of_its_own_partition(comparison):
    project, _ = comparison
    for arm in [ZERO_SHOT, *TRAINED]:
        event = project.latest("strategy_arm", arm)
        assert event is not None and event.metadata["arm"].value == arm
    runs = {r.tags.get("dagster/partition") for r in project.instance.get_runs() if r.job_name == "compare_strategies"}
    assert runs == {ZERO_SHOT, *TRAINED}
    assert all(project.latest("strategy_arm", arm) is None for arm in LEFT_OUT)


def test_each_arm_trains_its_strategy_at_every_size_on_the_same_budget(comparison):
    project, _ = comparison
    store = project.defs.resources["store"].store()
    sizes = [len(read_frames(next((project.store / "split").glob("*/train.xyz"))))]
    argv = {}
    for arm in TRAINED:
        artifact_path = project.latest("strategy_arm", arm).metadata["artifact_path"].value
        record = json.loads(
            (store.root / "strategy_arm" / artifact_path.rsplit("/", 1)[-1] / "results.json").read_text()
        )
        assert [row["n_train"] for row in record["rows"]] == sizes
        for row in record["rows"]:
            assert _flag(row["argv"], "--max_num_epochs") == str(ARM_CONFIG["max_num_epochs"])
            assert row["wall_s"] > 0
        argv[arm] = record["rows"][-1]["argv"]
    assert _flag(argv["multihead"], "--multiheads_finetuning") == "True" and "--pt_train_file" in argv["multihead"]
    assert _flag(argv["naive"], "--multiheads_finetuning") == "False" and "--pt_train_file" not in argv["naive"]
    assert _flag(argv["naive_average_e0s"], "--E0s") == "average"
    # scratch: the foundation's architecture (8 channels in the tiny graph), no starting weights
    assert "--foundation_model" not in argv["scratch"] and _flag(argv["scratch"], "--num_channels") == "8"
    # the same budget everywhere; the configured lr for every fine-tuning arm, scratch its own
    assert {_flag(a, "--lr") for arm, a in argv.items() if arm != "scratch"} == {"0.005"}
    assert _flag(argv["scratch"], "--lr") == str(DEFAULT_LR["scratch"])
    assert len({_flag(a, "--batch_size") for a in argv.values()}) == 1


def test_the_table_has_every_model_with_finite_errors_and_the_figures_exist(comparison):
    project, content = comparison
    rows = content["rows"]
    assert rows[0]["arm"] == ZERO_SHOT and {r["arm"] for r in rows} == {ZERO_SHOT, *TRAINED}
    for row in rows:
        for key in ("valid_rmse_e_mev_per_atom", "valid_rmse_f_mev_per_a", "forgetting_rmse_f_mev_per_a"):
            assert 0 < row[key] < 1e5, (row["arm"], key)
        # only a multihead model has a replay head to score on the foundation's theory
        assert math.isfinite(row["forgetting_replay_head_rmse_f_mev_per_a"]) == (row["arm"] == "multihead"), row["arm"]
    artifact = content["artifact"]
    for path in (artifact.error_plot_path, artifact.forgetting_plot_path):
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert set(content["findings"]) >= {
        "zero_shot_over_best_finetuned_valid_f",
        "multihead_forgetting_f_ratio",
        "multihead_replay_head_forgetting_f_ratio",
    }
    metadata = project.latest("strategy_comparison").metadata
    assert len(metadata["table"].value.records) == len(rows)
    assert metadata["arms_missing"].value == LEFT_OUT  # said, not silently dropped
    assert metadata["figures"].value.count("data:image/png;base64,") == 2
    printed = compare.text(content)
    assert "| naive_average_e0s |" in printed and str(artifact.error_plot_path) in printed
