"""Bad input files, generated here: each gets a message that names the file, the frame and the
field (or line), says what was expected and what was found, and what to do."""

import numpy as np
import pytest
from ase.build import bulk

from traincraft_assets.core.frames import FrameError, read_frames, write_frames
from traincraft_assets.core.health import frame_problems
from traincraft_assets.core.labelling import LabelOptions, label_batch, prelabelled


def _good_text(tmp_path) -> str:
    frames = []
    for i in range(3):
        atoms = bulk("Cu", cubic=True)
        atoms.positions[0, 0] += 0.01 * i
        atoms.info["REF_energy"] = -1.0 - i
        atoms.arrays["REF_forces"] = np.zeros((4, 3))
        frames.append(atoms)
    path = tmp_path / "good.xyz"
    write_frames(path, frames)
    return path.read_text()


def _write(tmp_path, name, content) -> str:
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


BAD_FILES = {
    # name: (make content from the good text, the substrings the message must contain)
    "empty": (lambda t: "", ["empty.xyz", "the file is empty"]),
    "binary": (lambda t: bytes(range(256)) * 8, ["binary.xyz", "binary file, not extxyz"]),
    "not_utf8": (
        lambda t: t.encode().replace(b"REF_energy=-2.0", b"REF_energy=-2.0 note=\xff\xfe"),
        ["not_utf8.xyz", "frame 1", "line 8", "not UTF-8", "0xff", "re-save"],
    ),
    "unknown_element": (
        lambda t: "".join(  # the first atom line of frame 1 (line 9)
            line.replace("Cu", "Xx", 1) if i == 8 else line for i, line in enumerate(t.splitlines(True))
        ),
        ["unknown_element.xyz", "frame 1", "line 9", "field species", "unknown element symbol 'Xx'", "chemical symbol"],
    ),
    "truncated": (
        lambda t: "".join(t.splitlines(True)[:-2]),
        ["truncated.xyz", "ends inside its last frame", "2 atoms, expected 4", "incomplete"],
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unreadable_files_are_located_and_explained(tmp_path, name):
    make, expected = BAD_FILES[name]
    path = _write(tmp_path, f"{name}.xyz", make(_good_text(tmp_path)))
    with pytest.raises(FrameError) as error:
        read_frames(path)
    for part in expected:
        assert part in str(error.value), (part, str(error.value))


def test_forces_of_the_wrong_shape_name_the_file_frame_and_field(tmp_path):
    text = _good_text(tmp_path).replace("REF_forces:R:3", "REF_forces:R:2")
    path = _write(
        tmp_path,
        "two_columns.xyz",
        "\n".join(" ".join(line.split()[:-1]) if len(line.split()) == 7 else line for line in text.splitlines()) + "\n",
    )
    with pytest.raises(FrameError) as error:
        label_batch(path, "two_columns.xyz", "prelabelled", LabelOptions(), tmp_path / "labelled.xyz")
    message = str(error.value)
    for part in ("two_columns.xyz", "frame 0", "field REF_forces", "shape (4, 2)", "n x 3", "4-atom"):
        assert part in message, (part, message)


def test_energy_under_an_unknown_key_lists_the_keys_found_and_the_keys_read(tmp_path):
    atoms = bulk("Cu", cubic=True)
    atoms.info["totalenergy"] = -3.5
    atoms.arrays["forces"] = np.zeros((4, 3))
    (labelled,) = prelabelled([atoms], LabelOptions())
    (problem,) = [p for p in frame_problems(labelled) if p.field == "REF_energy"]
    for part in ("'totalenergy'", "'TotEnergy'", "'energy'", "rename the key"):
        assert part in problem.message, (part, problem.message)


def test_stress_on_a_non_periodic_frame_is_a_problem_naming_the_field():
    from ase.build import fcc111

    slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)  # pbc True, True, False
    slab.info["REF_energy"] = -1.0
    slab.arrays["REF_forces"] = np.zeros((len(slab), 3))
    slab.info["REF_stress"] = np.zeros(9)
    (problem,) = frame_problems(slab)
    assert problem.field == "REF_stress" and "not periodic in all directions" in problem.message
    slab.pbc = True
    assert frame_problems(slab) == []


def test_a_batch_longer_than_one_chunk_is_labelled_in_chunks_and_problems_keep_their_frame(tmp_path, monkeypatch):
    """label_batch streams CHUNK_FRAMES at a time (4 here): indices and refusals span the chunks."""
    from traincraft_assets.core import frames as frames_module
    from traincraft_assets.core.frames import read_frames
    from traincraft_assets.core.health import BatchError

    chunk = 4
    monkeypatch.setattr(frames_module, "CHUNK_FRAMES", chunk)
    n = 2 * chunk + 3
    frames = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True)
        atoms.positions[0, 0] += 1e-4 * i  # distinct structures
        atoms.info["REF_energy"] = -14.0
        atoms.arrays["REF_forces"] = np.zeros((4, 3))
        frames.append(atoms)
    write_frames(tmp_path / "long.xyz", frames)
    summary = label_batch(tmp_path / "long.xyz", "long.xyz", "prelabelled", LabelOptions(), tmp_path / "out.xyz")
    assert summary["n_frames"] == n and summary["labels"] == ["energy", "forces"]
    assert [a.info["batch_index"] for a in read_frames(tmp_path / "out.xyz")] == list(range(n))

    frames[chunk + 2].info["REF_energy"] = np.nan  # in the second chunk
    write_frames(tmp_path / "long.xyz", frames)
    with pytest.raises(BatchError) as refused:
        label_batch(tmp_path / "long.xyz", "long.xyz", "prelabelled", LabelOptions(), tmp_path / "out.xyz")
    assert f"1 problem(s) in {n} frames" in str(refused.value)
    assert f"frame {chunk + 2}, field REF_energy: 1 non-finite" in str(refused.value)


def test_workers_label_chunks_in_their_own_processes_and_give_the_one_process_result(tmp_path, monkeypatch):
    """`workers: 2`: chunks (4 frames here) go to two spawned processes; the output is the
    one-process output, frame for frame and in file order. Zero workers is refused by name."""
    from traincraft_assets.core import frames as frames_module

    monkeypatch.setattr(frames_module, "CHUNK_FRAMES", 4)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(11):
        atoms = bulk("Cu", cubic=True)
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    write_frames(tmp_path / "b.xyz", frames)
    one = label_batch(tmp_path / "b.xyz", "b.xyz", "emt", LabelOptions(), tmp_path / "one.xyz")
    two = label_batch(tmp_path / "b.xyz", "b.xyz", "emt", LabelOptions(workers=2), tmp_path / "two.xyz")
    assert one == two
    serial, parallel = read_frames(tmp_path / "one.xyz"), read_frames(tmp_path / "two.xyz")
    assert [a.info["batch_index"] for a in parallel] == list(range(11))
    assert [a.info["REF_energy"] for a in parallel] == [a.info["REF_energy"] for a in serial]
    assert all(np.array_equal(a.arrays["REF_forces"], b.arrays["REF_forces"]) for a, b in zip(serial, parallel))
    with pytest.raises(ValueError, match="workers is 0"):
        label_batch(tmp_path / "b.xyz", "b.xyz", "emt", LabelOptions(workers=0), tmp_path / "zero.xyz")
