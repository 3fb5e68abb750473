"""foundation: named models and replay sets resolve through MACE's cache.

This machine is offline, so the real downloads cannot run here. Pre-seeding MACE's cache with
a file under the exact name MACE 0.3.16 uses stands in for the download: it proves we look
where MACE looks (and where a cluster's pre-staged cache would be), without network.
"""

import inspect

import pytest

from traincraft_assets.core.foundation import (
    NAMED_REPLAY_SETS,
    fetch_named_model,
    fetch_named_replay_set,
    named_models,
)

# Cache file names as MACE 0.3.16 derives them: basename of the URL with everything but
# alphanumerics and "_" stripped (calculators/foundations_models.py download_mace_mp_checkpoint,
# tools/multihead_tools.py assemble_replay_data).
SMALL_MODEL_CACHE_NAME = "20231210mace128L0_energy_epoch249model"  # .../2023-12-10-mace-128-L0_energy_epoch-249.model
MEDIUM_MODEL_CACHE_NAME = "20231203mace128L1_epoch199model"  # .../2023-12-03-mace-128-L1_epoch-199.model
MP_REPLAY_CACHE_NAME = "mp_traj_combinedxyz"  # .../mace_mp_0b/mp_traj_combined.xyz


@pytest.fixture
def mace_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    from mace.tools.utils import get_cache_dir

    cache = get_cache_dir()
    assert str(cache).startswith(str(tmp_path))
    cache.mkdir(parents=True)
    return cache


def test_named_model_from_seeded_cache(mace_cache):
    seeded = mace_cache / SMALL_MODEL_CACHE_NAME
    seeded.write_bytes(b"pretend small foundation")
    path = fetch_named_model("small")
    assert path == seeded
    assert path.read_bytes() == b"pretend small foundation"


def test_model_alias_resolves_to_medium(mace_cache):
    seeded = mace_cache / MEDIUM_MODEL_CACHE_NAME
    seeded.write_bytes(b"pretend medium")
    assert fetch_named_model("mp0") == seeded
    assert fetch_named_model("mace-mp-0") == seeded


def test_named_replay_set_from_seeded_cache(mace_cache):
    seeded = mace_cache / MP_REPLAY_CACHE_NAME
    seeded.write_text("1\nProperties=species:S:1:pos:R:3\nCu 0 0 0\n")
    assert fetch_named_replay_set("mp") == seeded
    assert not list(mace_cache.glob("*.part"))


def test_named_replay_urls_match_mace():
    from mace.tools import multihead_tools

    source = inspect.getsource(multihead_tools.assemble_replay_data)
    for name, url in NAMED_REPLAY_SETS.items():
        assert f'"{name}"' in source, name
        assert url in source, f"{name}: {url} is not the URL MACE uses"


def test_unknown_model_lists_valid_names(mace_cache):
    with pytest.raises(ValueError) as info:
        fetch_named_model("gigantic")
    message = str(info.value)
    assert "gigantic" in message
    for name in ("small", "medium", "large", "mp0"):
        assert name in message
    assert "small" in named_models() and "mp0" in named_models()


def test_unknown_replay_set_lists_valid_names(mace_cache):
    with pytest.raises(ValueError) as info:
        fetch_named_replay_set("oc20")
    message = str(info.value)
    assert "oc20" in message
    for name in ("mp", "omat", "matpes_pbe", "matpes_r2scan"):
        assert name in message


def test_a_scratch_recipe_changes_with_any_training_setting_or_the_pool():
    from dataclasses import replace

    from traincraft_assets.core.foundation import FoundationSettings, scratch_recipe

    settings = FoundationSettings(source="scratch")
    recipe = scratch_recipe(settings, "pool-a")
    assert recipe == scratch_recipe(FoundationSettings(source="scratch"), "pool-a")
    assert recipe != scratch_recipe(settings, "pool-b")
    assert recipe != scratch_recipe(
        replace(settings, scratch=replace(settings.scratch, seed=settings.scratch.seed + 1)), "pool-a"
    )


