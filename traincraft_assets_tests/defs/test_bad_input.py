"""The bad-input corpus: every input a user can get wrong, generated here, fed to the real graph.

For each case: the message names what is wrong and where (file, frame, field or setting) and
says what to do; it comes before any training; nothing new appears in the store; and the last
good materialization is still the latest. Batch files go through `traincraft ingest` and the
label_batch job; settings through a run of dataset → finetuned_model (or of the step they
belong to), where preflight must stop them in the run's first step. The README's Reliability
section counts these cases.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from traincraft_assets.core.frames import FrameError, write_frames
from traincraft_assets.core.labelling import LabelOptions, emt
from traincraft_assets.core.settings import DATA_ROOTS_ENV
from traincraft_assets_tests.conftest import Project, _instance

pytestmark = pytest.mark.integration

# A file outside every root (the tests' data roots are pytest's temp dir and the working dir).
OUTSIDE = "/etc/hostname" if Path("/etc/hostname").is_file() else "/etc/passwd"


def _cu(seed: int) -> Atoms:
    atoms = bulk("Cu", "fcc", cubic=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def _labelled(n: int = 3, seed: int = 0) -> list[Atoms]:
    return emt([_cu(seed + i) for i in range(n)], LabelOptions())


def _text(frames) -> str:
    """extxyz text of `frames` (labels under REF_* keys)."""
    import io

    import ase.io

    out = io.StringIO()
    ase.io.write(out, list(frames), format="extxyz")
    return out.getvalue()


def _with(change) -> str:
    """Three good EMT frames, frame 1 changed by `change(atoms)`."""
    frames = _labelled()
    change(frames[1])
    return _text(frames)


def _set(key, value):
    def change(atoms):
        if key == "REF_forces":
            atoms.arrays[key] = value(atoms.arrays[key]) if callable(value) else value
        elif value is None:
            del atoms.info[key]
        else:
            atoms.info[key] = value(atoms.info[key]) if callable(value) else value

    return change


def _nan_at(key, index):
    def change(atoms):
        store = atoms.arrays if key == "REF_forces" else atoms.info
        value = np.array(store[key], dtype=float)
        value.flat[index] = np.nan
        store[key] = value

    return change


def _overlap(atoms):
    atoms.positions[1] = atoms.positions[0] + [0.2, 0.0, 0.0]


def _rename(key, to):
    def change(atoms):
        store = atoms.arrays if key in atoms.arrays else atoms.info
        store[to] = store.pop(key)

    return change


def _good_text() -> str:
    return _text(_labelled())


def _structures_text() -> str:
    """Structures without labels, for a `command` labeller to label."""
    return _text([_cu(i) for i in range(3)])


def _lines(text: str) -> list[str]:
    return text.splitlines(True)


def _molecule_with_stress() -> str:
    water = molecule("H2O")
    water.info["REF_energy"] = -14.0
    water.arrays["REF_forces"] = np.zeros((3, 3))
    water.info["REF_stress"] = np.full(9, 0.01)
    return _text([water])


def _single_atom_in_a_tiny_cell() -> str:
    atoms = Atoms("Cu", cell=[0.4, 3.0, 3.0], pbc=True)
    atoms.info["REF_energy"] = -3.0
    atoms.arrays["REF_forces"] = np.zeros((1, 3))
    return _text([atoms])


def _empty_frame() -> str:
    frames = _labelled(2)
    empty = Atoms(cell=[3, 3, 3], pbc=True)
    empty.info["REF_energy"] = 0.0
    return _text([frames[0], empty, frames[1]])


def _program(body: str):
    """labelled_frames config running `body` as a `command` labeller, written to the scratch dir."""

    def config(tmp: Path) -> dict:
        script = tmp / "labeller.py"
        script.write_text(body)
        return {"labeller": "command", "command": f"{sys.executable} {script}"}

    return config


LABEL_WITH_FAILING_PROGRAM = (
    "import sys\nprint('SCF did not converge: ZBRENT bracketing error', file=sys.stderr)\nsys.exit(3)\n"
)
LABEL_DROPPING_A_FRAME = (
    "import os\nfrom ase.io import read, write\nframes = read(os.environ['TRAINCRAFT_INPUT'], ':')\n"
    "write(os.environ['TRAINCRAFT_OUTPUT'], frames[:-1], format='extxyz')\n"
)
LABEL_RELAXING_FRAMES = (
    "import os\nfrom ase.io import read, write\nframes = read(os.environ['TRAINCRAFT_INPUT'], ':')\n"
    "for a in frames:\n    a.positions[0] += 0.3\n    a.info['energy'] = -1.0\n    a.arrays['forces'] = 0 * a.positions\n"
    "write(os.environ['TRAINCRAFT_OUTPUT'], frames, format='extxyz')\n"
)
LABEL_WITHOUT_OUTPUT = "print('done')\n"
LABEL_IN_MEV = (
    "import os\nfrom ase.io import read, write\nfrom ase.calculators.emt import EMT\n"
    "frames = read(os.environ['TRAINCRAFT_INPUT'], ':')\n"
    "for a in frames:\n    a.info['energy'] = EMT().get_potential_energy(a) * 1000\n"
    "    a.arrays['forces'] = EMT().get_forces(a) * 1000\n"
    "write(os.environ['TRAINCRAFT_OUTPUT'], frames, format='extxyz')\n"
)

# name: (file content, labelled_frames config or a function of the scratch dir giving it, message parts)
BATCH_CASES = {
    "empty_file": ("", None, ["empty_file.xyz", "the file is empty"]),
    "binary_file": (bytes(range(256)) * 8, None, ["binary_file.xyz", "binary file, not extxyz"]),
    "truncated_file": (
        lambda: "".join(_lines(_good_text())[:-2]),
        None,
        ["truncated_file.xyz", "ends inside its last frame", "incomplete"],
    ),
    "non_utf8_comment": (
        lambda: _good_text().encode().replace(b"pbc=", b"note=\xff\xfe pbc=", 1),
        None,
        ["non_utf8_comment.xyz", "frame 0", "line 2", "not UTF-8", "0xff"],
    ),
    "unknown_element": (
        lambda: "".join(line.replace("Cu", "Qq", 1) if i == 9 else line for i, line in enumerate(_lines(_good_text()))),
        None,
        ["unknown_element.xyz", "frame 1", "line 10", "unknown element symbol 'Qq'"],
    ),
    "forces_two_columns": (
        lambda: (
            "\n".join(
                " ".join(line.split()[:-1]) if len(line.split()) == 7 else line
                for line in _good_text().replace("REF_forces:R:3", "REF_forces:R:2").splitlines()
            )
            + "\n"
        ),
        None,
        ["forces_two_columns.xyz", "frame 0", "field REF_forces", "shape (4, 2)", "n x 3"],
    ),
    "stress_four_values": (
        lambda: _with(_set("REF_stress", np.zeros(4))),
        None,
        ["stress_four_values.xyz", "frame 1", "field REF_stress", "shape (4,)", "6 (Voigt) or 9"],
    ),
    "energy_under_unknown_key": (
        lambda: _with(_rename("REF_energy", "totalenergy")),
        None,
        ["energy_under_unknown_key.xyz", "frame 1", "REF_energy", "'totalenergy'", "rename the key"],
    ),
    "missing_forces": (
        lambda: _with(_rename("REF_forces", "grad")),
        None,
        ["missing_forces.xyz", "frame 1", "REF_forces: missing", "'grad'", "'forces'"],
    ),
    "nan_energy": (lambda: _with(_set("REF_energy", np.nan)), None, ["frame 1, field REF_energy: 1 non-finite"]),
    "inf_energy": (lambda: _with(_set("REF_energy", np.inf)), None, ["frame 1, field REF_energy: 1 non-finite"]),
    "nan_force": (lambda: _with(_nan_at("REF_forces", 4)), None, ["frame 1, field REF_forces: 1 non-finite"]),
    "inf_forces": (
        lambda: _with(_set("REF_forces", lambda f: f + np.inf)),
        None,
        ["frame 1, field REF_forces: 12 non-finite"],
    ),
    "nan_stress": (lambda: _with(_nan_at("REF_stress", 0)), None, ["frame 1, field REF_stress: 1 non-finite"]),
    "forces_in_mev": (
        lambda: _with(_set("REF_forces", lambda f: f * 1000 + 200)),
        None,
        ["frame 1, field REF_forces: a force of", "unit mix-up", "meV/Å", "check_plausibility: false"],
    ),
    "stress_in_kbar": (
        lambda: _with(_set("REF_stress", lambda s: s * 1602 + 10)),
        None,
        ["frame 1, field REF_stress: a stress component of", "kbar or GPa", "eV/Å³"],
    ),
    "stress_on_a_molecule": (
        _molecule_with_stress,
        None,
        ["frame 0, field REF_stress: stress on a frame that is not periodic", "Remove the stress"],
    ),
    "zero_atom_frame": (_empty_frame, None, ["frame 1, field numbers: frame has zero atoms"]),
    "overlapping_atoms": (lambda: _with(_overlap), None, ["frame 1, field positions: atoms 0 and 1 are 0.200 Å apart"]),
    "atom_on_its_periodic_image": (
        _single_atom_in_a_tiny_cell,
        None,
        ["frame 0, field positions: atoms 0 and 0 are 0.400 Å apart"],
    ),
    "oversized_file": (  # the limit lowered to 1 KiB: the file is a few KiB
        _good_text,
        {"max_file_gib": 2**-20},
        ["oversized_file.xyz is", "GiB, more than max_file_gib (9.53674e-07 GiB)", "Split it into several batch files"],
    ),
    "command_missing": (_structures_text, {"labeller": "command"}, ["labelled_frames:", "needs `command`"]),
    "command_not_found": (
        _structures_text,
        {"labeller": "command", "command": "no-such-dft-code --input x"},
        ["labelled_frames:", "'no-such-dft-code' not found on PATH"],
    ),
    "command_fails": (
        _structures_text,
        _program(LABEL_WITH_FAILING_PROGRAM),
        ["exited with 3", "SCF did not converge: ZBRENT"],
    ),
    "command_drops_a_frame": (
        _structures_text,
        _program(LABEL_DROPPING_A_FRAME),
        ["returned 2 frames for 3 inputs", "every input frame, in order"],
    ),
    "command_relaxes_frames": (
        _structures_text,
        _program(LABEL_RELAXING_FRAMES),
        ["output.xyz frame 0 is not input frame 0", "do not relax or reorder"],
    ),
    "command_writes_nothing": (
        _structures_text,
        _program(LABEL_WITHOUT_OUTPUT),
        ["wrote no output.xyz", "$TRAINCRAFT_OUTPUT"],
    ),
    "command_labels_in_mev": (
        _structures_text,
        _program(LABEL_IN_MEV),
        ["frame 0, field REF_forces: a force of", "unit mix-up"],
    ),
    "command_script_outside_the_roots": (
        _structures_text,
        {"labeller": "command", "command": f"{sys.executable} {OUTSIDE}"},
        ["labelled_frames: command argument", OUTSIDE, "outside the directories this project reads", DATA_ROOTS_ENV],
    ),
}


def _failure_text(result) -> str:
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            texts.append((data.user_failure_data.description or "") if data.user_failure_data else "")
            texts.append(data.error.to_string() if data.error else "")
    return "\n".join(texts)


def _store_state(project: Project, scratch: bool = True) -> set[str]:
    """Every entry two levels under the store root (asset/sha, and any staging leftovers);
    without `scratch`, less a failed run's labelling scratch, kept for its re-execution."""
    entries = (
        {str(p.relative_to(project.store)) for p in project.store.glob("*/*")} if project.store.exists() else set()
    )
    return entries if scratch else {e for e in entries if not e.startswith(".scratch/")}


