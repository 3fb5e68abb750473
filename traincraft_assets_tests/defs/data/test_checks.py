"""The dataset checks, run for real on batches with known problems."""

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from traincraft_assets.core.frames import set_label, write_frames
from traincraft_assets.core.labelling import LabelOptions, emt

pytestmark = pytest.mark.integration


def _cu(rattle_seed: int) -> Atoms:
    atoms = bulk("Cu", "fcc", cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=rattle_seed)
    return emt([atoms], LabelOptions())[0]


def _foundation_config(graph_run) -> dict:
    """Reuse the session's tiny foundation through the `path` source (covers the 7 demo metals)."""
    model = Path(graph_run.latest("foundation_model").metadata["model_path"].value)
    return {"ops": {"foundation_model": {"config": {"source": "path", "path": str(model)}}}}


def _check(result, name):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_health_check_blocks_and_names_batch_frame_and_field(project, graph_run, tmp_path):
    good = _cu(0)
    nan_forces = _cu(1)
    nan_forces.arrays["REF_forces"][3, 1] = np.nan
    no_energy = _cu(2)
    del no_energy.info["REF_energy"]
    empty = Atoms()
    set_label(empty, "energy", 0.0)
    overlapping = _cu(3)
    overlapping.positions[1] = overlapping.positions[0] + [0.2, 0.0, 0.0]
    iron = _cu(4)
    iron.numbers[0] = 26  # Fe: not among the foundation's elements
    inf_energy = _cu(5)
    inf_energy.info["REF_energy"] = np.inf
    path = tmp_path / "bad_batch.xyz"
    write_frames(path, [good, nan_forces, no_energy, empty, overlapping, iron, inf_energy])
    batch = project.add_batch(path)
    project.label(batch)

    result = project.materialize(["foundation_model", "dataset", "split"], _foundation_config(graph_run), raise_on_error=False)

    health = _check(result, "dataset_health")
    assert not health.passed
    text = health.description
    for expected in (
        "batch 'bad_batch.xyz', frame 1, REF_forces: 1 non-finite value(s)",
        "batch 'bad_batch.xyz', frame 2, REF_energy: missing",
        "batch 'bad_batch.xyz', frame 3, numbers: frame has zero atoms",
        "batch 'bad_batch.xyz', frame 4, positions: atoms 0 and 1 are 0.200 Å apart",
        "batch 'bad_batch.xyz', frame 5, numbers: elements ['Fe'] are not covered by the foundation",
        "batch 'bad_batch.xyz', frame 6, REF_energy: 1 non-finite value(s)",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert "frame 0," not in text
    assert health.metadata["n_problems"].value == 6
    # blocking: split did not run in this run, and nothing was published for it
    assert project.latest("split") is None
    assert not (project.store / "split").exists()


def test_energy_consistency_warns_without_blocking(project, graph_run, tmp_path):
    frames = [_cu(seed) for seed in range(6)]
    for atoms in frames:  # a different energy zero: +1 eV/atom, as from another DFT setup
        atoms.info["REF_energy"] += 1.0 * len(atoms)
    path = tmp_path / "shifted.xyz"
    write_frames(path, frames)
    project.label(project.add_batch(path))

    config = _foundation_config(graph_run)
    config["ops"]["split"] = {"config": {"valid_fraction": 0.4}}
    result = project.materialize(["foundation_model", "dataset", "split"], config)

    warning = _check(result, "foundation_energy_consistency")
    assert not warning.passed
    assert warning.severity.value == "WARN"
    assert warning.metadata["foundation_rmse_e_ev_per_atom"].value > 0.9
    assert "E0s" in warning.description and "e0s 'dict' or 'file'" in warning.description
    assert _check(result, "dataset_health").passed
    assert project.latest("split") is not None  # a warning does not block


def test_energy_consistency_is_not_a_pass_when_nothing_could_be_evaluated(project, graph_run, tmp_path):
    frames = [_cu(seed) for seed in range(3)]
    for atoms in frames:
        del atoms.info["REF_energy"]
    path = tmp_path / "forces_only.xyz"
    write_frames(path, frames)
    project.label(project.add_batch(path))
    result = project.materialize(["foundation_model", "dataset"], _foundation_config(graph_run), raise_on_error=False)
    warning = _check(result, "foundation_energy_consistency")
    assert not warning.passed and "not evaluated" in warning.description


def test_a_labeller_that_fails_on_some_frames_marks_the_batch_partial_naming_them(project, tmp_path):
    """A real `command` labeller (a small program) that labels with EMT but gives up on frame 1."""
    program = tmp_path / "flaky_dft.py"
    program.write_text(
        "import os\n"
        "from ase.io import read, write\n"
        "from ase.calculators.emt import EMT\n"
        "frames = read(os.environ['TRAINCRAFT_INPUT'], ':')\n"
        "for i, atoms in enumerate(frames):\n"
        "    if i == 1:\n"
        "        atoms.info['label_error'] = 'SCF did not converge in 60 steps'\n"
        "        continue\n"
        "    atoms.calc = EMT()\n"
        "    atoms.info['energy'] = atoms.get_potential_energy()\n"
        "    atoms.arrays['forces'] = atoms.get_forces()\n"
        "    atoms.calc = None\n"
        "write(os.environ['TRAINCRAFT_OUTPUT'], frames, format='extxyz')\n"
    )
    path = tmp_path / "flaky.xyz"
    structures = [bulk("Cu", "fcc", cubic=True).repeat((2, 2, 2)) for _ in range(3)]
    for seed, atoms in enumerate(structures):
        atoms.rattle(0.05, seed=seed)
    write_frames(path, structures)  # structures only: the labeller labels them
    batch = project.add_batch(path)
    import sys

    result = project.label(batch, {"ops": {"labelled_frames": {"config": {"labeller": "command", "command": f"{sys.executable} {program}"}}}})
    assert result.success  # the two good frames are kept, the batch is flagged, nothing dropped silently
    check = _check(result, "batch_fully_labelled")
    assert not check.passed and check.severity.value == "ERROR"
    assert "partial: 1 of 3 frames" in check.description
    assert "frame 1, REF_energy, REF_forces: not labelled (SCF did not converge in 60 steps)" in check.description
    assert check.metadata["frames"].value == [1]
    complete = project.label(batch, {"ops": {"labelled_frames": {"config": {"labeller": "emt"}}}})
    assert _check(complete, "batch_fully_labelled").passed
