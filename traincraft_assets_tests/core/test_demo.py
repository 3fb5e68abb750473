"""Demo data: Cu target batches the pretraining pool never shows, seven-metal pretraining."""

import numpy as np

from traincraft_assets.core.demo import (
    PRETRAINING_METALS,
    pretraining_frames,
    target_batches,
    write_target_batches,
)
from traincraft_assets.core.frames import elements, get_label, read_frames


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


def test_pretraining_frames_cover_seven_metals_with_stress():
    frames = pretraining_frames(frames_per_metal=1)
    assert len(frames) == 7
    assert set(elements(frames)) == {"Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al"} == set(PRETRAINING_METALS)
    for atoms in frames:
        stress = get_label(atoms, "stress")
        assert stress is not None and stress.shape == (9,) and np.isfinite(stress).all()
        assert np.isfinite(get_label(atoms, "energy"))
    # target environments are not in the pool
    assert not {a.info["config_type"] for a in frames} & {"surface", "adatom", "vacancy", "hot_rattle"}


def test_write_target_batches_writes_readable_files(tmp_path):
    paths = write_target_batches(tmp_path / "batches", frames_per_kind=1)
    assert len(paths) >= 2
    for path in paths:
        frames = read_frames(path)
        assert len(frames) == 2
        assert all(get_label(a, "energy") is not None for a in frames)
