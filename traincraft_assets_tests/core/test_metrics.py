"""metrics.errors: RMSE/MAE by hand, NaN for absent labels, grouping by config_type."""

import math

import numpy as np
import pytest
from ase import Atoms

from traincraft_assets.core.metrics import Prediction, errors, errors_by_config_type, to_mev
from traincraft_assets_tests.core.helpers import labelled


def _frame(n_atoms, energy, forces=None, stress=None, config_type=None):
    atoms = Atoms(f"Cu{n_atoms}", positions=np.arange(3 * n_atoms, dtype=float).reshape(n_atoms, 3) * 2.0)
    return labelled(
        atoms,
        energy=energy,
        forces=np.zeros((n_atoms, 3)) if forces is None else forces,
        stress=stress,
        config_type=config_type,
    )


def test_energy_force_stress_errors_by_hand():
    f2 = np.array([[1.0, 0.0, 0.0], [0.0, -2.0, 0.0]])
    frames = [
        _frame(2, energy=-10.0, forces=f2, stress=np.zeros(9)),
        _frame(4, energy=-20.0),
    ]
    predictions = [
        # energy off by +2 eV on 2 atoms -> +1 eV/atom; forces off by +1 on one component
        Prediction(-8.0, f2 + np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]), np.full((3, 3), 0.5)),
        # energy off by -12 eV on 4 atoms -> -3 eV/atom; forces off by -3 on one component
        Prediction(-32.0, np.array([[0.0, 0.0, 0.0]] * 3 + [[-3.0, 0.0, 0.0]]), None),
    ]
    result = errors(frames, predictions)
    assert result["n_frames"] == 2
    assert result["rmse_e_per_atom"] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert result["mae_e_per_atom"] == pytest.approx(2.0)
    # 6 + 12 = 18 force components, errors +1 and -3
    assert result["rmse_f"] == pytest.approx(math.sqrt(10 / 18))
    assert result["mae_f"] == pytest.approx(4 / 18)
    # stress only from the frame with a label and a prediction: 9 components off by 0.5
    assert result["rmse_s"] == pytest.approx(0.5)
    assert result["mae_s"] == pytest.approx(0.5)


def test_absent_labels_give_nan_not_zero():
    frames = [_frame(2, energy=None), _frame(3, energy=None)]
    frames[1].arrays.pop("REF_forces")
    predictions = [Prediction(-1.0, np.ones((2, 3)), np.zeros((3, 3))), Prediction(-1.0, np.ones((3, 3)), None)]
    result = errors(frames, predictions)
    assert math.isnan(result["rmse_e_per_atom"]) and math.isnan(result["mae_e_per_atom"])
    assert math.isnan(result["rmse_s"]) and math.isnan(result["mae_s"])
    assert result["rmse_f"] == pytest.approx(1.0) and result["mae_f"] == pytest.approx(1.0)

    only_forces_missing = [_frame(2, energy=-1.0)]
    only_forces_missing[0].arrays.pop("REF_forces")
    result = errors(only_forces_missing, [Prediction(-1.0, np.zeros((2, 3)), None)])
    assert result["rmse_e_per_atom"] == 0.0
    assert math.isnan(result["rmse_f"]) and math.isnan(result["mae_f"])


def test_stress_label_without_predicted_stress_is_nan():
    frames = [_frame(2, energy=-1.0, stress=np.ones(9))]
    result = errors(frames, [Prediction(-1.0, np.zeros((2, 3)), None)])
    assert math.isnan(result["rmse_s"])


def test_errors_by_config_type():
    frames = [
        _frame(1, energy=0.0, config_type="surface"),
        _frame(1, energy=0.0, config_type="vacancy"),
        _frame(1, energy=0.0, config_type="surface"),
        _frame(1, energy=0.0),  # no config_type
    ]
    predictions = [
        Prediction(1.0, np.zeros((1, 3)), None),
        Prediction(-4.0, np.zeros((1, 3)), None),
        Prediction(3.0, np.zeros((1, 3)), None),
        Prediction(0.0, np.zeros((1, 3)), None),
    ]
    table = errors_by_config_type(frames, predictions)
    assert set(table) == {"all", "surface", "vacancy", "Default"}
    assert table["surface"]["n_frames"] == 2
    assert table["surface"]["rmse_e_per_atom"] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert table["surface"]["mae_e_per_atom"] == pytest.approx(2.0)
    assert table["vacancy"]["mae_e_per_atom"] == pytest.approx(4.0)
    assert table["Default"]["rmse_e_per_atom"] == 0.0
    assert table["all"]["n_frames"] == 4
    assert table["all"]["mae_e_per_atom"] == pytest.approx((1 + 4 + 3 + 0) / 4)


def test_to_mev():
    assert to_mev(0.0123) == pytest.approx(12.3)


def test_error_ratio_is_nan_when_it_cannot_be_measured():
    from traincraft_assets.core.metrics import error_ratio

    assert error_ratio(30.0, 10.0) == 3.0
    for candidate, baseline in ((1.0, 0.0), (float("nan"), 1.0), (None, 1.0), (1.0, float("inf"))):
        assert math.isnan(error_ratio(candidate, baseline)), (candidate, baseline)