def _latest_ids(project: Project) -> dict[str, int | None]:
    out = {}
    for asset in ("labelled_frames", "dataset", "split", "foundation_model", "finetuned_model"):
        records = project.instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        out[asset] = records[0].storage_id if records else None
    return out


@pytest.fixture(scope="module")
def good(tmp_path_factory, graph_run):
    """A project with one good batch labelled, and its dataset and split made."""
    root = tmp_path_factory.mktemp("bad_input")
    with _instance(root) as instance:
        project = Project(root, instance)
        path = root / "good.xyz"
        write_frames(path, _labelled(6, seed=100))
        project.label(project.add_batch(path))
        project.materialize(["dataset", "split"], {"ops": {"split": {"config": {"valid_fraction": 0.5}}}})
        project.foundation = str(Path(graph_run.latest("foundation_model").metadata["model_path"].value))
        yield project


@pytest.mark.parametrize("case", sorted(BATCH_CASES))
def test_a_bad_batch_is_refused_naming_file_frame_and_field_and_nothing_is_stored(good, tmp_path, case):
    content, config, expected = BATCH_CASES[case]
    content = content() if callable(content) else content
    path = tmp_path / f"{case}.xyz"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    config = config(tmp_path) if callable(config) else config
    before_store, before_latest = _store_state(good), _latest_ids(good)

    try:
        batch = good.add_batch(path)
    except FrameError as refused:  # unreadable: refused at ingest, never registered
        message = str(refused)
        assert not (good.inbox / path.name).exists()
    else:
        result = good.label(
            batch, {"ops": {"labelled_frames": {"config": config}}} if config else None, raise_on_error=False
        )
        assert not result.success
        message = _failure_text(result)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"
    # a labeller program that failed may work when the run is re-executed: its plan stays
    transient = case == "command_fails"
    assert _store_state(good, scratch=not transient) == before_store, "a refused batch left something in the store"
    assert _latest_ids(good) == before_latest, "a refused batch changed what is latest"


