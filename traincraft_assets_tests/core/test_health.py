"""Health checks: every problem names its batch and frame."""

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import set_label
from traincraft_assets.core.health import (
    closest_pair,
    dataset_problems,
    energy_scales,
    force_scales,
    frame_problems,
    uncovered_elements,
)
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


def test_closest_pair_agrees_with_ase_on_every_kind_of_cell():
    """The overlap check's fast search finds what ASE's full neighbour search finds: in
    molecules, bulk, slabs periodic in two directions, skewed cells, atoms outside the cell,
    and cells thinner than the cutoff (an atom overlapping images beyond the next cell)."""
    from ase.build import bulk, fcc111, molecule
    from ase.neighborlist import neighbor_list

    rng = np.random.default_rng(11)
    skewed = Atoms("Cu3", cell=[[3.0, 0, 0], [2.7, 1.2, 0], [0.4, 0.3, 2.6]], pbc=True)
    skewed.positions = rng.uniform(-2, 5, (3, 3))  # partly outside the cell
    thin = Atoms("Cu2", positions=[[0, 0, 0], [1.0, 1.0, 0.1]], cell=[3.0, 3.0, 0.35], pbc=True)
    frames = [
        molecule("CH3CH2OH"),
        bulk("Cu", "fcc", a=3.6).repeat(2),
        fcc111("Cu", (2, 2, 3), vacuum=5.0),
        skewed,
        thin,
    ]
    checked = 0
    for frame in frames:
        for _ in range(20):
            atoms = frame.copy()
            atoms.positions += rng.normal(0, 0.4, atoms.positions.shape)
            for cutoff in (0.5, 1.0, 2.0):
                i, j, d = neighbor_list("ijd", atoms, cutoff)
                pair = closest_pair(atoms, cutoff)
                if len(d) == 0:
                    assert pair is None
                    continue
                checked += 1
                assert pair is not None and pair[0] <= pair[1]
                assert abs(pair[2] - d.min()) < 1e-9
                nearest = {(a, b) for a, b, x in zip(i, j, d) if abs(x - d.min()) < 1e-9}
                assert (pair[0], pair[1]) in nearest
    assert checked > 100  # the comparison saw many overlaps, not only clean frames


def _scales(factor: float, noise: float = 0.0, zero_labels: bool = False):
    """One batch whose labels are `factor` times a foundation's forces, plus noise (eV/Å)."""
    rng = np.random.default_rng(3)
    predicted = [rng.normal(0, 0.5, (32, 3)) for _ in range(5)]
    frames = []
    for forces in predicted:
        label = np.zeros_like(forces) if zero_labels else factor * forces + rng.normal(0, noise, forces.shape)
        frames.append(labelled(cu_bulk(), energy=-14.0, forces=label, batch=BATCH, index=0))
    [scale] = force_scales(frames, predicted)
    return scale


def test_another_level_of_theory_is_on_the_foundations_scale_but_ev_per_bohr_is_not():
    assert _scales(1.13, noise=0.05).plausible  # the demo target next to the demo foundation
    bohr = _scales(1.13 * 0.5292, noise=0.03)
    assert bohr.correlation > 0.9 and not bohr.plausible
    assert "likely eV/Bohr read as eV/Å" in str(bohr) and "fitted" in str(bohr)


def test_labels_that_do_not_follow_the_foundation_are_judged_by_their_rms_within_3x():
    loose = _scales(1.0, noise=1.0)  # a poor zero-shot model: labels and predictions barely agree
    assert loose.correlation < 0.8 and loose.plausible and "RMS" in str(loose)
    kcal = _scales(23.061, noise=20.0)
    assert not kcal.plausible and "likely kcal/mol/Å read as eV/Å" in str(kcal)
    assert "every label is the same" in str(_scales(1.0, zero_labels=True))


def _energy_scale(factor: float, offset_ev_per_atom: float = 0.0):
    """Two compositions, four frames each: labels are `factor` times the foundation's energies,
    plus a per-atom offset (E0s from another code)."""
    rng = np.random.default_rng(5)
    frames, predicted = [], []
    for repeat in (1, 2):
        for i in range(4):
            atoms = cu_bulk(rattle=0.05, seed=i, repeat=repeat)
            energy = len(atoms) * (-3.5 + rng.normal(0, 0.05))
            predicted.append(energy)
            frames.append(
                labelled(atoms, energy=factor * energy + offset_ev_per_atom * len(atoms), batch=BATCH, index=i)
            )
    [scale] = energy_scales(frames, predicted)
    return scale


def test_energies_in_kcal_per_mol_are_caught_whatever_the_e0s():
    """Within one composition the E0s cancel: a 2 eV/atom offset (another DFT code) passes, a
    unit mix-up does not."""
    assert _energy_scale(1.0, offset_ev_per_atom=2.0).plausible
    kcal = _energy_scale(23.061, offset_ev_per_atom=-80.0)
    assert not kcal.plausible and kcal.n_frames == 8
    assert "energy labels' spread within each composition 23.1x" in str(kcal) and "likely kcal/mol read as eV" in str(
        kcal
    )
    assert "likely Hartree read as eV" in str(_energy_scale(1 / 27.211))


def test_a_composition_seen_once_has_no_spread_to_compare():
    frames = [labelled(cu_bulk(repeat=r), energy=-3.5 * 4 * r**3, batch=BATCH, index=r) for r in (1, 2)]
    assert energy_scales(frames, [-1.0, -2.0]) == []
