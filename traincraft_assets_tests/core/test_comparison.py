"""The comparison's bookkeeping: sizes, arms' settings, refusing to mix unlike arms, findings."""

import math

import pytest

from traincraft_assets.core.comparison import (
    ARMS,
    arm_settings,
    check_comparable,
    comparison_rows,
    findings,
    markdown_table,
    subset_sizes,
)
from traincraft_assets.core.training.mace import ModelShape, TrainSettings


def test_sizes_become_distinct_frame_counts_with_0_and_oversize_meaning_all():
    assert subset_sizes([10, 30, 100, 0], 60) == [10, 30, 60]
    with pytest.raises(ValueError, match="at least one"):
        subset_sizes([], 60)
    with pytest.raises(ValueError, match="positive"):
        subset_sizes([-5], 60)


def test_each_arm_changes_only_its_strategy_and_scratch_takes_the_foundations_shape():
    common = TrainSettings(lr=5e-3, max_num_epochs=7)
    shape = {"num_channels": 32, "max_L": 0, "r_max": 5.0, "num_interactions": 2, "correlation": 2}
    for arm in ARMS:
        s = arm_settings(arm, common, {"shape": shape})
        assert (s.learning_rate, s.max_num_epochs) == (5e-3 if arm != "scratch" else 1e-2, 7)
    assert arm_settings("frozen", common, None).freeze == 5
    assert arm_settings("naive_average_e0s", common, None).e0s == "average"
    assert arm_settings("scratch", common, {"shape": shape}).shape == ModelShape(**shape)
    with pytest.raises(ValueError, match="unknown arm 'sideways'"):
        arm_settings("sideways", common, None)


def _record(arm, settings="a", valid_f=50.0):
    rows = [
        {
            "arm": arm,
            "n_train": 10,
            "wall_s": 1.0,
            "valid_rmse_e_mev_per_atom": 5.0,
            "valid_rmse_f_mev_per_a": valid_f,
            "forgetting_rmse_e_mev_per_atom": 3.0,
            "forgetting_rmse_f_mev_per_a": 40.0,
        }
    ]
    if arm == "zero_shot":
        rows[0]["n_train"] = 0
    if arm == "multihead":  # scored on its replay head too
        rows[0].update(forgetting_replay_head_rmse_e_mev_per_atom=1.0, forgetting_replay_head_rmse_f_mev_per_a=20.0)
    return {"arm": arm, "rows": rows, "settings": {"x": settings}, "data_versions": {"split": "s"}}


def test_arms_with_other_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"arms \['naive'\] were run with other settings"):
        check_comparable([_record("naive", "b"), _record("multihead"), _record("zero_shot")])
    with pytest.raises(ValueError, match="no arm has results"):
        check_comparable([])


def test_findings_compute_the_ratios_the_field_reports():
    records = [
        _record("zero_shot", valid_f=150.0),
        _record("naive", valid_f=50.0),
        _record("multihead", valid_f=60.0),
        _record("scratch", valid_f=90.0),
        _record("naive_average_e0s", valid_f=55.0),
    ]
    rows = comparison_rows(records)
    assert [r["arm"] for r in rows] == ["zero_shot", "naive", "naive_average_e0s", "multihead", "scratch"]
    out = findings(rows)
    assert out["zero_shot_over_best_finetuned_valid_f"] == 3.0  # 150 / 50
    assert out["multihead_forgetting_f_ratio"] == 1.0
    assert out["multihead_replay_head_forgetting_f_ratio"] == 0.5  # 20 vs the foundation's 40
    assert math.isnan(rows[1]["forgetting_replay_head_rmse_f_mev_per_a"])  # naive: no replay head
    assert "| multihead | 10 | 5.0 | 60.0 | 3.0 | 40.0 | 1.0 | 20.0 | 1.0 |" in markdown_table(rows)
    assert "| naive | 10 | 5.0 | 50.0 | 3.0 | 40.0 | n/a | n/a | 1.0 |" in markdown_table(rows)
    assert out["scratch_over_multihead_valid_f_at_10"] == 1.5
    assert out["average_over_foundation_e0s_valid_f_at_10"] == 1.1
    assert "| zero_shot | 0 | 5.0 | 150.0 |" in markdown_table(rows)