TRAIN = ["dataset", "split", "replay_subset", "finetuned_model"]


def _finetune(**config):
    return {"ops": {"finetuned_model": {"config": config}}}


def _symlink_out(tmp_path: Path) -> str:
    link = tmp_path / "e0s.json"
    link.symlink_to(OUTSIDE)
    return str(link)


def _dot_dot_escape(tmp_path: Path) -> str:
    return str(tmp_path) + "/.." * (len(tmp_path.parts) + 1) + OUTSIDE


def _not_json(tmp_path: Path) -> str:
    path = tmp_path / "e0s.json"
    path.write_text("Cu: -3.5\n")
    return str(path)


def _not_a_model(tmp_path: Path) -> str:
    path = tmp_path / "foundation.model"
    path.write_text("this is a README, not a model\n")
    return str(path)


# name: (assets, run config (or a function of the scratch dir and the project), message parts)
SETTINGS_CASES = {
    "e0s_dict_missing_an_element": (
        TRAIN,
        _finetune(e0s="dict", e0s_dict={"Ni": -0.5}),
        ["finetuned_model:", "e0s 'dict' needs e0s_dict entries for ['Cu']"],
    ),
    "e0s_dict_not_an_element": (
        TRAIN,
        _finetune(e0s="dict", e0s_dict={"Cu": -0.5, "Cuu": 1.0}),
        ["e0s_dict keys must be element symbols; ['Cuu']"],
    ),
    "e0s_file_missing": (
        TRAIN,
        lambda tmp, p: _finetune(e0s="file", e0s_file=str(tmp / "nowhere.json")),
        ["finetuned_model: e0s_file", "no such file"],
    ),
    "e0s_file_not_json": (
        TRAIN,
        lambda tmp, p: _finetune(e0s="file", e0s_file=_not_json(tmp)),
        ["e0s 'file' needs e0s_file pointing at a JSON object"],
    ),
    "e0s_file_outside_the_roots": (
        TRAIN,
        lambda tmp, p: _finetune(e0s="file", e0s_file=OUTSIDE),
        ["finetuned_model: e0s_file", "outside the directories this project reads", DATA_ROOTS_ENV],
    ),
    "e0s_file_dot_dot_escape": (
        TRAIN,
        lambda tmp, p: _finetune(e0s="file", e0s_file=_dot_dot_escape(tmp)),
        ["finetuned_model: e0s_file", "resolves to /etc/", "outside the directories"],
    ),
    "e0s_file_symlink_out": (
        TRAIN,
        lambda tmp, p: _finetune(e0s="file", e0s_file=_symlink_out(tmp)),
        ["finetuned_model: e0s_file", "resolves to /etc/", "outside the directories"],
    ),
    "dipole_head_without_dipole_labels": (
        TRAIN,
        _finetune(strategy="scratch", heads=["dipole"], max_L=1),
        ["head 'dipole' needs REF_dipole labels", "labels present: ['energy', 'forces', 'stress']"],
    ),
    "unknown_head": (TRAIN, _finetune(heads=["energy", "forces", "charges"]), ["unknown heads ['charges']"]),
    "multihead_with_dipole_heads": (
        TRAIN,
        _finetune(strategy="multihead", heads=["energy", "forces", "dipole"]),
        ["multihead replay fits energy/forces", "use strategy 'scratch'"],
    ),
    "polarizability_without_dipole": (
        TRAIN,
        _finetune(strategy="scratch", heads=["polarizability"]),
        ["polarizability is fitted together with dipole"],
    ),
    "freeze_and_lora": (TRAIN, _finetune(strategy="naive", freeze=5, lora=True), ["choose freeze or lora, not both"]),
    "freeze_out_of_range": (TRAIN, _finetune(strategy="naive", freeze=9), ["freeze must be 1-6"]),
    "average_e0s_in_multihead": (
        TRAIN,
        _finetune(strategy="multihead", e0s="average"),
        ["e0s 'average' is rejected by MACE in multihead mode"],
    ),
    "managed_flag_in_extra": (
        TRAIN,
        _finetune(extra={"--E0s": "average"}),
        ["extra may not set --E0s: it is managed here (set through e0s)"],
    ),
    "foundation_path_not_a_model": (
        ["foundation_model", *TRAIN],
        lambda tmp, p: {"ops": {"foundation_model": {"config": {"source": "path", "path": _not_a_model(tmp)}}}},
        ["foundation_model:", "foundation.model: not a MACE model", "a checkpoint (.pt) or a state_dict will not do"],
    ),
    "foundation_path_missing": (
        ["foundation_model", *TRAIN],
        lambda tmp, p: {
            "ops": {"foundation_model": {"config": {"source": "path", "path": str(tmp / "mace-mp-0.model")}}}
        },
        ["foundation_model: path", "mace-mp-0.model", "no such file"],
    ),
    "foundation_path_not_given": (
        ["foundation_model"],
        {"ops": {"foundation_model": {"config": {"source": "path"}}}},
        ["source 'path' needs `path`"],
    ),
    "unknown_named_foundation": (
        ["foundation_model"],
        {"ops": {"foundation_model": {"config": {"source": "named", "name": "mace-xl-9000"}}}},
        ["unknown MACE foundation 'mace-xl-9000'", "medium"],
    ),
    "pretraining_pool_outside_the_roots": (
        ["pretraining_frames"],
        lambda tmp, p: {"ops": {"pretraining_frames": {"config": {"source": "file", "path": OUTSIDE}}}},
        ["pretraining_frames: path", "outside the directories"],
    ),
    "two_problems_in_two_steps_reported_at_once": (
        ["foundation_model", *TRAIN],
        lambda tmp, p: {
            "ops": {
                "foundation_model": {"config": {"source": "path", "path": str(tmp / "missing.model")}},
                "finetuned_model": {"config": {"e0s": "dict", "e0s_dict": {"Ni": 1.0}}},
            }
        },
        ["foundation_model: path", "finetuned_model:", "e0s_dict entries for ['Cu']"],
    ),
}


