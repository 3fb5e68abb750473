"""split_frames: a frame's side depends only on its content and the salt."""

import pytest

from traincraft_assets.core.split import split_frames
from traincraft_assets_tests.core.helpers import merge_in_memory, random_pair


def _frames(start, stop):
    frames = []
    for seed in range(start, stop):
        atoms = random_pair(seed)
        atoms.info["uid"] = seed
        frames.append(atoms)
    return frames


def _side_by_uid(frames, sides):
    return {frames[i].info["uid"]: side for side, idx in sides.items() for i in idx}


def test_every_index_lands_on_exactly_one_side():
    frames = _frames(0, 300)
    sides = split_frames(frames, valid_fraction=0.2, test_fraction=0.1)
    all_idx = sorted(i for idx in sides.values() for i in idx)
    assert all_idx == list(range(300))


def test_old_frames_keep_their_side_when_batches_are_added():
    old = _frames(0, 200)
    before = _side_by_uid(old, split_frames(old, 0.2, 0.1))
    grown = _frames(1000, 1025) + old + _frames(2000, 2025)  # 50 new frames around the old ones
    after = _side_by_uid(grown, split_frames(grown, 0.2, 0.1))
    moved = [uid for uid, side in before.items() if after[uid] != side]
    assert moved == []


def test_fingerprint_from_merge_and_fresh_fingerprint_agree():
    frames = _frames(0, 100)
    merged, _ = merge_in_memory([frames])
    assert _side_by_uid(frames, split_frames(frames, 0.3)) == _side_by_uid(merged, split_frames(merged, 0.3))


def test_duplicates_cannot_land_on_different_sides():
    frames = _frames(0, 200)
    copies = []
    for atoms in frames:
        copy = atoms.copy()
        copy.info["uid"] = ("copy", atoms.info["uid"])
        copies.append(copy)
    both = frames + copies[::-1]
    by_uid = _side_by_uid(both, split_frames(both, 0.25, 0.25))
    assert all(by_uid[a.info["uid"]] == by_uid[("copy", a.info["uid"])] for a in frames)


def test_fractions_are_roughly_respected():
    frames = _frames(0, 1000)
    sides = split_frames(frames, valid_fraction=0.1, test_fraction=0.2)
    n = {side: len(idx) for side, idx in sides.items()}
    # binomial std for 1000 draws is ~9.5 (p=0.1) and ~12.6 (p=0.2): allow ~4 sigma
    assert 60 <= n["valid"] <= 140, n
    assert 150 <= n["test"] <= 250, n
    assert 600 <= n["train"] <= 780, n


def test_no_test_side_by_default():
    sides = split_frames(_frames(0, 200), valid_fraction=0.2)
    assert sides["test"] == []
    assert sides["valid"] and sides["train"]


def test_salt_changes_the_split_and_same_salt_repeats_it():
    frames = _frames(0, 300)
    a = split_frames(frames, 0.2, salt="alpha")
    assert split_frames(frames, 0.2, salt="alpha") == a
    b = split_frames(frames, 0.2, salt="beta")
    assert a["valid"] != b["valid"]


@pytest.mark.parametrize(
    "valid, test",
    [(0.0, 0.0), (1.0, 0.0), (-0.1, 0.0), (0.2, -0.1), (0.6, 0.4), (0.5, 0.7)],
)
def test_invalid_fractions_are_rejected(valid, test):
    with pytest.raises(ValueError) as info:
        split_frames(_frames(0, 10), valid_fraction=valid, test_fraction=test)
    message = str(info.value)
    assert "valid_fraction" in message and "test_fraction" in message
    assert f"valid_fraction={valid}" in message


def test_empty_valid_side_says_what_to_change():
    with pytest.raises(ValueError) as info:
        split_frames(_frames(0, 3), valid_fraction=1e-9)
    message = str(info.value)
    assert "valid side is empty" in message
    assert "3 frames" in message
    assert "Add data or change the fractions" in message


def test_empty_train_side_is_rejected_too():
    with pytest.raises(ValueError, match="train side is empty"):
        split_frames(_frames(0, 3), valid_fraction=0.999999)
