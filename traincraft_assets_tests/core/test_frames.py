"""frames: fingerprints, REF_* label access, summaries and readable errors."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from traincraft_assets.core.frames import (
    FrameError,
    fingerprint,
    get_label,
    labels_present,
    read_frames,
    set_label,
    summarize,
    write_frames,
)
from traincraft_assets_tests.core.helpers import cu_bulk, labelled


def test_fingerprint_survives_extxyz_round_trip(tmp_path):
    # Realistic, rattled structures (arbitrary float positions, not lattice sites): the
    # fingerprint promises that the same structure written by a tool (extxyz prints 8 decimals)
    # is recognised as the same frame, which dedup and the stable split rely on.
    frames = [labelled(cu_bulk(rattle=0.05, seed=seed), energy=-3.0 * seed) for seed in range(40)]
    path = tmp_path / "frames.xyz"
    write_frames(path, frames)
    back = read_frames(path)
    assert len(back) == len(frames)
    changed = [i for i, (a, b) in enumerate(zip(frames, back)) if fingerprint(a) != fingerprint(b)]
    assert changed == [], f"fingerprint changed by a write/read round trip for frames {changed}"


def test_fingerprint_of_file_frames_is_stable_on_rewrite(tmp_path):
    frames = [cu_bulk(rattle=0.05, seed=seed) for seed in range(10)]
    first, second = tmp_path / "a.xyz", tmp_path / "b.xyz"
    write_frames(first, frames)
    once = read_frames(first)
    write_frames(second, once)
    twice = read_frames(second)
    assert [fingerprint(a) for a in once] == [fingerprint(b) for b in twice]


def test_fingerprint_ignores_labels():
    atoms = cu_bulk(rattle=0.03, seed=1)
    a = labelled(atoms, energy=-10.0, forces=0.1, stress=np.eye(3))
    b = labelled(atoms, energy=-99.0, forces=-0.5)
    c = atoms.copy()
    c.info["config_type"] = "something"
    assert fingerprint(a) == fingerprint(b) == fingerprint(c) == fingerprint(atoms)


def test_fingerprint_sees_small_moves_species_cell_and_pbc():
    atoms = cu_bulk(rattle=0.03, seed=2)
    base = fingerprint(atoms)

    for atom in range(len(atoms)):
        for axis in range(3):
            moved = atoms.copy()
            moved.positions[atom, axis] += 1e-3
            assert fingerprint(moved) != base, (atom, axis)

    swapped = atoms.copy()
    swapped.numbers[0] = 28
    assert fingerprint(swapped) != base

    strained = atoms.copy()
    strained.set_cell(atoms.cell[:] * 1.01, scale_atoms=False)
    assert fingerprint(strained) != base

    slab = atoms.copy()
    slab.pbc = (True, True, False)
    assert fingerprint(slab) != base


def test_get_and_set_label_use_ref_keys():
    atoms = cu_bulk()
    n = len(atoms)
    for name in ("energy", "forces", "stress", "dipole", "polarizability"):
        assert get_label(atoms, name) is None

    set_label(atoms, "energy", np.float64(-12.5))
    set_label(atoms, "forces", np.arange(3 * n, dtype=float))
    set_label(atoms, "stress", np.arange(9.0).reshape(3, 3))
    set_label(atoms, "dipole", [0.1, 0.2, 0.3])

    assert atoms.info["REF_energy"] == -12.5 and isinstance(atoms.info["REF_energy"], float)
    assert atoms.arrays["REF_forces"].shape == (n, 3)
    assert atoms.arrays["REF_forces"][1, 0] == 3.0
    assert atoms.info["REF_stress"].shape == (9,)  # flat: extxyz stores per-frame arrays flat
    np.testing.assert_array_equal(get_label(atoms, "stress").reshape(3, 3), np.arange(9.0).reshape(3, 3))
    np.testing.assert_array_equal(get_label(atoms, "dipole"), [0.1, 0.2, 0.3])
    assert float(get_label(atoms, "energy")) == -12.5
    assert get_label(atoms, "polarizability") is None


def test_labels_survive_write_read_and_calculator_results_do_not(tmp_path):
    atoms = labelled(cu_bulk(rattle=0.02), energy=-7.25, forces=0.5, stress=np.eye(3) * 0.01)
    atoms.calc = SinglePointCalculator(atoms, energy=123.0, forces=np.ones((len(atoms), 3)))
    path = tmp_path / "one.xyz"
    write_frames(path, [atoms])
    (back,) = read_frames(path)
    assert back.calc is None, "calculator results must not leak into the file as bare energy="
    assert float(get_label(back, "energy")) == -7.25
    np.testing.assert_allclose(get_label(back, "forces"), 0.5)
    np.testing.assert_allclose(get_label(back, "stress").reshape(3, 3), np.eye(3) * 0.01)
    assert "energy=" not in path.read_text().replace("REF_energy=", "")


def test_labels_present_in_canonical_order():
    only_dipole = labelled(cu_bulk(), energy=None, forces=None)
    set_label(only_dipole, "dipole", [0, 0, 1])
    with_stress = labelled(cu_bulk(), energy=-1.0, forces=None, stress=np.zeros(9))
    with_forces = labelled(cu_bulk(), energy=None, forces=0.0)
    assert labels_present([only_dipole, with_stress, with_forces]) == ["energy", "forces", "stress", "dipole"]
    assert labels_present([cu_bulk()]) == []


def test_summarize_counts_atoms_elements_config_types_and_labels():
    water = Atoms("H2O", positions=[[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]])
    frames = [
        labelled(cu_bulk(repeat=1), config_type="bulk"),  # 4 atoms
        labelled(cu_bulk(repeat=1), config_type="bulk"),
        labelled(water, energy=None, forces=None),  # 3 atoms, no config_type
    ]
    summary = summarize(frames)
    assert summary["n_frames"] == 3
    assert summary["n_atoms"] == 11
    assert summary["elements"] == ["H", "O", "Cu"]  # by atomic number
    assert summary["config_types"] == {"Default": 1, "bulk": 2}
    assert summary["labels"] == ["energy", "forces"]


def test_read_frames_missing_file_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "batch_07.xyz"
    with pytest.raises(FrameError) as info:
        read_frames(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_read_frames_malformed_file_names_it(tmp_path):
    bad = tmp_path / "broken_batch.xyz"
    bad.write_text("3\nProperties=species:S:1:pos:R:3\nCu 0 0 0\nCu 1.0 oops\n")
    with pytest.raises(FrameError) as info:
        read_frames(bad)
    assert str(bad) in str(info.value)


def test_read_frames_empty_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(FrameError) as info:
        read_frames(empty)
    assert str(empty) in str(info.value)
