"""core.evaluation without a model: comparisons, the parity record, which frames a model covers.

Predictions are made by hand here; real models are evaluated in the graph tests (and checked
against MACE's own ASE calculator there).
"""

import math

import numpy as np
import pytest
from ase import Atoms

from traincraft_assets.core.evaluation import (
    PARITY_CONTRACT_KEYS,
    Evaluation,
    Parity,
    compare_rows,
)
from traincraft_assets.core.metrics import Prediction, errors_by_config_type
from traincraft_assets_tests.core.helpers import labelled


def _evaluation(energy_errors, config_types, force_error=0.0):
    """Evaluation of one-atom frames whose per-atom energy errors are `energy_errors` (eV)."""
    frames = [labelled(Atoms("Cu", positions=[[0, 0, 0]]), energy=0.0, config_type=ct) for ct in config_types]
    predictions = [Prediction(de, np.full((1, 3), force_error), None) for de in energy_errors]
    return Evaluation(frames, predictions, errors_by_config_type(frames, predictions))


def test_compare_rows_put_candidate_beside_baseline_in_mev():
    candidate = _evaluation([0.001, -0.003], ["surface", "vacancy"])
    baseline = _evaluation([0.010, 0.020], ["surface", "vacancy"])
    rows = {row["config_type"]: row for row in compare_rows(candidate, {"champion": baseline})}
    assert list(rows) == ["all", "surface", "vacancy"]
    assert rows["surface"]["rmse_e_mev_per_atom"] == pytest.approx(1.0)
    assert rows["vacancy"]["champion_rmse_e_mev_per_atom"] == pytest.approx(20.0)
    assert rows["all"]["n_frames"] == 2
    assert math.isnan(rows["all"]["rmse_s_mev_per_a3"])  # no stress labels: NaN, never 0


def test_parity_metrics_and_report_carry_the_contract_keys():
    valid = _evaluation([0.001, 0.001], ["a", "b"], force_error=0.02)
    valid_foundation = _evaluation([0.1, 0.1], ["a", "b"], force_error=0.05)
    replay = _evaluation([0.002], ["bulk"], force_error=0.01)
    replay_foundation = _evaluation([0.001], ["bulk"], force_error=0.01)
    result = Parity("Default", valid, valid_foundation, replay, replay_foundation, test_rows=[])
    assert set(result.metrics) == set(PARITY_CONTRACT_KEYS) - {"report_path"}
    assert result.metrics["rmse_f_mev_per_a"] == pytest.approx(20.0)
    assert result.metrics["foundation_rmse_f_mev_per_a"] == pytest.approx(50.0)
    assert result.metrics["replay_rmse_f_mev_per_a"] == pytest.approx(10.0)
    assert result.metrics["n_valid"] == 2
    assert result.beats_foundation_on_forces
    # forgetting: energies beside forces (replay energies drift where forces hold)
    assert result.forgetting == pytest.approx({"forgetting_e_ratio": 2.0, "forgetting_f_ratio": 1.0})
    trained = {"Default": ["energy", "forces", "stress"], "pt_head": ["energy", "forces"]}
    report = result.report({"split": "abc"}, trained)
    assert report["trained_properties"] == trained
    assert report["replay_heldout"]["forgetting_e_ratio"] == pytest.approx(2.0)
    for key, value in result.metrics.items():
        assert report[key] == pytest.approx(value, nan_ok=True), key
    assert report["finetuned_head"] == "Default" and report["data_versions"] == {"split": "abc"}
    assert report["replay_heldout"]["n_frames"] == 1
    assert [row["config_type"] for row in report["rows"]] == ["all", "a", "b"]


def test_a_multihead_models_replay_head_is_reported_beside_its_target_head_on_the_replay_frames():
    """The target head learned another theory than the replay frames' labels; the replay head
    predicts theirs, so its ratio is what the shared layers kept."""
    valid = _evaluation([0.001], ["a"], force_error=0.02)
    replay_foundation = _evaluation([0.001], ["bulk"], force_error=0.01)
    target_head = _evaluation([0.4], ["bulk"], force_error=0.06)  # the change of theory
    replay_head = _evaluation([0.002], ["bulk"], force_error=0.012)
    result = Parity("Default", valid, valid, target_head, replay_foundation, [], replay_head=replay_head)
    kept = {"replay_head_forgetting_e_ratio": 2.0, "replay_head_forgetting_f_ratio": 1.2}
    assert result.replay_head_errors == pytest.approx(
        {**kept, "replay_head_rmse_e_mev_per_atom": 2.0, "replay_head_rmse_f_mev_per_a": 12.0}
    )
    assert result.forgetting["forgetting_f_ratio"] == pytest.approx(6.0)
    held = result.report({}, {})["replay_heldout"]
    assert held["replay_head_forgetting_f_ratio"] == pytest.approx(1.2)
    assert held["replay_head_rmse_f_mev_per_a"] == pytest.approx(12.0) and held["rmse_f_mev_per_a"] == pytest.approx(
        60.0
    )
    # per kind too (gate_config_types judges them): the replay head beside the target head
    [_, bulk] = held["rows"]
    assert bulk["config_type"] == "bulk" and bulk["replay_head_rmse_e_mev_per_atom"] == pytest.approx(2.0)
    assert bulk["rmse_e_mev_per_atom"] == pytest.approx(400.0)
    assert bulk["foundation_rmse_e_mev_per_atom"] == pytest.approx(1.0)
    single_head = Parity("Default", valid, valid, target_head, replay_foundation, [])
    assert single_head.replay_head_errors == {}
    single = single_head.report({}, {})["replay_heldout"]
    assert "replay_head_forgetting_f_ratio" not in single
    assert [row["config_type"] for row in single["rows"]] == ["all", "bulk"]
    assert not any(key.startswith("replay_head_") for key in single["rows"][1])
