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


def _row(config_type, e, f, n_frames=5, **baselines):
    """A per-config_type row as parity.json writes it; `baselines`: name=(energy, force)."""
    row = {"config_type": config_type, "n_frames": n_frames, "rmse_e_mev_per_atom": e, "rmse_f_mev_per_a": f}
    for name, (base_e, base_f) in baselines.items():
        row |= {f"{name}_rmse_e_mev_per_atom": base_e, f"{name}_rmse_f_mev_per_a": base_f}
    return row


# Every total better (the accuracy and forgetting gates pass), one kind's energies 6.7x the foundation's.
KINDS = {
    **REPORT,
    "rows": [
        _row("all", 5.0, 40.0, n_frames=20, foundation=(50.0, 140.0)),
        _row("surface_Cu", 4.0, 35.0, foundation=(45.0, 130.0)),
        _row("vacancy_Cu", 6.0, 45.0, foundation=(55.0, 150.0)),
    ],
    "replay_heldout": {
        **REPORT["replay_heldout"],
        "rows": [
            _row("all", 3.0, 60.0, n_frames=10, foundation=(2.5, 55.0)),
            _row("bulk_Ni", 1.0, 20.0, foundation=(2.0, 30.0)),
            _row("surface111_Ni", 18.0, 25.0, foundation=(2.7, 30.0)),
        ],
    },
}


def _held_rows(*rows):
    return {**KINDS, "replay_heldout": {**KINDS["replay_heldout"], "rows": list(rows)}}


def test_a_kind_that_got_worse_fails_the_config_types_gate_and_is_named_with_its_numbers():
    """Totals better (the accuracy and forgetting gates pass), one kind 6.7x worse."""
    assert gates.accuracy(KINDS).passed and gates.forgetting(KINDS, ratio=1.5).passed
    verdict = gates.config_types(KINDS, GateSettings())
    assert not verdict.passed
    assert "held-out replay surface111_Ni (5 frames) energy RMSE 18.00 vs foundation 2.70 meV/atom (6.7x)" in (
        verdict.reason
    ), verdict.reason
    assert "bulk_Ni" not in verdict.reason and "surface_Cu" not in verdict.reason  # only what got worse
    assert verdict.numbers["n_worse"] == 1 and verdict.numbers["worst_ratio"] == pytest.approx(18.0 / 2.7)
    assert verdict.numbers["n_judged"] == 8  # two quantities of four kinds; the "all" rows are the totals
    forces = gates.config_types(_held_rows(_row("vacancy_Ni", 2.0, 60.0, foundation=(2.0, 30.0))), GateSettings())
    assert not forces.passed and "vacancy_Ni (5 frames) force RMSE 60.00 vs foundation 30.00 meV/Å" in forces.reason


def test_kinds_within_the_ratio_pass_and_the_largest_ratio_is_named():
    within = _held_rows(_row("surface111_Ni", 4.0, 44.0, foundation=(2.7, 30.0)))  # 1.48x and 1.47x
    verdict = gates.config_types(within, GateSettings())
    assert (
        verdict.passed
        and "the largest ratio: held-out replay surface111_Ni (5 frames) energy at 1.48x" in verdict.reason
    )
    assert not gates.config_types(within, GateSettings(config_type_ratio=1.2)).passed


def test_a_small_error_may_grow_by_the_absolute_tolerance_at_any_ratio():
    """0.3 to 0.5 meV/atom is 1.7x, and nothing to stop a model for."""
    tiny = _held_rows(_row("bulk_Ni", 0.5, 4.0, foundation=(0.3, 2.0)))
    assert gates.config_types(tiny, GateSettings()).passed
    strict = gates.config_types(
        tiny, GateSettings(config_type_tolerance_e_mev_per_atom=0.1, config_type_tolerance_f_mev_per_a=1.0)
    )
    assert not strict.passed and "energy RMSE 0.50 vs foundation 0.30" in strict.reason
    assert "force RMSE 4.00 vs foundation 2.00 meV/Å" in strict.reason
    exact = {**_held_rows(_row("bulk_Ni", 0.5, 4.0, foundation=(0.0, 0.0))), "rows": []}  # no ratio to 0
    assert gates.config_types(exact, GateSettings()).passed


def test_the_valid_set_is_judged_against_the_serving_champion_when_the_report_has_one():
    """The foundation is far off on the target's theory (45 meV/atom): the champion is the bar."""
    rows = [_row("surface_Cu", 4.0, 35.0, foundation=(45.0, 130.0), champion=(1.5, 30.0))]
    verdict = gates.config_types({**KINDS, "rows": rows, "replay_heldout": {"n_frames": 0}}, GateSettings())
    assert not verdict.passed and verdict.numbers["valid_baseline"] == "champion"
    assert "valid surface_Cu (5 frames) energy RMSE 4.00 vs champion 1.50 meV/atom (2.7x)" in verdict.reason
    assert gates.config_types({**KINDS, "rows": rows[:0], "replay_heldout": {"n_frames": 0}}, GateSettings()).passed


def test_a_multihead_model_is_judged_on_its_replay_head_on_the_replay_kinds():
    """Its target head differs from the foundation's labels by the change of theory."""
    rows = [_row("surface111_Ni", 425.0, 66.0, foundation=(2.7, 30.0), replay_head=(18.0, 25.0))]
    verdict = gates.config_types(_held_rows(*rows), GateSettings())
    assert not verdict.passed and verdict.numbers["judged_on_replay_head"]
    assert "replay head, surface111_Ni (5 frames) energy RMSE 18.00 vs foundation 2.70" in verdict.reason
    assert "425" not in verdict.reason  # the target head is not judged there
    kept = [_row("surface111_Ni", 425.0, 66.0, foundation=(2.7, 30.0), replay_head=(2.0, 25.0))]
    passed = gates.config_types(_held_rows(*kept), GateSettings())
    assert passed.passed and "held-out replay frames on the replay head against the foundation" in passed.reason


def test_kinds_without_baseline_numbers_are_named_as_not_judged():
    """A parity.json from before the replay rows, a baseline with no number for a kind: named,
    not failed; NaN on both sides (no frame of the kind carries the label) is not a kind to judge."""
    nan = float("nan")
    unmeasured = {**REPORT, "rows": [], "replay_heldout": REPORT["replay_heldout"]}  # no rows at all
    verdict = gates.config_types(unmeasured, GateSettings())
    assert verdict.passed and "not measured" in verdict.reason and verdict.numbers["n_judged"] == 0
    rows = _held_rows(
        _row("bulk_Ni", 1.0, 20.0, foundation=(nan, 30.0)), _row("surface_Ni", nan, 20.0, foundation=(nan, 25.0))
    )
    partly = gates.config_types(rows, GateSettings())
    assert partly.passed and partly.numbers["n_unjudged"] == 1, partly.reason
    assert "not judged, the baseline has no number: held-out replay bulk_Ni (5 frames) energy" in partly.reason
    broken = gates.config_types(_held_rows(_row("bulk_Ni", nan, 20.0, foundation=(2.0, 30.0))), GateSettings())
    assert not broken.passed and "bulk_Ni (5 frames) energy RMSE nan vs foundation 2.00" in broken.reason


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
