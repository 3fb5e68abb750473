"""E0s asked of a naive fine-tuning are the E0s it trains with. MACE 0.3.16 copies the
foundation's E0 table over `--E0s average`, a dict or a file when the foundation has exactly the
data's elements (measured: the model kept the foundation's -1.0 eV); the trainer sets them on a
copy of the foundation. Real MACE trainings of a tiny one-element model."""

from dataclasses import replace

import numpy as np
import pytest
from ase.calculators.emt import EMT

from traincraft_assets.core.frames import write_frames
from traincraft_assets.core.models import describe_file, load_model
from traincraft_assets.core.training import Launch, TrainInputs, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings
from traincraft_assets_tests.core.helpers import cu_bulk, labelled

pytestmark = pytest.mark.integration

TINY = ModelShape(num_channels=8, max_L=0, r_max=4.0, num_interactions=2, correlation=2)
BUDGET = {"max_num_epochs": 1, "batch_size": 3, "dtype": "float32"}


@pytest.fixture(scope="module")
def cu(tmp_path_factory):
    """EMT-labelled Cu frames and a tiny Cu-only model trained on them with E0 -1.0 eV."""
    root = tmp_path_factory.mktemp("e0s")
    frames = []
    for k in range(12):
        atoms = cu_bulk(rattle=0.05, seed=k, repeat=1)
        atoms.calc = EMT()
        frames.append(labelled(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces()))
    write_frames(root / "train.xyz", frames[:9])
    write_frames(root / "valid.xyz", frames[9:])
    inputs = TrainInputs(train_file=root / "train.xyz", valid_file=root / "valid.xyz", data_elements=("Cu",))
    settings = TrainSettings(strategy="scratch", e0s="dict", e0s_dict={"Cu": -1.0}, shape=TINY, **BUDGET)
    base = get_trainer("mace").train(settings, inputs, Launch(), root / "base", lambda line: None, "base")
    foundation = {**describe_file(base.model_path), "origin": str(base.model_path), "sha256": "-"}
    return replace(inputs, foundation_model=base.model_path, foundation=foundation), frames[:9], root


def _e0(model_path) -> float:
    return float(load_model(model_path).atomic_energies_fn.atomic_energies.reshape(-1)[0])


@pytest.mark.parametrize("mode", ["dict", "average"])
def test_naive_fine_tuning_trains_with_the_e0s_asked_for(cu, mode):
    inputs, train, root = cu
    assert _e0(inputs.foundation_model) == pytest.approx(-1.0)
    extra = {"e0s_dict": {"Cu": -50.0}} if mode == "dict" else {}
    settings = TrainSettings(strategy="naive", e0s=mode, **extra, **BUDGET)
    trainer = get_trainer("mace")
    result = trainer.train(settings, inputs, Launch(), root / mode, lambda line: None, "finetuned")
    # average: MACE's least-squares fit of energy to composition, here energy per atom
    expected = -50.0 if mode == "dict" else float(np.mean([a.info["REF_energy"] / len(a) for a in train]))
    assert _e0(result.model_path) == pytest.approx(expected, abs=1e-4)
    assert trainer.describe(settings, inputs, result.argv)["e0s"]["set_on_foundation_copy"] is True
