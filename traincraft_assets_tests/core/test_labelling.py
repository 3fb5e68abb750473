"""Labellers: REF_* keys out of any input convention, in-process EMT, external programs."""

import sys
import textwrap

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111, molecule
from ase.calculators.emt import EMT

from traincraft_assets.core.frames import FrameError, get_label, read_frames, write_frames
from traincraft_assets.core.health import BatchError
from traincraft_assets.core.labelling import (
    LABELLERS,
    ChunkPlan,
    LabelOptions,
    label_batch,
    label_chunk,
    merge_chunks,
    plan_chunks,
    prelabelled,
)
from traincraft_assets_tests.core.helpers import cu_bulk, python_command

# Three conventions a batch file arrives in: ASE's plain keys (read into a calculator),
# DFT_* keys, and already-REF_* keys.
MIXED_CONVENTIONS = """\
2
Lattice="3.0 0.0 0.0 0.0 3.0 0.0 0.0 0.0 3.0" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 stress="0.01 0.06 0.05 0.06 0.02 0.04 0.05 0.04 0.03" config_type=plain pbc="T T T"
Cu 0.0 0.0 0.0 0.1 0.2 0.3
Cu 1.5 1.5 0.0 -0.1 -0.2 -0.3
2
Lattice="3.0 0.0 0.0 0.0 3.0 0.0 0.0 0.0 3.0" Properties=species:S:1:pos:R:3:DFT_forces:R:3 DFT_energy=-2.5 DFT_stress="0.01 0 0 0 0.02 0 0 0 0.03" pbc="T T T"
Cu 0.0 0.0 0.0 0.4 0.5 0.6
Cu 1.5 0.0 1.5 -0.4 -0.5 -0.6
2
Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=-3.5 pbc="F F F"
Cu 0.0 0.0 0.0 0.7 0.8 0.9
Cu 2.2 0.0 0.0 -0.7 -0.8 -0.9
"""

ORIGINAL_KEYS = ("energy", "forces", "stress", "DFT_energy", "DFT_forces", "DFT_stress")


def _label_batch(tmp_path, path, batch, labeller, options):
    """label_batch into a file in tmp_path, read back."""
    out = tmp_path / "labelled.xyz"
    label_batch(path, batch, labeller, options, out)
    return read_frames(out)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _script(tmp_path, body: str, name="program.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _unlabelled_batch(tmp_path, n=3):
    frames = [cu_bulk(rattle=0.05, seed=i, repeat=1) for i in range(n)]
    path = tmp_path / "batch.xyz"
    write_frames(path, frames)
    return path, frames


def test_prelabelled_maps_every_convention_to_ref_keys(tmp_path):
    frames = read_frames(_write(tmp_path, "mixed.xyz", MIXED_CONVENTIONS))
    assert frames[0].calc is not None  # ASE put energy=/forces/stress= on a SinglePointCalculator
    out = prelabelled(frames, LabelOptions())

    plain, dft, ref = out
    assert float(get_label(plain, "energy")) == -1.5
    np.testing.assert_allclose(get_label(plain, "forces"), [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
    np.testing.assert_allclose(
        get_label(plain, "stress").reshape(3, 3), np.array([[1, 6, 5], [6, 2, 4], [5, 4, 3]]) / 100
    )
    assert plain.info["config_type"] == "plain"

    assert float(get_label(dft, "energy")) == -2.5
    np.testing.assert_allclose(get_label(dft, "forces"), [[0.4, 0.5, 0.6], [-0.4, -0.5, -0.6]])
    np.testing.assert_allclose(get_label(dft, "stress").reshape(3, 3), np.diag([0.01, 0.02, 0.03]))

    assert float(get_label(ref, "energy")) == -3.5
    np.testing.assert_allclose(get_label(ref, "forces"), [[0.7, 0.8, 0.9], [-0.7, -0.8, -0.9]])
    assert get_label(ref, "stress") is None

    for atoms in out:
        assert atoms.calc is None
        for key in ORIGINAL_KEYS:
            assert key not in atoms.info and key not in atoms.arrays, key


def test_prelabelled_output_round_trips_without_bare_keys(tmp_path):
    out = prelabelled(read_frames(_write(tmp_path, "mixed.xyz", MIXED_CONVENTIONS)), LabelOptions())
    path = tmp_path / "labelled.xyz"
    write_frames(path, out)
    back = read_frames(path)
    assert [float(get_label(a, "energy")) for a in back] == [-1.5, -2.5, -3.5]
    assert all(a.calc is None for a in back)  # no bare energy= left for ASE to pick up


def test_emt_labels_cu_bulk_with_stress_only_when_fully_periodic():
    bulk_frame = cu_bulk(rattle=0.05, seed=3)
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)  # pbc (T, T, F)
    cluster = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]])
    out = LABELLERS["emt"]([bulk_frame, slab, cluster], LabelOptions())

    for atoms, source in zip(out, (bulk_frame, slab, cluster)):
        energy, forces = get_label(atoms, "energy"), get_label(atoms, "forces")
        assert np.isfinite(energy)
        assert forces.shape == (len(source), 3) and np.isfinite(forces).all()
        np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-8)  # Newton's third law
        reference = source.copy()
        reference.calc = EMT()
        assert float(energy) == pytest.approx(reference.get_potential_energy())
        assert atoms.calc is None

    stress = get_label(out[0], "stress")
    assert stress is not None and stress.shape == (9,) and np.isfinite(stress).all()
    assert np.abs(stress).max() > 0
    assert get_label(out[1], "stress") is None
    assert get_label(out[2], "stress") is None
    assert np.abs(get_label(out[0], "forces")).max() > 1e-3  # rattled: real forces, not zeros


