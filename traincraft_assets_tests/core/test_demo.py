"""Demo data: a broad seven-metal pool at the foundation's level of theory (EMT), Cu target
batches at another (EMT plus a Morse pair term), partly in environments the pool never shows."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from scipy.optimize import minimize_scalar

from traincraft_assets.core.demo import (
    POOL_KINDS,
    PRETRAINING_METALS,
    pretraining_frames,
    target_batches,
    write_target_batches,
)
from traincraft_assets.core.frames import elements, get_label, read_frames
from traincraft_assets.core.labelling import emt_morse_calculator


def test_target_batches_are_cu_in_new_environments():
    batches = target_batches(frames_per_kind=2)
    assert len(batches) >= 2
    frames = [a for batch in batches.values() for a in batch]
    assert elements(frames) == ["Cu"]
    assert {a.info["config_type"] for a in frames} == {"surface", "adatom", "vacancy", "hot_rattle"}
    for atoms in frames:
        assert np.isfinite(get_label(atoms, "energy"))
        assert get_label(atoms, "forces").shape == (len(atoms), 3)
        # stress only where the cell is fully periodic
        assert (get_label(atoms, "stress") is not None) == bool(atoms.pbc.all())


def test_target_batches_are_reproducible():
    a = target_batches(frames_per_kind=1, seed=3)
    b = target_batches(frames_per_kind=1, seed=3)
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_array_equal(x.positions, y.positions)


def test_the_pool_is_broad_seven_metals_in_four_kinds_of_environment():
    frames = pretraining_frames(frames_per_metal=len(POOL_KINDS))
    assert len(frames) == 7 * len(POOL_KINDS)
    assert set(elements(frames)) == {"Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al"} == set(PRETRAINING_METALS)
    kinds = {f"{kind}_{metal}" for kind in ("bulk", "strained", "surface", "vacancy") for metal in PRETRAINING_METALS}
    assert {a.info["config_type"] for a in frames} == kinds
    for atoms in frames:
        assert np.isfinite(get_label(atoms, "energy"))
        stress = get_label(atoms, "stress")
        assert (stress is not None) == bool(atoms.pbc.all())  # not on surfaces
        assert stress is None or (stress.shape == (9,) and np.isfinite(stress).all())
        assert get_label(atoms, "energy") == pytest.approx(_emt(atoms)[0])  # the foundation's theory


def test_heldout_frames_share_the_pools_distribution_but_not_its_frames():
    pool = pretraining_frames(frames_per_metal=8)
    heldout = pretraining_frames(frames_per_metal=8, heldout=True)
    assert [a.info["config_type"] for a in heldout] == [a.info["config_type"] for a in pool]
    positions = {a.positions.tobytes() for a in pool}
    assert not any(a.positions.tobytes() in positions for a in heldout)
    assert pretraining_frames(frames_per_metal=8, heldout=True)[5].positions.tobytes() == heldout[5].positions.tobytes()


def _emt(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    return atoms.get_potential_energy(), atoms.get_forces()


def _lattice_constant(make_calc) -> float:
    def energy(a: float) -> float:
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = make_calc()
        return atoms.get_potential_energy()

    return minimize_scalar(energy, bounds=(3.50, 3.65), method="bounded", options={"xatol": 1e-4}).x


def test_the_target_is_another_level_of_theory_systematically_not_randomly():
    """Like a better functional: a shorter lattice constant, deeper cohesion, different forces."""
    assert _lattice_constant(EMT) == pytest.approx(3.590, abs=0.002)
    assert _lattice_constant(emt_morse_calculator) == pytest.approx(3.560, abs=0.002)
    frames = [a for batch in target_batches(frames_per_kind=3).values() for a in batch]
    gaps = []
    for atoms in frames:
        energy, forces = _emt(atoms)
        gaps.append((get_label(atoms, "energy") - energy) / len(atoms))
        assert not np.allclose(get_label(atoms, "forces"), forces, atol=0.01)
    assert -0.5 < np.mean(gaps) < -0.3  # eV/atom: deeper
    # the pool never shows adatoms or hot rattles
    assert not {a.info["config_type"] for a in pretraining_frames(4)} & {"adatom", "hot_rattle"}


def test_write_target_batches_writes_readable_files(tmp_path):
    paths = write_target_batches(tmp_path / "batches", frames_per_kind=1)
    assert len(paths) >= 2
    for path in paths:
        frames = read_frames(path)
        assert len(frames) == 2
        assert all(get_label(a, "energy") is not None for a in frames)
