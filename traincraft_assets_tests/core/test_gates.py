"""core.gates: each gate's verdict from the numbers a user would read, and MD stability run
for real (ASE Langevin) with a sound potential and a deliberately broken one."""

import pytest
from ase.calculators.calculator import Calculator, all_changes

from traincraft_assets.core import gates
from traincraft_assets.core.gates import GateSettings

REPORT = {
    "rmse_e_mev_per_atom": 5.0,
    "foundation_rmse_e_mev_per_atom": 50.0,
    "rmse_f_mev_per_a": 40.0,
    "foundation_rmse_f_mev_per_a": 140.0,
    "replay_heldout": {
        "n_frames": 4,
        "rmse_e_mev_per_atom": 3.0,
        "foundation_rmse_e_mev_per_atom": 2.5,
        "rmse_f_mev_per_a": 60.0,
        "foundation_rmse_f_mev_per_a": 55.0,
    },
}


def test_accuracy_needs_both_forces_and_energies_better_than_the_foundation():
    assert gates.accuracy(REPORT).passed
    worse = gates.accuracy({**REPORT, "rmse_e_mev_per_atom": 60.0})
    assert not worse.passed and "not better on energy" in worse.reason
    assert not gates.accuracy({**REPORT, "rmse_f_mev_per_a": float("nan")}).passed


def test_forgetting_gates_energy_as_well_as_forces():
    """The multihead failure seen on Ni/Al: forces kept, replay energies tenfold worse."""
    assert gates.forgetting(REPORT, ratio=1.5).passed
    drifted = {**REPORT, "replay_heldout": {**REPORT["replay_heldout"], "rmse_e_mev_per_atom": 25.0}}
    verdict = gates.forgetting(drifted, ratio=1.5)
    assert not verdict.passed and "energy RMSE 25.00 vs foundation 2.50" in verdict.reason
    assert verdict.numbers["energy_ratio"] == pytest.approx(10.0)
    unmeasured = gates.forgetting({**REPORT, "replay_heldout": {"n_frames": 0}}, ratio=1.5)
    assert unmeasured.passed and unmeasured.numbers == {"measured": False} and "not measured" in unmeasured.reason


def test_a_multihead_model_is_judged_on_its_replay_head():
    """Fine-tuned to another level of theory, the target head differs from the replay frames'
    labels by that change (the demo: 425 meV/atom); the replay head predicts their theory."""
    theory_changed = {**REPORT["replay_heldout"], "rmse_e_mev_per_atom": 425.0, "rmse_f_mev_per_a": 66.0}
    assert not gates.forgetting({**REPORT, "replay_heldout": theory_changed}, ratio=1.5).passed  # one head
    kept = {**theory_changed, "replay_head_rmse_e_mev_per_atom": 2.8, "replay_head_rmse_f_mev_per_a": 60.0}
    verdict = gates.forgetting({**REPORT, "replay_heldout": kept}, ratio=1.5)
    assert verdict.passed and "replay head" in verdict.reason
    assert verdict.numbers["energy_ratio"] == pytest.approx(2.8 / 2.5) and verdict.numbers["judged_on_replay_head"]
    assert verdict.numbers["rmse_e_mev_per_atom"] == 425.0  # the target head's numbers stay in view
    forgot = gates.forgetting(
        {**REPORT, "replay_heldout": {**kept, "replay_head_rmse_e_mev_per_atom": 25.0}}, ratio=1.5
    )
    assert not forgot.passed and "replay head: energy RMSE 25.00 vs foundation 2.50" in forgot.reason


def test_a_nan_anywhere_in_the_learning_curve_fails():
    curve = [{"epoch": 0, "loss": 1.0, "rmse_f": 0.1}, {"epoch": 1, "loss": float("nan"), "rmse_f": 0.1}]
    verdict = gates.learning_curve(curve)
    assert not verdict.passed and "epochs [1]" in verdict.reason
    assert gates.learning_curve(curve[:1]).passed
    assert not gates.learning_curve([]).passed


class SignFlipped(Calculator):
    """A broken model: a sound potential with its forces reversed (atoms pulled together)."""

    implemented_properties = ("energy", "forces")

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = atoms.copy()
        work.calc = self.inner
        self.results = {"energy": work.get_potential_energy(), "forces": -work.get_forces()}


@pytest.fixture(scope="module")
def frames():
    """Valid-like Cu structures; EMT (the demo's labeller) stands in for a sound model."""
    from traincraft_assets.core.demo import target_batches

    return [a for batch in target_batches(frames_per_kind=2).values() for a in batch]


def test_md_with_a_sound_potential_is_stable(frames):
    from ase.calculators.emt import EMT

    verdict = gates.md_stability(EMT(), frames, GateSettings(md_structures=2, md_steps=100))
    assert verdict.passed, verdict.reason
    assert 0 < verdict.numbers["max_temperature_k"] < 1500 and verdict.numbers["min_distance_a"] > 1.5


def test_md_with_a_sign_flipped_model_explodes_and_says_where(frames):
    from ase.calculators.emt import EMT

    verdict = gates.md_stability(SignFlipped(EMT()), frames, GateSettings(md_structures=2, md_steps=200))
    assert not verdict.passed and "exploded at step" in verdict.reason, verdict.reason
    assert verdict.numbers["structure"] == 0 and 0 < verdict.numbers["step"] <= 200


def test_md_limits_are_read_as_given(frames):
    """The same run fails on a threshold alone: a floor no pair can meet fails at step 0."""
    from ase.calculators.emt import EMT

    strict = gates.md_stability(EMT(), frames, GateSettings(md_structures=1, md_steps=5, md_min_distance_a=100.0))
    assert not strict.passed and "step 0" in strict.reason and "closer than 100.0 Å" in strict.reason