def test_emt_compute_stress_off():
    (atoms,) = LABELLERS["emt"]([cu_bulk()], LabelOptions(compute_stress=False))
    assert get_label(atoms, "stress") is None and get_label(atoms, "energy") is not None


def test_label_batch_stamps_batch_and_index(tmp_path):
    path = _write(tmp_path, "mixed.xyz", MIXED_CONVENTIONS)
    out = _label_batch(tmp_path, path, "campaign_7", "prelabelled", LabelOptions())
    assert [a.info["batch"] for a in out] == ["campaign_7"] * 3
    assert [a.info["batch_index"] for a in out] == [0, 1, 2]
    # an explicit config_type is kept; frames without one get the batch name
    assert [a.info["config_type"] for a in out] == ["plain", "campaign_7", "campaign_7"]


def test_label_batch_unknown_labeller_is_a_clear_error(tmp_path):
    path, _ = _unlabelled_batch(tmp_path)
    with pytest.raises(ValueError) as info:
        _label_batch(tmp_path, path, "b", "vasp_magic", LabelOptions())
    message = str(info.value)
    assert "vasp_magic" in message
    for name in ("prelabelled", "emt", "xtb", "command"):
        assert name in message


FAKE_DFT = """\
import os, sys
import numpy as np
import ase.io
from ase.calculators.singlepoint import SinglePointCalculator

assert os.path.isfile("input.xyz"), "runs in the directory holding input.xyz"
frames = ase.io.read(os.environ["TRAINCRAFT_INPUT"], index=":")
print("fake DFT: got", len(frames), "frames", "tag=" + os.environ.get("FAKE_TAG", ""))
for i, atoms in enumerate(frames):
    forces = np.full((len(atoms), 3), 0.01 * (i + 1))
    forces[1::2] *= -1
    atoms.calc = SinglePointCalculator(atoms, energy=-2.0 * len(atoms) - 0.5 * i, forces=forces)
ase.io.write(os.environ["TRAINCRAFT_OUTPUT"], frames, format="extxyz")
"""


def test_command_labeller_runs_external_program(tmp_path):
    path, frames = _unlabelled_batch(tmp_path, n=3)
    script = _script(tmp_path, FAKE_DFT)
    options = LabelOptions(command=python_command(script), env={"FAKE_TAG": "x"})
    out = _label_batch(tmp_path, path, "dft_batch", "command", options)

    assert len(out) == 3
    assert [float(get_label(a, "energy")) for a in out] == [-8.0, -8.5, -9.0]
    np.testing.assert_allclose(get_label(out[2], "forces")[0], [0.03, 0.03, 0.03])
    np.testing.assert_allclose(get_label(out[2], "forces")[1], [-0.03, -0.03, -0.03])
    for original, atoms in zip(frames, out):
        np.testing.assert_allclose(atoms.positions, original.positions, atol=1e-7)  # same order
        assert atoms.calc is None and "energy" not in atoms.info
    assert [a.info["batch_index"] for a in out] == [0, 1, 2]
    assert {a.info["batch"] for a in out} == {"dft_batch"}


