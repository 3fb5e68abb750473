"""Health checks: every problem names its batch and frame."""

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import set_label
from traincraft_assets.core.health import dataset_problems, frame_problems, uncovered_elements
from traincraft_assets_tests.core.helpers import cu_bulk, labelled

BATCH, INDEX = "dft_round_3", 17


def _clean(**kwargs) -> Atoms:
    return labelled(cu_bulk(rattle=0.02, seed=5), energy=-30.0, forces=0.01, batch=BATCH, index=INDEX, **kwargs)


def _only(problems, field):
    assert len(problems) == 1, [str(p) for p in problems]
    (problem,) = problems
    text = str(problem)
    assert f"'{BATCH}'" in text and f"frame {INDEX}" in text, text
    assert problem.batch == BATCH and problem.frame == INDEX
    assert problem.field == field
    return text


def test_clean_frame_has_no_problems():
    assert frame_problems(_clean()) == []
    assert dataset_problems([_clean(), _clean()], covered_elements=["Cu", "Ni"]) == []


def test_nan_in_forces():
    atoms = _clean()
    atoms.arrays["REF_forces"][2, 1] = np.nan
    text = _only(frame_problems(atoms), "REF_forces")
    assert "1 non-finite" in text


def test_forces_in_the_wrong_unit_are_flagged():
    """EMT-like forces of ~1 eV/Å stored in meV/Å: a thousand times too large."""
    atoms = _clean()
    atoms.arrays["REF_forces"][3] = [0.0, 1200.0, 0.0]
    text = _only(frame_problems(atoms), "REF_forces")
    assert "a force of 1200 eV/Å" in text and "unit mix-up" in text
    atoms.arrays["REF_forces"][3] = [0.0, 60.0, 0.0]  # large but physical (a hot, strained frame)
    assert frame_problems(atoms) == []


def test_inf_in_energy():
    atoms = _clean()
    atoms.info["REF_energy"] = float("inf")
    _only(frame_problems(atoms), "REF_energy")


def test_nan_in_stress():
    atoms = _clean(stress=np.zeros(9))
    atoms.info["REF_stress"][4] = np.nan
    _only(frame_problems(atoms), "REF_stress")


def test_missing_energy():
    atoms = labelled(cu_bulk(), energy=None, forces=0.0, batch=BATCH, index=INDEX)
    text = _only(frame_problems(atoms), "REF_energy")
    assert "missing" in text


def test_missing_forces():
    atoms = labelled(cu_bulk(), energy=-1.0, forces=None, batch=BATCH, index=INDEX)
    text = _only(frame_problems(atoms), "REF_forces")
    assert "missing" in text


def test_zero_atoms():
    atoms = Atoms(info={"batch": BATCH, "batch_index": INDEX})
    text = _only(frame_problems(atoms), "numbers")
    assert "zero atoms" in text


def test_overlapping_atoms_in_a_molecule():
    atoms = Atoms("OH", positions=[[0, 0, 0], [0.3, 0, 0]], info={"batch": BATCH, "batch_index": INDEX})
    set_label(atoms, "energy", -5.0)
    set_label(atoms, "forces", np.zeros((2, 3)))
    text = _only(frame_problems(atoms), "positions")
    assert "0.300" in text


def test_overlapping_atoms_across_periodic_boundary():
    positions = [[0.1, 1.0, 1.0], [3.8, 1.0, 1.0]]  # 3.7 Å apart inside the cell, 0.3 Å through x
    periodic = Atoms("Cu2", positions=positions, cell=[4.0, 4.0, 4.0], pbc=True)
    periodic = labelled(periodic, batch=BATCH, index=INDEX)
    text = _only(frame_problems(periodic), "positions")
    assert "0.300" in text

    open_x = periodic.copy()
    open_x.pbc = (False, True, True)
    assert frame_problems(open_x) == []


def test_min_distance_is_configurable():
    atoms = labelled(Atoms("Cu2", positions=[[0, 0, 0], [1.2, 0, 0]]), batch=BATCH, index=INDEX)
    assert frame_problems(atoms) == []
    _only(frame_problems(atoms, min_distance=1.5), "positions")


def test_element_not_covered_by_foundation():
    atoms = _clean()
    atoms.numbers[0] = 40  # one Zr in the Cu cell
    text = _only(uncovered_elements([atoms], covered=["Cu", "Ni"]), "numbers")
    assert "Zr" in text
    assert any("Zr" in str(p) for p in dataset_problems([atoms], covered_elements=["Cu"]))
    assert dataset_problems([atoms]) == []  # no foundation given: coverage not checked


def test_problems_point_at_the_right_frame():
    good = labelled(cu_bulk(), batch="a", index=0)
    bad = labelled(cu_bulk(), energy=None, batch="b", index=4)
    problems = dataset_problems([good, bad])
    assert [(p.batch, p.frame) for p in problems] == [("b", 4)]
    assert problems[0].as_row() == {
        "batch": "b",
        "frame": 4,
        "field": "REF_energy",
        "message": problems[0].message,
    }


def test_atoms_on_the_same_spot():
    atoms = labelled(Atoms("Cu2", positions=[[1, 1, 1], [1, 1, 1]], cell=[4, 4, 4], pbc=True), batch=BATCH, index=INDEX)
    text = _only(frame_problems(atoms), "positions")
    assert "0.000" in text


def test_atom_overlapping_its_own_periodic_image():
    # A one-atom fcc primitive cell whose lattice constant was given in nm instead of Å: the atom
    # sits 0.255 Å from its periodic images. The same mistake in the 4-atom cubic cell is caught;
    # the one-atom cell must be caught too.
    from ase.build import bulk

    cubic = labelled(bulk("Cu", "fcc", a=0.361, cubic=True), batch=BATCH, index=INDEX)
    _only(frame_problems(cubic), "positions")
    primitive = labelled(bulk("Cu", "fcc", a=0.361), batch=BATCH, index=INDEX)
    assert len(primitive) == 1
    text = _only(frame_problems(primitive), "positions")
    assert "0.255" in text
