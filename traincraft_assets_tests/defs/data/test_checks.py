"""The dataset checks, run for real on batches with known problems."""

import sys
from pathlib import Path

import pytest
from ase import Atoms
from ase.build import bulk

from traincraft_assets.core.frames import write_frames
from traincraft_assets.core.labelling import LabelOptions, emt
from traincraft_assets_tests.conftest import with_session_foundation

pytestmark = pytest.mark.integration


def _cu(rattle_seed: int) -> Atoms:
    atoms = bulk("Cu", "fcc", cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=rattle_seed)
    return emt([atoms], LabelOptions())[0]


def _structures(n: int) -> list[Atoms]:
    structures = [bulk("Cu", "fcc", cubic=True).repeat((2, 2, 2)) for _ in range(n)]
    for seed, atoms in enumerate(structures):
        atoms.rattle(0.05, seed=seed)
    return structures


def _emt_program(tmp_path: Path, loop_body: str) -> dict:
    """Run config for a real `command` labeller: a small program running `loop_body` for each
    input frame (`i`, `atoms`) with ASE's EMT at hand."""
    program = tmp_path / "labeller.py"
    program.write_text(
        "import os\n"
        "from ase.io import read, write\n"
        "from ase.calculators.emt import EMT\n"
        "frames = read(os.environ['TRAINCRAFT_INPUT'], ':')\n"
        "for i, atoms in enumerate(frames):\n"
        f"{loop_body}"
        "write(os.environ['TRAINCRAFT_OUTPUT'], frames, format='extxyz')\n"
    )
    return {"ops": {"labelled_frames": {"config": {"labeller": "command", "command": f"{sys.executable} {program}"}}}}


def _check(result, name):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_health_check_blocks_and_names_batch_frame_and_field(project, graph_run, tmp_path):
    """Broken frames never reach the dataset (labelled_frames refuses them: test_bad_input.py);
    what only the dataset can know, elements the foundation lacks, blocks here."""
    good = _cu(0)
    iron = _cu(4)
    iron.numbers[0] = 26  # Fe: not among the foundation's elements
    path = tmp_path / "bad_batch.xyz"
    write_frames(path, [good, iron])
    batch = project.add_batch(path)
    project.label(batch)

    result = project.materialize(
        ["foundation_model", "dataset", "split"], with_session_foundation(graph_run, {}), raise_on_error=False
    )

    health = _check(result, "dataset_health")
    assert not health.passed
    text = health.description
    expected = "batch 'bad_batch.xyz', frame 1, numbers: elements ['Fe'] are not covered by the foundation"
    assert expected in text, f"{expected!r} not in:\n{text}"
    assert "frame 0," not in text
    assert health.metadata["n_problems"].value == 1
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

    config = with_session_foundation(graph_run, {})
    config["ops"]["split"] = {"config": {"valid_fraction": 0.4}}
    result = project.materialize(["foundation_model", "dataset", "split"], config)

    warning = _check(result, "foundation_energy_consistency")
    assert not warning.passed
    assert warning.severity.value == "WARN"
    assert warning.metadata["foundation_rmse_e_ev_per_atom"].value > 0.9
    assert "E0s" in warning.description and "e0s 'dict' or 'file'" in warning.description
    assert _check(result, "dataset_health").passed
    assert project.latest("split") is not None  # a warning does not block


