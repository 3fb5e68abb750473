"""MACE settings -> mace_run_train argv, and the rules checked before MACE starts.

The decisive flags of each strategy in the fine-tuning study are asserted one by one, and each
rendered argv is also parsed by MACE 0.3.16's own argument parser, so a flag MACE does not know
(or a value it would read differently) fails here instead of minutes into a training pod.
"""

import ast
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from traincraft_assets.core.frames import write_frames
from traincraft_assets.core.settings import TRAIN_COMMAND_ENV, load_settings
from traincraft_assets.core.training import Launch, TrainConfigError, TrainInputs, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings
from traincraft_assets.core.training.mace.command import command_prefix, render_args, validate
from traincraft_assets_tests.core.helpers import cu_bulk, flags, labelled

FOUNDATION = {
    "elements": ["Cu"],
    "e0s": {"29": -3.5},
    "model_class": "ScaleShiftMACE",
    "origin": "x",
    "sha256": "y",
}


@pytest.fixture
def files(tmp_path):
    """Real small train/valid/replay extxyz files and a stand-in foundation file."""
    paths = {}
    for name, seed in (("train", 0), ("valid", 1), ("replay", 2)):
        path = tmp_path / f"{name}.xyz"
        write_frames(path, [labelled(cu_bulk(rattle=0.03, seed=seed + 10 * k, repeat=1)) for k in range(3)])
        paths[name] = path
    paths["foundation"] = tmp_path / "foundation.model"
    paths["foundation"].write_bytes(b"stand-in: rendering never opens the model")
    paths["workdir"] = tmp_path / "run"
    return paths


@pytest.fixture
def make_inputs(files):
    def make(labels=("energy", "forces"), elements=("Cu",), replay=True, foundation=FOUNDATION, test=False):
        return TrainInputs(
            train_file=files["train"],
            valid_file=files["valid"],
            test_file=files["valid"] if test else None,
            replay_file=files["replay"] if replay else None,
            foundation_model=files["foundation"] if foundation is not None else None,
            foundation=foundation,
            data_labels=labels,
            data_elements=elements,
        )

    return make


@pytest.fixture(scope="module")
def mace_parser():
    from mace.tools import build_default_arg_parser

    return build_default_arg_parser()


ONE_PROCESS = Launch()


def _render(settings, inputs, workdir, mace_parser=None, launch=ONE_PROCESS):
    argv = render_args(settings, inputs, launch, workdir, "finetuned")
    f = flags(argv)  # also asserts that no flag appears twice
    parsed = mace_parser.parse_args(argv) if mace_parser is not None else None
    return argv, f, parsed


# ---- strategies ----------------------------------------------------------------------------