@pytest.mark.parametrize("case", sorted(SETTINGS_CASES))
def test_bad_settings_stop_the_run_in_its_first_step_before_anything_is_written(good, tmp_path, case):
    assets, config, expected = SETTINGS_CASES[case]
    config = config(tmp_path, good) if callable(config) else config
    before_store, before_latest = _store_state(good), _latest_ids(good)
    result = good.materialize(assets, config, raise_on_error=False)
    assert not result.success
    failed = [e for e in result.all_events if e.is_step_failure]
    ran = [e.step_key for e in result.all_events if e.is_step_success]
    # the run's first steps (dataset; foundation_model beside it) stop in preflight, nothing runs
    assert failed and not ran, f"preflight must stop the first steps; ran {ran}"
    assert all("nothing was run or written" in e.step_failure_data.user_failure_data.description for e in failed)
    message = _failure_text(result)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"
    assert _store_state(good) == before_store
    assert _latest_ids(good) == before_latest


@pytest.mark.parametrize(
    "job, config, field",
    [
        ("finetuned_model", {"strategy": "half-frozen"}, "strategy"),
        ("labelled_frames", {"labeller": "vasp_magic"}, "labeller"),
    ],
)
def test_an_unknown_choice_is_refused_at_launch_naming_the_field_and_the_choices(good, job, config, field):
    """Dagster validates config against the Literal choices before a run exists."""
    with pytest.raises(dg.DagsterInvalidConfigError) as refused:
        if job == "labelled_frames":
            good.label("good.xyz", {"ops": {job: {"config": config}}})
        else:
            good.materialize(["finetuned_model"], {"ops": {job: {"config": config}}})
    message = str(refused.value)
    assert field in message and config[field] in message