def test_a_file_pool_is_staged_chunk_by_chunk_with_its_labels_as_ref_keys(tmp_path):
    """A pool file of several chunks (CHUNK_FRAMES each) and its held-out file are copied
    whole and in order, labels moved from the file's own keys to REF_*."""
    import ase.io
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from traincraft_assets.core.foundation import PoolSettings, stage_pool
    from traincraft_assets.core.frames import CHUNK_FRAMES, get_label, read_frames, write_frames

    rng = np.random.default_rng(0)
    frames = []
    for i in range(2 * CHUNK_FRAMES + 7):
        atoms = Atoms("CuNi", positions=rng.uniform(0, 3, (2, 3)), cell=np.eye(3) * 3, pbc=True)
        atoms.info["DFT_energy"] = float(i)
        atoms.arrays["DFT_forces"] = rng.normal(size=(2, 3))
        frames.append(atoms)
    pool, heldout = tmp_path / "pool_in.xyz", tmp_path / "heldout_in.xyz"
    write_frames(pool, frames)
    held = Atoms("Cu", cell=np.eye(3) * 3, pbc=True)
    held.calc = SinglePointCalculator(held, energy=-1.5, forces=np.zeros((1, 3)))
    ase.io.write(heldout, [held], format="extxyz")

    settings = PoolSettings(source="file", path=str(pool), heldout_path=str(heldout))
    staged = stage_pool(settings, tmp_path / "pool.xyz", tmp_path / "heldout.xyz")
    assert staged.origin == str(pool) and staged.n_heldout == 1
    assert staged.summary["n_frames"] == len(frames) and staged.summary["labels"] == ["energy", "forces"]
    copied = read_frames(tmp_path / "pool.xyz")
    assert [get_label(a, "energy") for a in copied] == [float(i) for i in range(len(frames))]
    assert np.allclose(get_label(copied[-1], "forces"), frames[-1].arrays["DFT_forces"])
    assert "DFT_energy" not in copied[0].info
    assert get_label(read_frames(tmp_path / "heldout.xyz")[0], "energy") == -1.5

    without = stage_pool(PoolSettings(source="file", path=str(pool)), tmp_path / "p2.xyz", tmp_path / "h2.xyz")
    assert without.n_heldout == 0 and not (tmp_path / "h2.xyz").exists()


def test_a_pool_of_batches_keeps_one_level_and_leaves_out_structures_labelled_at_another(tmp_path):
    """Source 'batches': the cheap level's frames, each structure once, without the structures
    the expensive level labels too; a missing or absent level, or nothing left, is refused."""
    from traincraft_assets.core.foundation import PoolSettings, pool_problems, stage_pool
    from traincraft_assets.core.frames import LEVEL_KEY, fingerprint, read_frames, set_label, write_frames
    from traincraft_assets_tests.core.helpers import cu_bulk

    def labelled(seeds, level):
        frames = [cu_bulk(rattle=0.05, seed=s, repeat=1) for s in seeds]
        for atoms in frames:
            set_label(atoms, "energy", -1.0)
            atoms.info[LEVEL_KEY] = level
        return frames

    cheap_a, cheap_b, dear = tmp_path / "a.xyz", tmp_path / "b.xyz", tmp_path / "c.xyz"
    write_frames(cheap_a, labelled(range(6), "xtb"))
    write_frames(cheap_b, labelled(range(4, 9), "xtb"))  # 4 and 5 again: kept once
    write_frames(dear, labelled([0, 1], "dft"))  # 0 and 1 are the expensive level's structures
    pool = tmp_path / "pool.xyz"
    staged = stage_pool(PoolSettings(source="batches", level="xtb"), pool, tmp_path / "h.xyz", [cheap_a, cheap_b, dear])
    expected = [fingerprint(a) for a in labelled(range(2, 9), "xtb")]
    assert [fingerprint(a) for a in read_frames(pool)] == expected and staged.n_heldout == 0

    levels = {"xtb": 11, "dft": 2}
    assert (
        "set `level`, one of: 'xtb' (11 frames), 'dft' (2 frames)"
        in pool_problems(PoolSettings(source="batches"), levels)[0]
    )
    assert (
        "'pbe' is not in the labelled batches" in pool_problems(PoolSettings(source="batches", level="pbe"), levels)[0]
    )
    assert pool_problems(PoolSettings(source="batches", level="xtb"), levels) == []
    with pytest.raises(ValueError, match=r"no frame at level 'pbe'.*'dft' \(2 frames\)"):
        stage_pool(PoolSettings(source="batches", level="pbe"), pool, tmp_path / "h.xyz", [cheap_a, dear])
    with pytest.raises(ValueError, match="every structure at level 'dft' is also labelled at another level"):
        stage_pool(PoolSettings(source="batches", level="dft"), pool, tmp_path / "h.xyz", [cheap_a, dear])