def test_labels_in_kcal_per_mol_or_ev_per_bohr_are_caught_against_the_foundation_and_can_be_overridden(
    project, graph_run, tmp_path
):
    """Forces 23x too large (kcal/mol/Å): below the absolute 100 eV/Å bound; 0.53x (eV/Bohr):
    within physical ranges; energies 23x (kcal/mol), whose offset alone would look like other
    E0s. Only the zero-shot foundation shows them. The shipped demo foundation
    stands in for a real one (the session's 2-epoch model predicts almost no forces); the
    unscaled batch beside them passes."""
    for name, factor, seeds in (("kcal.xyz", 23.061, range(4)), ("bohr.xyz", 0.5292, range(8, 12))):
        frames = [_cu(seed) for seed in seeds]
        for atoms in frames:
            atoms.arrays["REF_forces"] *= factor
        write_frames(tmp_path / name, frames)
        project.label(project.add_batch(tmp_path / name))
    strained = []  # energies in kcal/mol, forces right: strained cells, so the energies spread
    for i, strain in enumerate((0.97, 0.99, 1.01, 1.03)):
        atoms = bulk("Cu", "fcc", cubic=True).repeat((2, 2, 2))
        atoms.set_cell(atoms.cell * strain, scale_atoms=True)
        atoms.rattle(0.05, seed=20 + i)
        [atoms] = emt([atoms], LabelOptions())
        atoms.info["REF_energy"] *= 23.061
        strained.append(atoms)
    write_frames(tmp_path / "kcal_energy.xyz", strained)
    project.label(project.add_batch(tmp_path / "kcal_energy.xyz"))
    write_frames(tmp_path / "ev.xyz", [_cu(seed) for seed in range(4, 8)])
    project.label(project.add_batch(tmp_path / "ev.xyz"))

    config = {"ops": {"foundation_model": {"config": {"source": "demo"}}, "split": {"config": {"valid_fraction": 0.5}}}}
    blocked = project.materialize(["foundation_model", "dataset", "split"], config, raise_on_error=False)
    units = _check(blocked, "label_units_match_foundation")
    assert not units.passed and units.severity.value == "ERROR"
    scales = units.metadata["scales"].value
    assert 0.75 < scales["forces"]["ev.xyz"]["scale"] < 1.5 and scales["forces"]["ev.xyz"]["correlation"] > 0.8
    assert units.description.startswith("3 batch label(s)")
    for part in (
        "batch 'kcal.xyz' (4 frames)",
        "likely kcal/mol/Å read as eV/Å",
        "batch 'bohr.xyz' (4 frames)",
        "likely eV/Bohr read as eV/Å",
        "batch 'kcal_energy.xyz' (4 frames): energy labels' spread",
        "likely kcal/mol read as eV",
        "block_on_unit_mismatch: false",
    ):
        assert part in units.description, (part, units.description)
    assert project.latest("split") is None  # blocking

    config["ops"]["foundation_agreement"] = {"config": {"block_on_unit_mismatch": False}}
    allowed = project.materialize(["foundation_model", "dataset", "split"], config)
    assert _check(allowed, "label_units_match_foundation").passed
    assert project.latest("split") is not None


def test_energy_consistency_is_not_a_pass_when_nothing_could_be_evaluated(project, graph_run, tmp_path):
    """A `command` labeller that returns forces but no energies: the batch is partial, and the
    energy check must say it could not look rather than pass."""
    labeller = _emt_program(tmp_path, "    atoms.arrays['forces'] = EMT().get_forces(atoms)\n")
    path = tmp_path / "forces_only.xyz"
    write_frames(path, _structures(3))  # structures only: the labeller labels them
    project.label(project.add_batch(path), labeller)
    result = project.materialize(
        ["foundation_model", "dataset"], with_session_foundation(graph_run, {}), raise_on_error=False
    )
    warning = _check(result, "foundation_energy_consistency")
    assert not warning.passed and "not evaluated" in warning.description


def test_a_labeller_that_fails_on_some_frames_marks_the_batch_partial_naming_them(project, tmp_path):
    """A real `command` labeller (a small program) that labels with EMT but gives up on frame 1."""
    labeller = _emt_program(
        tmp_path,
        "    if i == 1:\n"
        "        atoms.info['label_error'] = 'SCF did not converge in 60 steps'\n"
        "        continue\n"
        "    atoms.info['energy'] = EMT().get_potential_energy(atoms)\n"
        "    atoms.arrays['forces'] = EMT().get_forces(atoms)\n",
    )
    path = tmp_path / "flaky.xyz"
    write_frames(path, _structures(3))  # structures only: the labeller labels them
    batch = project.add_batch(path)
    result = project.label(batch, labeller)
    assert result.success  # the two good frames are kept, the batch is flagged, nothing dropped silently
    check = _check(result, "batch_fully_labelled")
    assert not check.passed and check.severity.value == "ERROR"
    assert "partial: 1 of 3 frames" in check.description
    assert "frame 1, REF_energy, REF_forces: not labelled (SCF did not converge in 60 steps)" in check.description
    assert check.metadata["frames"].value == [1]
    complete = project.label(batch, {"ops": {"labelled_frames": {"config": {"labeller": "emt"}}}})
    assert _check(complete, "batch_fully_labelled").passed