def test_multihead_defaults(files, make_inputs, mace_parser):
    _, f, parsed = _render(TrainSettings(), make_inputs(), files["workdir"], mace_parser)
    assert f["foundation_model"] == str(files["foundation"])
    assert f["multiheads_finetuning"] == "True"
    assert f["pt_train_file"] == str(files["replay"])
    assert f["force_mh_ft_lr"] == "True"  # otherwise MACE replaces our lr and EMA decay
    assert "loss" not in f  # MACE uses its universal loss in multihead mode, whatever --loss says
    assert f["E0s"] == "foundation"
    assert float(f["lr"]) == 1e-4
    assert f["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # device 'auto'
    # defaults of the fine-tuning study
    assert float(f["weight_decay"]) == 0.0
    assert "ema" in f and f["ema"] is None
    assert float(f["ema_decay"]) == 0.995
    assert float(f["energy_weight"]) == 10.0 and float(f["forces_weight"]) == 10.0
    assert f["energy_key"] == "REF_energy" and f["forces_key"] == "REF_forces"
    assert f["train_file"] == str(files["train"]) and f["valid_file"] == str(files["valid"])
    assert "model" not in f  # fine-tuning keeps the foundation's architecture
    for absent in ("freeze", "lora", "pseudolabel_replay"):
        assert absent not in f
    # MACE reads it the way we mean it
    assert parsed.multiheads_finetuning is True and parsed.force_mh_ft_lr is True
    assert parsed.ema is True and parsed.ema_decay == 0.995 and parsed.lr == 1e-4
    assert parsed.weight_decay == 0.0
    assert parsed.energy_weight == 10.0 and parsed.forces_weight == 10.0


def test_naive(files, make_inputs, mace_parser):
    _, f, parsed = _render(TrainSettings(strategy="naive"), make_inputs(replay=False), files["workdir"], mace_parser)
    assert f["multiheads_finetuning"] == "False"
    assert f["foundation_model"] == str(files["foundation"])
    assert f["E0s"] == "foundation"
    assert float(f["lr"]) == 1e-3
    for absent in ("pt_train_file", "force_mh_ft_lr", "freeze", "lora", "pseudolabel_replay"):
        assert absent not in f
    assert parsed.multiheads_finetuning is False


@pytest.mark.parametrize("depth", [5, 6])
def test_freeze_at_two_depths(files, make_inputs, mace_parser, depth):
    settings = TrainSettings(strategy="naive", freeze=depth)
    _, f, parsed = _render(settings, make_inputs(), files["workdir"], mace_parser)
    assert f["freeze"] == str(depth)
    assert f["multiheads_finetuning"] == "False"
    assert "lora" not in f
    assert parsed.freeze == depth


def test_lora(files, make_inputs, mace_parser):
    settings = TrainSettings(strategy="naive", lora=True, lora_rank=8, lora_alpha=2.0)
    _, f, parsed = _render(settings, make_inputs(), files["workdir"], mace_parser)
    assert f["lora"] == "True"
    assert f["lora_rank"] == "8"
    assert float(f["lora_alpha"]) == 2.0
    assert f["multiheads_finetuning"] == "False"
    assert "freeze" not in f
    assert parsed.lora is True and parsed.lora_rank == 8 and parsed.lora_alpha == 2.0


def test_multihead_with_pseudolabelled_replay(files, make_inputs, mace_parser):
    settings = TrainSettings(replay_labels="pseudo")
    _, f, parsed = _render(settings, make_inputs(), files["workdir"], mace_parser)
    assert f["pseudolabel_replay"] == "True"
    assert f["multiheads_finetuning"] == "True" and f["pt_train_file"] == str(files["replay"])
    assert "pseudolabel_replay_compute_stress" not in f
    assert parsed.pseudolabel_replay is True

    stress = TrainSettings(replay_labels="pseudo", heads=("energy", "forces", "stress"))
    _, f, _ = _render(stress, make_inputs(labels=("energy", "forces", "stress")), files["workdir"])
    assert f["pseudolabel_replay_compute_stress"] == "True"


def test_replay_combined_with_lora(files, make_inputs, mace_parser):
    settings = TrainSettings(strategy="multihead", lora=True)
    _, f, parsed = _render(settings, make_inputs(), files["workdir"], mace_parser)
    assert f["multiheads_finetuning"] == "True" and f["pt_train_file"] == str(files["replay"])
    assert f["force_mh_ft_lr"] == "True"
    assert f["lora"] == "True" and f["lora_rank"] == "4" and float(f["lora_alpha"]) == 1.0
    assert parsed.lora is True and parsed.multiheads_finetuning is True


def test_scratch(files, make_inputs, mace_parser):
    shape = ModelShape(num_channels=32, max_L=0, r_max=4.5, num_interactions=3, correlation=2)
    settings = TrainSettings(strategy="scratch", shape=shape)
    _, f, parsed = _render(settings, make_inputs(replay=False), files["workdir"], mace_parser)
    assert f["model"] == "MACE"
    assert f["num_channels"] == "32" and f["max_L"] == "0"
    assert float(f["r_max"]) == 4.5
    assert f["num_interactions"] == "3" and f["correlation"] == "2"
    for absent in ("foundation_model", "multiheads_finetuning", "pt_train_file", "force_mh_ft_lr"):
        assert absent not in f
    # no --foundation_model to read E0s from: the foundation's numbers are passed explicitly
    assert ast.literal_eval(f["E0s"]) == {29: -3.5}
    assert float(f["lr"]) == 1e-2
    assert parsed.model == "MACE" and parsed.foundation_model is None
    assert parsed.num_channels == 32 and parsed.max_L == 0 and parsed.r_max == 4.5


def test_scratch_average_and_dict_e0s(files, make_inputs):
    _, f, _ = _render(TrainSettings(strategy="scratch", e0s="average"), make_inputs(foundation=None), files["workdir"])
    assert f["E0s"] == "average"
    settings = TrainSettings(strategy="scratch", e0s="dict", e0s_dict={"Cu": -3.7, "Ni": -5.0})
    _, f, _ = _render(settings, make_inputs(elements=("Cu", "Ni"), foundation=None), files["workdir"])
    assert ast.literal_eval(f["E0s"]) == {29: -3.7, 28: -5.0}


def test_e0s_file_is_inlined_for_the_data_elements(files, make_inputs, tmp_path):
    """A lab's E0s file usually covers more elements than the data; MACE would size its table
    from the file and fail after loading the data, so only the data's elements are passed."""
    e0s = tmp_path / "e0s.json"
    e0s.write_text('{"1": -13.6, "8": -432.1, "29": -3.6}')
    _, f, _ = _render(TrainSettings(e0s="file", e0s_file=str(e0s)), make_inputs(), files["workdir"])
    assert ast.literal_eval(f["E0s"]) == {29: -3.6}


def test_reject_e0s_file_missing_an_element_or_not_json(files, make_inputs, tmp_path):
    e0s = tmp_path / "e0s.json"
    e0s.write_text('{"29": -3.6}')
    message = _rejected(
        TrainSettings(e0s="file", e0s_file=str(e0s)), make_inputs(elements=("Cu", "Ni")), files["workdir"]
    )
    assert "has no E0s for ['Ni']" in message
    e0s.write_text("Cu: -3.6")
    message = _rejected(TrainSettings(e0s="file", e0s_file=str(e0s)), make_inputs(), files["workdir"])
    assert "JSON object of atomic number -> eV" in message


def test_output_dirs_and_test_file(files, make_inputs):
    work = files["workdir"]
    _, f, _ = _render(TrainSettings(), make_inputs(test=True), work)
    assert f["name"] == "finetuned" and f["work_dir"] == str(work) and f["model_dir"] == str(work)
    for key in ("log_dir", "checkpoints_dir", "results_dir", "downloads_dir"):
        assert Path(f[key]).parent == work
    assert f["results_dir"] == str(work / "results")
    assert f["test_file"] == str(files["valid"])


# ---- heads ---------------------------------------------------------------------------------


def test_energy_forces_head(files, make_inputs, mace_parser):
    _, f, _ = _render(TrainSettings(strategy="naive"), make_inputs(), files["workdir"], mace_parser)
    assert "model" not in f
    assert f["loss"] == "weighted" and f["error_table"] == "PerAtomRMSE"
    assert "stress_key" not in f and "compute_stress" not in f


def test_stress_head(files, make_inputs, mace_parser):
    settings = TrainSettings(strategy="naive", heads=("energy", "forces", "stress"))
    _, f, parsed = _render(settings, make_inputs(labels=("energy", "forces", "stress")), files["workdir"], mace_parser)
    assert "model" not in f
    assert f["loss"] == "stress"  # the default `weighted` loss would ignore stress
    assert f["stress_key"] == "REF_stress"
    assert f["compute_stress"] == "True"
    assert f["error_table"] == "PerAtomRMSEstressvirials"
    assert "stress_weight" in f
    assert parsed.compute_stress is True and parsed.loss == "stress"


PROPERTY_HEADS = [
    (("dipole",), ("dipole",), 1, "AtomicDipolesMACE", "dipole", "DipoleRMSE"),
    (
        ("energy", "forces", "dipole"),
        ("energy", "forces", "dipole"),
        1,
        "EnergyDipolesMACE",
        "energy_forces_dipole",
        "EnergyDipoleRMSE",
    ),
    (
        ("dipole", "polarizability"),
        ("dipole", "polarizability"),
        2,
        "AtomicDielectricMACE",
        "dipole_polar",
        "DipolePolarRMSE",
    ),
]


@pytest.mark.parametrize("heads, labels, max_l, model, loss, table", PROPERTY_HEADS)
def test_property_heads_from_scratch(files, make_inputs, mace_parser, heads, labels, max_l, model, loss, table):
    settings = TrainSettings(strategy="scratch", heads=heads, shape=ModelShape(max_L=max_l))
    _, f, parsed = _render(settings, make_inputs(labels=labels, replay=False), files["workdir"], mace_parser)
    assert f["model"] == model
    assert f["loss"] == loss
    assert f["error_table"] == table
    assert f["dipole_key"] == "REF_dipole"
    if "polarizability" in heads:
        assert f["polarizability_key"] == "REF_polarizability"
    else:
        assert "polarizability_key" not in f
    assert "E0s" in f  # MACE still requires E0s
    assert parsed.model == model and parsed.loss == loss and parsed.error_table == table


# ---- extra ---------------------------------------------------------------------------------


def test_extra_overrides_in_place_and_adds_flags(files, make_inputs, mace_parser):
    """Flags without a typed field (here --eval_interval, --error_table) are replaced where
    they were; new ones come after."""
    plain = render_args(TrainSettings(), make_inputs(), ONE_PROCESS, files["workdir"], "finetuned")
    extra = {"eval_interval": "2", "--error_table": "PerAtomMAE", "num_workers": "2", "swa": ""}
    argv = render_args(TrainSettings(extra=extra), make_inputs(), ONE_PROCESS, files["workdir"], "finetuned")
    f = flags(argv)  # no duplicate flags
    assert argv.count("--eval_interval") == 1 and f["eval_interval"] == "2"
    assert argv.index("--eval_interval") == plain.index("--eval_interval")  # overridden where it was
    assert argv.index("--error_table") == plain.index("--error_table")
    assert f["error_table"] == "PerAtomMAE" != flags(plain)["error_table"]
    assert f["num_workers"] == "2"
    assert "swa" in f and f["swa"] is None  # "" renders a bare flag
    order, plain_order = list(f), list(flags(plain))
    assert order[: len(plain_order)] == plain_order  # same flags in the same order
    assert order[len(plain_order) :] == ["num_workers", "swa"]  # new ones after
    parsed = mace_parser.parse_args(argv)
    assert parsed.eval_interval == 2 and parsed.swa is True and parsed.error_table == "PerAtomMAE"


# ---- rejections ----------------------------------------------------------------------------


def _rejected(settings, inputs, workdir, launch=ONE_PROCESS):
    with pytest.raises(TrainConfigError) as info:
        render_args(settings, inputs, launch, workdir, "finetuned")
    assert not Path(workdir).exists()  # nothing ran, nothing was created
    with pytest.raises(TrainConfigError):
        validate(settings, inputs, launch)
    with pytest.raises(TrainConfigError):
        get_trainer("mace").validate(settings, inputs, launch)
    return str(info.value)


def test_reject_average_e0s_with_multihead(files, make_inputs):
    message = _rejected(TrainSettings(e0s="average"), make_inputs(), files["workdir"])
    assert "average" in message and "multihead" in message


def test_reject_dipole_head_without_dipole_labels(files, make_inputs):
    settings = TrainSettings(strategy="scratch", heads=("energy", "forces", "dipole"))
    message = _rejected(settings, make_inputs(replay=False), files["workdir"])
    assert "'dipole'" in message and "REF_dipole" in message


def test_reject_elements_missing_from_foundation(files, make_inputs):
    for strategy in ("multihead", "naive"):
        message = _rejected(TrainSettings(strategy=strategy), make_inputs(elements=("Cu", "Zr")), files["workdir"])
        assert "'Zr'" in message and "foundation" in message
        assert "'Cu'" not in message.split("elements")[1].split("are in the data")[0]


def test_reject_multihead_without_replay(files, make_inputs):
    message = _rejected(TrainSettings(), make_inputs(replay=False), files["workdir"])
    assert "replay" in message and "multihead" in message


def test_reject_fine_tuning_without_foundation(files, make_inputs):
    message = _rejected(TrainSettings(strategy="naive"), make_inputs(foundation=None), files["workdir"])
    assert "foundation" in message


def test_reject_freeze_with_lora(files, make_inputs):
    message = _rejected(TrainSettings(strategy="naive", freeze=5, lora=True), make_inputs(), files["workdir"])
    assert "freeze" in message and "lora" in message


def test_reject_freeze_below_one(files, make_inputs):
    message = _rejected(TrainSettings(strategy="naive", freeze=0), make_inputs(), files["workdir"])
    assert "freeze" in message and "got 0" in message


def test_reject_pseudo_replay_with_naive(files, make_inputs):
    message = _rejected(TrainSettings(strategy="naive", replay_labels="pseudo"), make_inputs(), files["workdir"])
    assert "pseudo" in message and "multihead" in message


def test_reject_scratch_with_freeze(files, make_inputs):
    message = _rejected(TrainSettings(strategy="scratch", freeze=5), make_inputs(), files["workdir"])
    assert "scratch" in message and "freeze" in message


def test_reject_dipole_heads_with_multihead(files, make_inputs):
    settings = TrainSettings(heads=("energy", "forces", "dipole"))
    message = _rejected(settings, make_inputs(labels=("energy", "forces", "dipole")), files["workdir"])
    assert "multihead" in message and "EnergyDipolesMACE" in message


def test_reject_dipole_heads_on_a_plain_foundation(files, make_inputs):
    settings = TrainSettings(strategy="naive", heads=("energy", "forces", "dipole"))
    message = _rejected(settings, make_inputs(labels=("energy", "forces", "dipole")), files["workdir"])
    assert "ScaleShiftMACE" in message and "EnergyDipolesMACE" in message


def test_reject_dipole_scratch_without_vector_irreps(files, make_inputs):
    settings = TrainSettings(strategy="scratch", heads=("dipole",), shape=ModelShape(max_L=0))
    message = _rejected(settings, make_inputs(labels=("dipole",)), files["workdir"])
    assert "max_L" in message


def test_reject_e0s_dict_missing_an_element(files, make_inputs):
    foundation = {**FOUNDATION, "elements": ["Cu", "Ni"], "e0s": {"29": -3.5, "28": -5.1}}
    settings = TrainSettings(strategy="naive", e0s="dict", e0s_dict={"Cu": -3.5})
    message = _rejected(settings, make_inputs(elements=("Cu", "Ni"), foundation=foundation), files["workdir"])
    assert "e0s_dict" in message and "'Ni'" in message


def test_reject_scratch_with_foundation_e0s_missing_an_element(files, make_inputs):
    # MACE would start, load the data and then die on a KeyError for Ni's E0: catch it first.
    settings = TrainSettings(strategy="scratch")
    message = _rejected(settings, make_inputs(elements=("Cu", "Ni"), replay=False), files["workdir"])
    assert "Ni" in message


def test_reject_e0s_file_that_does_not_exist(files, make_inputs, tmp_path):
    settings = TrainSettings(e0s="file", e0s_file=str(tmp_path / "missing.json"))
    message = _rejected(settings, make_inputs(), files["workdir"])
    assert "e0s_file" in message


def test_reject_forces_without_energy(files, make_inputs):
    message = _rejected(TrainSettings(heads=("forces",)), make_inputs(), files["workdir"])
    assert "energy and forces" in message


def test_several_problems_reported_together(files, make_inputs):
    settings = TrainSettings(e0s="average", freeze=5, lora=True)
    message = _rejected(settings, make_inputs(replay=False, elements=("Cu", "Zr")), files["workdir"])
    problems = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, message
    assert "average" in message and "replay" in message and "freeze or lora" in message and "'Zr'" in message


def test_valid_settings_pass_check(make_inputs):
    validate(TrainSettings(), make_inputs(), ONE_PROCESS)  # no exception
    get_trainer("mace").validate(replace(TrainSettings(), strategy="naive"), make_inputs(), ONE_PROCESS)


def test_unknown_trainer():
    with pytest.raises(ValueError) as info:
        get_trainer("sevennet")
    assert "sevennet" in str(info.value) and "mace" in str(info.value)


# ---- command prefix ------------------------------------------------------------------------


def test_command_prefix_default():
    assert command_prefix(ONE_PROCESS) == [sys.executable, "-m", "mace.cli.run_train"]


def test_command_prefix_override():
    """TRAINCRAFT_MACE_TRAIN_COMMAND, split into words as the shell would, replaces the program."""
    settings = load_settings(
        {TRAIN_COMMAND_ENV: "torchrun --standalone --nproc_per_node 4 '/opt/my mace/run_train.py'"}
    )
    assert command_prefix(Launch.from_settings(settings)) == [
        "torchrun",
        "--standalone",
        "--nproc_per_node",
        "4",
        "/opt/my mace/run_train.py",
    ]


def test_reject_average_e0s_when_training_frames_lack_energy(files, make_inputs):
    """MACE computes NaN losses, silently, for averaged E0s over frames without energies."""
    inputs = replace(make_inputs(replay=False), n_frames_without_energy=2)
    message = _rejected(TrainSettings(strategy="scratch", e0s="average"), inputs, files["workdir"])
    assert "2 training frame(s) lacking REF_energy" in message and "NaN" in message
    render_args(
        TrainSettings(strategy="scratch", e0s="average"),
        make_inputs(replay=False),
        ONE_PROCESS,
        files["workdir"],
        "finetuned",
    )


@pytest.mark.parametrize(
    "heads, expected",
    [
        (("energy", "forces", "dipole", "polarizability"), "would silently drop energy/forces/stress"),
        (("energy", "forces", "stress", "dipole"), "EnergyDipolesMACE does not fit stress"),
    ],
)
def test_reject_head_sets_mace_would_silently_reduce(files, make_inputs, heads, expected):
    settings = TrainSettings(strategy="scratch", heads=heads, shape=ModelShape(max_L=2))
    labels = ("energy", "forces", "stress", "dipole", "polarizability")
    assert expected in _rejected(settings, make_inputs(labels=labels, replay=False), files["workdir"])


def test_reject_freeze_that_would_freeze_everything(files, make_inputs):
    message = _rejected(TrainSettings(strategy="naive", freeze=7), make_inputs(), files["workdir"])
    assert "freeze must be 1-6" in message and "freeze every parameter" in message


@pytest.mark.parametrize(
    "flag, field",
    [
        ("force_mh_ft_lr", "lr / ema_decay"),
        ("--train_file", "the split"),
        ("E0s", "e0s"),
        ("--lr", "lr"),
        ("max_num_epochs", "max_num_epochs"),
    ],
)
def test_reject_extra_overriding_managed_flags(files, make_inputs, flag, field):
    message = _rejected(TrainSettings(extra={flag: "False"}), make_inputs(), files["workdir"])
    assert f"extra may not set --{flag.removeprefix('--')}: it is managed here (set through {field})" in message


def test_reject_e0s_dict_with_a_non_element_key(files, make_inputs):
    settings = TrainSettings(e0s="dict", e0s_dict={"Cu": -3.5, "Cuu": -1.0})
    assert "['Cuu'] are not" in _rejected(settings, make_inputs(), files["workdir"])


# ---- one process per GPU -------------------------------------------------------------------


def test_several_gpus_run_one_torchrun_rank_each(files, make_inputs, mace_parser):
    """A GPU pod's profile sets TRAINCRAFT_TRAINING_PROCESSES to its GPU count."""
    four = Launch.from_settings(load_settings({"TRAINCRAFT_TRAINING_PROCESSES": "4"}))
    assert four == Launch(processes=4)
    assert command_prefix(four) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "4",
        "-m",
        "mace.cli.run_train",
    ]
    _, f, parsed = _render(TrainSettings(device="cuda"), make_inputs(), files["workdir"], mace_parser, four)
    assert "distributed" in f and f["launcher"] == "torchrun"
    assert parsed.distributed is True and parsed.launcher == "torchrun"
    message = _rejected(TrainSettings(device="cpu"), make_inputs(), files["workdir"], four)
    assert "4 training processes" in message and "'cuda'" in message
    assert "TRAINCRAFT_TRAINING_PROCESSES" in _rejected(
        TrainSettings(device="cuda", extra={"launcher": "slurm"}), make_inputs(), files["workdir"], four
    )


def test_one_process_is_a_plain_run(files, make_inputs):
    _, f, _ = _render(TrainSettings(), make_inputs(), files["workdir"])
    assert "distributed" not in f and "launcher" not in f