def test_the_data_root_setting_admits_a_directory_and_nothing_above_it(good, tmp_path, monkeypatch):
    """With only this directory as data root, a file in it passes and one beside it does not."""
    inside, beside = tmp_path / "roots" / "e0s.json", tmp_path / "e0s.json"
    inside.parent.mkdir()
    for path in (inside, beside):
        path.write_text(json.dumps({"29": -0.5}))
    monkeypatch.setenv(DATA_ROOTS_ENV, str(inside.parent))
    from traincraft_assets.core.paths import allowed_roots, path_problem
    from traincraft_assets.core.settings import load_settings

    roots = allowed_roots(good.store, load_settings())
    assert path_problem("e0s_file", str(inside), roots) is None
    assert "outside the directories" in path_problem("e0s_file", str(beside), roots)


def test_one_structure_labelled_differently_in_two_batches_stops_the_dataset(project, tmp_path):
    """The same structures relabelled (energies 0.1 eV off) in a second batch: which labels are
    right is the user's call, so no dataset is made until one batch is retired."""
    first = _labelled(3, seed=200)
    write_frames(tmp_path / "dft_round_1.xyz", first)
    relabelled = [atoms.copy() for atoms in first]
    for atoms in relabelled:
        atoms.info["REF_energy"] += 0.1
    write_frames(tmp_path / "dft_round_2.xyz", relabelled)
    project.label(project.add_batch(tmp_path / "dft_round_1.xyz"))
    project.materialize(["dataset"])
    good_dataset = _latest_ids(project)["dataset"]
    project.label(project.add_batch(tmp_path / "dft_round_2.xyz"))
    datasets_before = set((project.store / "dataset").iterdir())

    result = project.materialize(["dataset"], raise_on_error=False)
    message = _failure_text(result)
    for part in (
        "3 structure(s) appear in two batches with different labels",
        "none was made",
        "batch 'dft_round_2.xyz', frame 0 has the structure of batch 'dft_round_1.xyz', frame 0",
        "traincraft retire",
    ):
        assert part in message, f"{part!r} not in:\n{message}"
    assert set((project.store / "dataset").iterdir()) == datasets_before
    assert _latest_ids(project)["dataset"] == good_dataset
