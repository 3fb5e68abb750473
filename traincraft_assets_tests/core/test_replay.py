"""select_replay: filtering and random subselection (no model needed), and FPS on the shipped
demo foundation's descriptors."""

import pytest
from ase import Atoms

from traincraft_assets.core.replay import ReplaySettings, select_replay


def _select(pool, elements, num_samples, subselect, filtering, **settings):
    """select_replay without a model (random subselection needs none)."""
    return select_replay(
        pool,
        elements,
        ReplaySettings(num_samples=num_samples, subselect=subselect, filtering=filtering, **settings),
        None,
    )


# (symbols, how many frames of that composition)
COMPOSITIONS = [("Cu4", 20), ("Cu2Ni2", 15), ("Ni4", 10), ("Al4", 12), ("Cu2Al2", 8), ("Ni2Au2", 5)]


def _pool():
    pool = []
    for symbols, count in COMPOSITIONS:
        for k in range(count):
            atoms = Atoms(
                symbols,
                positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5 + 0.01 * k]],
                cell=[5, 5, 5],
                pbc=True,
            )
            atoms.info["pool_index"] = len(pool)
            pool.append(atoms)
    return pool


def _ids(frames):
    return [a.info["pool_index"] for a in frames]


def _made_of(pool, allowed):
    return {a.info["pool_index"] for a in pool if set(a.get_chemical_symbols()) <= set(allowed)}


def test_combinations_keep_only_frames_made_of_target_elements():
    from mace.cli.fine_tuning_select import FilteringType, filter_atoms

    pool = _pool()
    expected = _made_of(pool, ["Cu", "Ni"])  # Cu4, Cu2Ni2, Ni4: 45 frames
    assert len(expected) == 45
    # the same semantics as MACE's own filter
    assert expected == {a.info["pool_index"] for a in pool if filter_atoms(a, ["Cu", "Ni"], FilteringType.COMBINATIONS)}

    selection = _select(pool, ["Cu", "Ni"], 10, "random", "combinations", num_heldout=5, seed=1)
    assert selection.n_pool == len(pool)
    assert selection.n_filtered == 45
    assert len(selection.selected) == 10
    assert set(_ids(selection.selected)) <= expected
    assert set(_ids(selection.heldout)) <= expected


def test_none_keeps_all():
    pool = _pool()
    selection = _select(pool, [], 1000, "random", "none", num_heldout=5)
    assert selection.n_filtered == len(pool)
    assert sorted(_ids(selection.selected)) == list(range(len(pool)))
    assert selection.heldout == []


def test_more_samples_than_filtered_returns_all_filtered():
    pool = _pool()
    selection = _select(pool, ["Ni"], 500, "random", "combinations", num_heldout=3)
    assert sorted(_ids(selection.selected)) == sorted(_made_of(pool, ["Ni"]))
    assert len(selection.selected) == 10
    assert selection.heldout == []  # nothing left over to hold out


def test_heldout_is_disjoint_and_bounded():
    pool = _pool()
    selection = _select(pool, ["Cu", "Ni"], 30, "random", "combinations", num_heldout=8, seed=4)
    selected, heldout = set(_ids(selection.selected)), set(_ids(selection.heldout))
    assert len(selected) == 30
    assert selected.isdisjoint(heldout)
    assert len(heldout) == 8

    few_left = _select(pool, ["Cu", "Ni"], 40, "random", "combinations", num_heldout=8, seed=4)
    assert len(few_left.heldout) == 5  # only 45 - 40 frames remain
    assert set(_ids(few_left.selected)).isdisjoint(_ids(few_left.heldout))


def test_same_seed_same_selection_other_seed_differs():
    pool = _pool()
    a = _select(pool, ["Cu", "Ni"], 10, "random", "combinations", num_heldout=5, seed=7)
    b = _select(pool, ["Cu", "Ni"], 10, "random", "combinations", num_heldout=5, seed=7)
    c = _select(pool, ["Cu", "Ni"], 10, "random", "combinations", num_heldout=5, seed=8)
    assert _ids(a.selected) == _ids(b.selected) and _ids(a.heldout) == _ids(b.heldout)
    assert _ids(a.selected) != _ids(c.selected)


def test_nothing_passes_the_filter():
    with pytest.raises(ValueError) as info:
        _select(_pool(), ["Zr"], 10, "random", "combinations", num_heldout=0)
    message = str(info.value)
    assert "Zr" in message and "combinations" in message
    assert "'none'" in message  # says what to change


def test_filter_needs_target_elements():
    with pytest.raises(ValueError, match="elements"):
        _select(_pool(), [], 10, "random", "combinations", num_heldout=0)


def test_fps_needs_a_model():
    with pytest.raises((ValueError, RuntimeError)) as info:
        _select(_pool(), ["Cu", "Ni"], 5, "fps", "combinations", num_heldout=0)
    assert "fps" in str(info.value)


def test_heldout_comes_from_frames_never_trained_on_when_the_pool_has_them():
    pool, never_seen = _pool(), _pool()
    for atoms in never_seen:
        atoms.info["pool_index"] += 1000
    selection = select_replay(
        pool, ["Cu"], ReplaySettings(num_samples=5, subselect="random", num_heldout=7), None, heldout_pool=never_seen
    )
    assert selection.heldout_source == "never trained on"
    heldout = _ids(selection.heldout)
    assert len(heldout) == 7 and all(i >= 1000 for i in heldout)
    # filtered like the replay frames: only frames made of the target's elements
    assert {a.get_chemical_formula() for a in selection.heldout} == {"Cu4"}
    without = _select(pool, ["Cu"], 5, "random", "combinations", num_heldout=7)
    assert without.heldout_source == "unselected pool frames"
    assert not set(_ids(without.heldout)) & set(_ids(without.selected))


def test_fps_picks_spread_frames_on_the_foundations_descriptors_without_progress_bars(capfd):
    """MACE's FPS on the shipped demo foundation; its tqdm bars (two per selection) stay out of
    the user's terminal and the run log."""
    from traincraft_assets.core.demo import SHIPPED_FOUNDATION_DIR, pretraining_frames

    pool = [atoms for atoms in pretraining_frames(4) if set(atoms.get_chemical_symbols()) == {"Cu"}]
    settings = ReplaySettings(num_samples=2, subselect="fps", filtering="combinations", num_heldout=0, device="cpu")
    chosen = select_replay(pool, ["Cu"], settings, str(SHIPPED_FOUNDATION_DIR / "foundation.model"), "float32")
    assert len({id(a) for a in chosen.selected}) == 2 and all(any(a is b for b in pool) for a in chosen.selected)
    err = capfd.readouterr().err
    assert "Calculate descriptors" not in err and "Assembling descriptors" not in err


def test_a_replay_set_smaller_than_the_training_side_gets_advice_naming_both_counts_and_the_fix():
    from traincraft_assets.core.replay import replay_shortfall

    advice = replay_shortfall(24, 94)
    assert advice.startswith("24 replay frames for 94 target training frames")
    assert "num_samples" in advice and "forgets" in advice
    assert replay_shortfall(96, 94) is None and replay_shortfall(94, 94) is None