def test_labelling_workers_share_the_threads_and_the_frames(tmp_path, monkeypatch):
    """`workers: 2` in a step allowed 4 threads (OMP_NUM_THREADS: a pod profile sets it to the
    pod's CPUs): each worker, and the program it runs, gets 2, not 4 each; and a batch far
    smaller than a chunk still goes to both workers, half each."""
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    path, _ = _unlabelled_batch(tmp_path, n=4)
    log = tmp_path / "threads.log"
    script = _script(
        tmp_path, FAKE_DFT + 'open(os.environ["THREADS_LOG"], "a").write(os.environ["OMP_NUM_THREADS"] + "\\n")\n'
    )
    options = LabelOptions(command=python_command(script), env={"THREADS_LOG": str(log)}, workers=2)
    assert len(_label_batch(tmp_path, path, "b", "command", options)) == 4
    assert log.read_text().split() == ["2", "2"]  # one program run per worker's half


def test_command_labeller_failure_shows_program_output(tmp_path):
    path, _ = _unlabelled_batch(tmp_path)
    script = _script(
        tmp_path,
        """\
        import sys
        print("reading input")
        print("SCF did not converge after 200 iterations", file=sys.stderr)
        sys.exit(2)
        """,
    )
    with pytest.raises(RuntimeError) as info:
        _label_batch(tmp_path, path, "b", "command", LabelOptions(command=python_command(script)))
    message = str(info.value)
    assert "exited with 2" in message
    assert "SCF did not converge after 200 iterations" in message


def test_command_labeller_without_output_file(tmp_path):
    path, _ = _unlabelled_batch(tmp_path)
    script = _script(tmp_path, "print('done, but forgot to write')\n")
    with pytest.raises(FrameError) as info:
        _label_batch(tmp_path, path, "b", "command", LabelOptions(command=python_command(script)))
    assert "no output" in str(info.value) and "TRAINCRAFT_OUTPUT" in str(info.value)


def test_command_labeller_wrong_frame_count(tmp_path):
    path, _ = _unlabelled_batch(tmp_path, n=3)
    script = _script(
        tmp_path,
        """\
        import os
        import ase.io
        frames = ase.io.read(os.environ["TRAINCRAFT_INPUT"], index=":")
        ase.io.write(os.environ["TRAINCRAFT_OUTPUT"], frames[:1], format="extxyz")
        """,
    )
    with pytest.raises(FrameError) as info:
        _label_batch(tmp_path, path, "b", "command", LabelOptions(command=python_command(script)))
    message = str(info.value)
    assert "1 frames" in message and "3 inputs" in message


def test_command_labeller_needs_a_command(tmp_path):
    path, _ = _unlabelled_batch(tmp_path)
    with pytest.raises(ValueError, match="command"):
        _label_batch(tmp_path, path, "b", "command", LabelOptions())


def test_command_labeller_program_not_found(tmp_path):
    path, _ = _unlabelled_batch(tmp_path)
    with pytest.raises(RuntimeError) as info:
        _label_batch(tmp_path, path, "b", "command", LabelOptions(command="/nonexistent/run_dft --fast"))
    assert "could not start" in str(info.value)


def test_command_labeller_timeout(tmp_path):
    path, _ = _unlabelled_batch(tmp_path)
    script = _script(tmp_path, "import time\ntime.sleep(30)\n")
    with pytest.raises(RuntimeError) as info:
        _label_batch(tmp_path, path, "b", "command", LabelOptions(command=python_command(script), timeout_s=0.5))
    assert "0.5" in str(info.value) and "timeout_s" in str(info.value)


def test_xtb_without_tblite_says_how_to_install_it(monkeypatch):
    from traincraft_assets.core.labelling import labeller_problems

    monkeypatch.setitem(sys.modules, "tblite", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "tblite.ase", None)
    with pytest.raises(RuntimeError) as info:
        LABELLERS["xtb"]([molecule("H2O")], LabelOptions())
    assert "tblite" in str(info.value) and "pip install" in str(info.value)
    [problem] = labeller_problems("xtb", LabelOptions(), [])
    assert "tblite" in problem and "pip install" in problem


