"""merge_batches: duplicates removed, conflicts reported, order kept."""

from traincraft_assets.core.dataset import FINGERPRINT_KEY
from traincraft_assets.core.frames import fingerprint, get_label, read_frames, write_frames
from traincraft_assets_tests.core.helpers import cu_bulk, labelled, merge_in_memory


def _frame(seed, batch, index, energy=None):
    return labelled(
        cu_bulk(rattle=0.04, seed=seed, repeat=1),
        energy=-10.0 - seed if energy is None else energy,
        forces=0.01 * seed,
        batch=batch,
        index=index,
    )


def test_merge_removes_duplicates_and_reports_conflicts():
    b1 = [_frame(1, "b1", 0), _frame(2, "b1", 1), _frame(3, "b1", 2)]
    b2 = [
        _frame(2, "b2", 0),  # exact duplicate of b1 frame 1
        _frame(4, "b2", 1),
        _frame(3, "b2", 2, energy=-99.0),  # b1 frame 2's structure, different label
    ]
    merged, report = merge_in_memory([b1, b2])

    assert [(a.info["batch"], a.info["batch_index"]) for a in merged] == [
        ("b1", 0),
        ("b1", 1),
        ("b1", 2),
        ("b2", 1),
    ]
    assert report.n_input == 6
    assert report.n_duplicates == 2
    assert len(report.conflicts) == 1
    conflict = report.conflicts[0]
    assert "'b2', frame 2" in conflict and "'b1', frame 2" in conflict
    assert float(get_label(merged[2], "energy")) == -13.0  # the first copy is kept
    for atoms in merged:
        assert atoms.info[FINGERPRINT_KEY] == fingerprint(atoms)


def test_merge_does_not_modify_inputs():
    b1 = [_frame(1, "b1", 0)]
    merge_in_memory([b1])
    assert FINGERPRINT_KEY not in b1[0].info


def test_duplicate_within_one_batch_and_across_batch_files(tmp_path):
    frames = [_frame(5, "x", 0), _frame(6, "x", 1)]
    write_frames(tmp_path / "one.xyz", frames)
    write_frames(tmp_path / "two.xyz", [frames[1], frames[0], frames[0]])
    merged, report = merge_in_memory([read_frames(tmp_path / "one.xyz"), read_frames(tmp_path / "two.xyz")])
    assert len(merged) == 2
    assert report.n_duplicates == 3
    assert report.conflicts == []


def test_missing_label_on_one_copy_is_a_conflict():
    a = _frame(7, "b1", 0)
    b = labelled(cu_bulk(rattle=0.04, seed=7, repeat=1), energy=None, forces=0.07, batch="b2", index=3)
    merged, report = merge_in_memory([[a], [b]])
    assert len(merged) == 1
    assert len(report.conflicts) == 1 and "'b2', frame 3" in report.conflicts[0]


def test_empty_input():
    merged, report = merge_in_memory([[], []])
    assert merged == [] and report.n_input == 0 and report.n_duplicates == 0
