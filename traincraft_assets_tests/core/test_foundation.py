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