def test_command_labeller_refuses_labels_for_other_structures(tmp_path):
    """A DFT wrapper that relaxes the geometry returns labels for a structure we never asked
    about; attaching them to the input frame would be silently wrong."""
    path, _ = _unlabelled_batch(tmp_path, n=3)
    script = _script(
        tmp_path,
        """\
        import os
        import ase.io
        from ase.calculators.emt import EMT
        frames = ase.io.read(os.environ["TRAINCRAFT_INPUT"], index=":")
        frames[1].positions[0] += 0.05  # "relaxed"
        for atoms in frames:
            atoms.calc = EMT()
            atoms.info["energy"] = atoms.get_potential_energy()
            atoms.arrays["forces"] = atoms.get_forces()
            atoms.calc = None
        ase.io.write(os.environ["TRAINCRAFT_OUTPUT"], frames, format="extxyz")
        """,
    )
    with pytest.raises(FrameError) as info:
        _label_batch(tmp_path, path, "b", "command", LabelOptions(command=python_command(script)))
    assert "output.xyz frame 1 is not input frame 1" in str(info.value)


def test_labeller_problems_are_found_before_any_frame_is_read(tmp_path):
    from traincraft_assets.core.labelling import labeller_problems

    (tmp_path / "data").mkdir()
    roots = [tmp_path / "data"]
    inside, outside = _script(tmp_path / "data", "print('labels')\n"), _script(tmp_path, "print('labels')\n")
    assert labeller_problems("emt", LabelOptions(), roots) == []
    assert labeller_problems("command", LabelOptions(command=python_command(inside)), roots) == []
    assert "unknown labeller 'vasp'" in labeller_problems("vasp", LabelOptions(), roots)[0]
    assert "needs `command`" in labeller_problems("command", LabelOptions(), roots)[0]
    assert (
        "'no-such-code' not found on PATH"
        in labeller_problems("command", LabelOptions(command="no-such-code x"), roots)[0]
    )
    [problem] = labeller_problems("command", LabelOptions(command=python_command(outside)), roots)
    assert str(outside) in problem and "outside the directories this project reads" in problem


def test_a_batch_labelled_in_chunks_is_the_file_label_batch_writes(tmp_path):
    """plan_chunks gives contiguous equal shares (never an empty one); each chunk labelled,
    twice for one of them (a retried step), and merged is label_batch's file byte for byte."""
    path, _ = _unlabelled_batch(tmp_path, n=7)
    whole = tmp_path / "whole.xyz"
    summary = label_batch(path, "b", "emt", LabelOptions(), whole)
    scratch = tmp_path / "scratch" / "run"
    plan = plan_chunks(path, "b", "emt", LabelOptions(chunk_steps=3), "sha", scratch)
    assert plan.bounds == ((0, 3), (3, 6), (6, 7)) and ChunkPlan.read(scratch) == plan
    assert plan_chunks(path, "b", "emt", LabelOptions(chunk_steps=20), "sha", scratch).bounds == tuple(
        (i, i + 1) for i in range(7)
    )
    plan_chunks(path, "b", "emt", LabelOptions(chunk_steps=3), "sha", scratch)
    for index in (0, 1, 1, 2):
        label_chunk(scratch, index, LabelOptions())
    assert merge_chunks(scratch, tmp_path / "merged.xyz") == summary
    assert (tmp_path / "merged.xyz").read_bytes() == whole.read_bytes()


def test_merging_refuses_what_label_batch_refuses_and_waits_for_every_chunk(tmp_path):
    """A problem in any chunk refuses the batch naming the file and every frame, as
    label_batch does; a merge before a chunk was labelled says which and what to do."""
    frames = [cu_bulk(rattle=0.05, seed=i, repeat=1) for i in range(4)]
    for atoms in frames:
        atoms.calc = EMT()
        atoms.info["energy"], atoms.arrays["forces"] = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
    frames[0].info["energy"] = frames[3].info["energy"] = float("nan")
    path = tmp_path / "nan.xyz"
    write_frames(path, frames)
    scratch = tmp_path / "scratch"
    plan_chunks(path, "nan.xyz", "prelabelled", LabelOptions(chunk_steps=2), "sha", scratch)
    label_chunk(scratch, 0, LabelOptions())
    with pytest.raises(FileNotFoundError, match=r"chunk\(s\) \[1\] of 2 have not been labelled"):
        merge_chunks(scratch, tmp_path / "out.xyz")
    label_chunk(scratch, 1, LabelOptions())
    with pytest.raises(BatchError) as refused:
        merge_chunks(scratch, tmp_path / "out.xyz")
    assert f"{path}: 2 problem(s) in 4 frames" in str(refused.value)
    assert "frame 0, field REF_energy" in str(refused.value) and "frame 3, field REF_energy" in str(refused.value)
