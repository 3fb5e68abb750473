"""The committee's deviation, the trust-level buckets and the selection of candidates."""

import math

import numpy as np
import pytest
from ase import Atoms

from traincraft_assets.core.committee import (
    FORCE_DEVIATION_KEY,
    CommitteeSettings,
    LoopSettings,
    TrustLevels,
    convergence,
    energy_deviation_per_atom,
    farthest_points,
    force_deviation,
    loop_batch_name,
    loop_iteration,
    member_index,
    scored,
    select_candidates,
    stop_reason,
)


def test_force_deviation_is_dpgen2s_max_atomic_deviation():
    # two members; atom 0: +-1 eV/Å along x (deviation 1), atom 1: identical (0)
    forces = np.array([[[1.0, 0, 0], [0.3, 0.2, 0.1]], [[-1.0, 0, 0], [0.3, 0.2, 0.1]]])
    assert force_deviation(forces) == pytest.approx(1.0)
    # three members on one atom: F = (0,0,0), (3,0,0), (0,3,0); mean (1,1,0);
    # squared distances 2, 5, 5 -> sqrt(12 / 3) = 2
    forces = np.array([[[0.0, 0, 0]], [[3.0, 0, 0]], [[0.0, 3, 0]]])
    assert force_deviation(forces) == pytest.approx(2.0)


def test_force_deviation_refuses_a_committee_of_one():
    with pytest.raises(ValueError, match="K >= 2"):
        force_deviation(np.zeros((1, 4, 3)))


def test_energy_deviation_is_per_atom_population_std():
    assert energy_deviation_per_atom([1.0, 1.2], n_atoms=2) == pytest.approx(0.05)


def test_scored_frames_carry_both_deviations():
    atoms = scored(
        Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]]), [0.0, 0.4], np.array([[[1.0, 0, 0]] * 2, [[-1.0, 0, 0]] * 2])
    )
    assert atoms.info[FORCE_DEVIATION_KEY] == pytest.approx(1.0)
    assert atoms.info["committee_energy_deviation"] == pytest.approx(0.1)


def test_trust_buckets_and_their_edges():
    trust = TrustLevels(0.05, 0.5)
    assert [trust.bucket(d) for d in (0.0, 0.049, 0.05, 0.3, 0.5, 0.51, math.nan, math.inf)] == [
        "accurate",
        "accurate",
        "candidate",
        "candidate",
        "candidate",
        "failed",
        "failed",
        "failed",
    ]


@pytest.mark.parametrize("lo, hi", [(0.5, 0.5), (0.6, 0.5), (-0.1, 0.5)])
def test_trust_levels_out_of_order_are_refused(lo, hi):
    (problem,) = TrustLevels(lo, hi).problems()
    assert f"trust_lo={lo}" in problem and f"trust_hi={hi}" in problem


def test_a_committee_of_one_is_refused_and_members_are_named():
    assert "at least 2 members" in CommitteeSettings(members=1).problems()[0]
    assert member_index("member-1", 2) == 1
    with pytest.raises(ValueError, match="not a member of a committee of 2"):
        member_index("member-2", 2)


def _frames(deviations):
    frames = []
    for i, d in enumerate(deviations):
        atoms = Atoms("Cu", positions=[[0.0, 0.0, 0.1 * i]])
        atoms.info[FORCE_DEVIATION_KEY] = d
        frames.append(atoms)
    return frames


def test_convergence_counts_fractions_and_histogram():
    frames = _frames([0.01, 0.02, 0.03, 0.1, 0.2, 0.9, math.inf])
    summary = convergence(frames, TrustLevels(0.05, 0.5))
    assert (summary["n_accurate"], summary["n_candidate"], summary["n_failed"]) == (3, 2, 2)
    assert summary["accurate_fraction"] == pytest.approx(3 / 7)
    assert sum(summary["histogram"]["counts"]) == 6  # the infinite one has no bin


def test_selection_caps_skips_known_and_repeated_and_keeps_the_most_uncertain_first():
    deviations = [0.01, 0.10, 0.40, 0.30, 0.20, 0.90, 0.25]
    frames = _frames(deviations)
    prints = ["a", "b", "c", "d", "e", "f", "c"]  # frame 6 repeats frame 2's structure
    selection = select_candidates(frames, prints, TrustLevels(0.05, 0.5), cap=2, known={"d"})
    assert selection.picked == [2, 4]  # 0.40, then 0.20 (0.30 is known, 0.25 repeats 2)
    assert (selection.n_candidates, selection.n_known, selection.n_repeated) == (5, 1, 1)
    assert 0 not in selection.picked and 5 not in selection.picked  # accurate and failed never


def test_farthest_point_selection_spreads_from_the_most_uncertain():
    frames = _frames([0.1, 0.2, 0.3, 0.4])
    positions = {0: [0.0], 1: [0.1], 2: [5.0], 3: [0.2]}  # 3 (most uncertain) sits by 0 and 1

    def describe(picks):
        return np.array([positions[round(float(a.positions[0, 2]) / 0.1)] for a in picks])

    selection = select_candidates(frames, list("abcd"), TrustLevels(0.05, 0.5), 2, set(), describe)
    assert selection.picked == [3, 2]  # the most uncertain, then the one farthest from it


def test_farthest_points_never_repeats_and_stops_at_the_rows():
    vectors = np.array([[0.0], [1.0], [2.0]])
    assert farthest_points(vectors, 5, 0) == [0, 2, 1]


def test_iterations_are_counted_from_the_inbox_and_a_rerun_keeps_its_number():
    made = [
        {"name": "user.xyz"},
        {"name": "loop-001-aaa.xyz", "origin": {"asset": "selected_frames", "candidates": "c1", "iteration": 1}},
    ]
    assert loop_iteration(made, "c1") == 1  # the same candidates again: the same iteration
    assert loop_iteration(made, "c2") == 2
    assert loop_batch_name(2, "0123456789abcdef") == "loop-002-0123456789ab.xyz"


def test_the_loop_stops_on_convergence_on_its_budget_or_with_nothing_new():
    settings = LoopSettings(conv_accuracy=0.9, max_iterations=3)
    assert "converged: 95%" in stop_reason({"accurate_fraction": 0.95}, settings, 1, True)
    assert "max_iterations (3)" in stop_reason({"accurate_fraction": 0.5}, settings, 4, True)
    assert "no new candidate" in stop_reason({"accurate_fraction": 0.5}, settings, 2, False)
    assert stop_reason({"accurate_fraction": 0.5}, settings, 3, True) is None
