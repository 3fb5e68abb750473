"""Levels of theory in training: one head never fits two levels unless asked, and the
multifidelity strategy gives each level its own MACE head (the deployed level's head last, so
MACE keeps the epoch that is best on it). Rendering is checked against MACE 0.3.16's own
argument parser; one tiny two-head training runs for real."""

import ast
from dataclasses import replace

import pytest
from ase.calculators.emt import EMT

from traincraft_assets.core.frames import LEVEL_KEY, level_of, read_frames, write_frames
from traincraft_assets.core.labelling import emt_morse_calculator
from traincraft_assets.core.models import TARGET_HEAD, load_model
from traincraft_assets.core.training import Launch, TrainConfigError, TrainInputs, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings
from traincraft_assets.core.training.mace.command import render_args
from traincraft_assets_tests.core.helpers import cu_bulk, flags, labelled

CHEAP, EXPENSIVE = "emt:EMT (ase)", "emt_morse:EMT+Morse (ase)"
TINY = ModelShape(num_channels=16, max_L=0, r_max=4.0, num_interactions=2, correlation=2)


def _at_level(atoms, calculator, level):
    """`atoms` labelled by `calculator`, stamped with `level`."""
    atoms = atoms.copy()
    atoms.calc = calculator()
    frame = labelled(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
    frame.info[LEVEL_KEY] = level
    return frame


@pytest.fixture
def two_levels(tmp_path):
    """Split sides holding Cu frames at two levels: many cheap (EMT), few expensive
    (EMT plus a Morse term), some structures at both."""
    structures = [cu_bulk(rattle=0.05, seed=k, repeat=1) for k in range(14)]
    sides = {
        "train": [_at_level(a, EMT, CHEAP) for a in structures[:10]]
        + [_at_level(a, emt_morse_calculator, EXPENSIVE) for a in structures[:4]],
        "valid": [_at_level(a, EMT, CHEAP) for a in structures[10:13]]
        + [_at_level(a, emt_morse_calculator, EXPENSIVE) for a in structures[10:12]],
    }
    paths = {}
    for side, frames in sides.items():
        paths[side] = tmp_path / f"{side}.xyz"
        write_frames(paths[side], frames)
    return TrainInputs(
        train_file=paths["train"],
        valid_file=paths["valid"],
        data_labels=("energy", "forces"),
        data_elements=("Cu",),
        data_levels={CHEAP: 10, EXPENSIVE: 4},
    )


def _refused(settings, inputs) -> str:
    with pytest.raises(TrainConfigError) as caught:
        get_trainer("mace").validate(settings, inputs, Launch())
    return str(caught.value)


def test_one_head_on_two_levels_is_refused_naming_both(two_levels):
    message = _refused(TrainSettings(strategy="scratch", e0s="average"), two_levels)
    assert f"{CHEAP!r} (10 frames)" in message and f"{EXPENSIVE!r} (4 frames)" in message
    assert "`level`" in message and "'multifidelity'" in message and "merge_levels" in message
    # asked for: one level, or both merged on purpose
    trainer = get_trainer("mace")
    trainer.validate(
        TrainSettings(strategy="scratch", e0s="average", level=EXPENSIVE, batch_size=4), two_levels, Launch()
    )
    trainer.validate(TrainSettings(strategy="scratch", e0s="average", merge_levels=True), two_levels, Launch())


def test_a_level_not_in_the_data_is_refused(two_levels):
    message = _refused(TrainSettings(strategy="scratch", e0s="average", level="pyscf:PBE/def2-SVP"), two_levels)
    assert "'pyscf:PBE/def2-SVP' is not in the training data" in message and CHEAP in message


def test_multifidelity_needs_two_levels_a_deployed_level_and_per_head_e0s(two_levels):
    one = replace(two_levels, data_levels={CHEAP: 10})
    assert "has one" in _refused(TrainSettings(strategy="multifidelity", e0s="average", level=CHEAP), one)
    assert "set `level`" in _refused(TrainSettings(strategy="multifidelity", e0s="average"), two_levels)
    message = _refused(TrainSettings(strategy="multifidelity", level=EXPENSIVE), two_levels)
    assert "set e0s: average (got 'foundation')" in message
    message = _refused(
        TrainSettings(strategy="multifidelity", e0s="average", level=EXPENSIVE, merge_levels=True), two_levels
    )
    assert "merge_levels" in message


def test_training_on_one_level_reads_only_its_frames(two_levels, tmp_path):
    settings = TrainSettings(strategy="scratch", e0s="average", level=EXPENSIVE)
    prepared = get_trainer("mace").prepare(settings, two_levels, tmp_path)
    train, valid = read_frames(prepared.train_file), read_frames(prepared.valid_file)
    assert (len(train), len(valid)) == (4, 2)
    assert {level_of(a) for a in train + valid} == {EXPENSIVE}


def test_multifidelity_renders_one_head_per_level_for_mace(two_levels, tmp_path):
    from mace.tools import build_default_arg_parser

    settings = TrainSettings(strategy="multifidelity", e0s="average", level=EXPENSIVE, shape=TINY)
    prepared = get_trainer("mace").prepare(settings, two_levels, tmp_path)
    argv = render_args(settings, prepared, Launch(), tmp_path / "run", "finetuned")
    f = flags(argv)
    heads = ast.literal_eval(f["heads"])
    # the deployed level is MACE's last head (its validation loss picks the kept epoch) and
    # carries the name the rest of the project evaluates and deploys
    assert list(heads)[-1] == TARGET_HEAD and len(heads) == 2
    expected = {"emt_EMT_ase": (CHEAP, {"train": 10, "valid": 3}), TARGET_HEAD: (EXPENSIVE, {"train": 4, "valid": 2})}
    for head, (level, sizes) in expected.items():
        for side, n in sizes.items():
            frames = read_frames(heads[head][f"{side}_file"])
            assert len(frames) == n and {level_of(a) for a in frames} == {level}
    assert "train_file" not in f and "foundation_model" not in f
    assert f["E0s"] == "average" and f["model"] == "MACE"  # E0s fitted per head from its own frames
    parsed = build_default_arg_parser().parse_args(argv)
    assert ast.literal_eval(parsed.heads) == heads


def test_a_replay_head_makes_multifidelity_a_multihead_fine_tuning_with_e0s_per_level(two_levels, tmp_path):
    """replay_head: MACE's multihead fine-tuning (foundation, pt_train_file, our lr) with one head
    per level; MACE refuses a global `--E0s average` there, so each level's head asks for it."""
    from mace.tools import build_default_arg_parser

    replay = tmp_path / "replay.xyz"
    write_frames(replay, [_at_level(cu_bulk(rattle=0.05, seed=50), EMT, "emt:foundation")])
    inputs = replace(
        two_levels,
        replay_file=replay,
        foundation_model=tmp_path / "foundation.model",
        foundation={"elements": ["Cu"], "e0s": {"29": -1.0}, "model_class": "ScaleShiftMACE"},
    )
    settings = TrainSettings(strategy="multifidelity", replay_head=True, e0s="average", level=EXPENSIVE)
    prepared = get_trainer("mace").prepare(settings, inputs, tmp_path)
    argv = render_args(settings, prepared, Launch(), tmp_path / "run", "finetuned")
    f = flags(argv)
    assert f["foundation_model"] == str(inputs.foundation_model) and f["multiheads_finetuning"] == "True"
    assert f["pt_train_file"] == str(replay) and f["force_mh_ft_lr"] == "True" and f["lr"] == "0.0001"
    assert f["E0s"] == "foundation" and "model" not in f and "loss" not in f
    heads = ast.literal_eval(f["heads"])
    assert list(heads)[-1] == TARGET_HEAD and all(head["E0s"] == "average" for head in heads.values())
    assert ast.literal_eval(build_default_arg_parser().parse_args(argv).heads) == heads
    described = get_trainer("mace").describe(settings, prepared, argv)
    assert described["replay_levels_of_theory"] == {"emt:foundation": 1} and described["strategy"]["replay_head"]

    assert "needs a replay subset" in _refused(settings, replace(inputs, replay_file=None))
    assert "fine-tunes a foundation model, but none was given" in _refused(
        settings, replace(inputs, foundation_model=None, foundation=None)
    )
    assert "strategy 'multihead' always has one" in _refused(
        TrainSettings(strategy="naive", replay_head=True, e0s="average", level=EXPENSIVE), inputs
    )


def test_a_deployed_level_without_valid_frames_is_refused_before_training(two_levels, tmp_path):
    cheap_valid_only = [a for a in read_frames(two_levels.valid_file) if level_of(a) == CHEAP]
    write_frames(two_levels.valid_file, cheap_valid_only)
    settings = TrainSettings(strategy="multifidelity", e0s="average", level=EXPENSIVE)
    with pytest.raises(TrainConfigError, match="no frame on the split's valid side"):
        get_trainer("mace").prepare(settings, two_levels, tmp_path)


@pytest.mark.integration
def test_multifidelity_trains_two_heads_and_deploys_the_chosen_one(two_levels, tmp_path):
    from traincraft_assets.core.evaluation import predict

    trainer = get_trainer("mace")
    settings = TrainSettings(
        strategy="multifidelity",
        e0s="average",
        level=EXPENSIVE,
        shape=TINY,
        max_num_epochs=2,
        batch_size=4,
        dtype="float32",
    )
    result = trainer.train(settings, two_levels, Launch(), tmp_path / "run", lambda line: None, "finetuned")
    model = load_model(result.model_path)
    assert list(model.heads) == ["emt_EMT_ase", TARGET_HEAD]
    # each head trained on its own level's frames, per MACE's own log
    heads = result.effective["heads"]
    assert heads["emt_EMT_ase"]["train_frames"]["energy"] == 10
    assert heads[TARGET_HEAD]["train_frames"]["energy"] == 4
    # the learning curve and the kept epoch are the deployed head's
    assert result.best["head"] == TARGET_HEAD and {row["head"] for row in result.curve} == set(model.heads)
    # the manifest records what MACE was given
    described = trainer.describe(settings, two_levels, result.argv)
    assert described["level_of_theory"] == EXPENSIVE
    assert described["head_levels"] == {"emt_EMT_ase": CHEAP, TARGET_HEAD: EXPENSIVE}
    assert described["heads_config"] == ast.literal_eval(flags(result.argv[result.argv.index("--name") :])["heads"])
    # the deployed model is the expensive head alone, predicting what that head predicts
    deploy = trainer.export(result.model_path, tmp_path / "deploy.model")
    assert list(load_model(deploy).heads) == [TARGET_HEAD]
    frames = read_frames(two_levels.valid_file)
    both = predict(load_model(result.model_path), frames, TARGET_HEAD)
    alone = predict(load_model(deploy), frames)
    assert all(abs(a.energy - b.energy) < 1e-4 for a, b in zip(both, alone))


def test_a_batch_larger_than_the_training_frames_is_refused_with_the_numbers(two_levels):
    """MACE drops the last incomplete batch: with fewer training frames than one batch it trains
    on nothing and fails with 'torch.cat(): expected a non-empty list'."""
    message = _refused(TrainSettings(strategy="scratch", e0s="average", level=EXPENSIVE, batch_size=8), two_levels)
    assert "batch_size 8 is larger than the 4 training frames" in message and "at most 4" in message
    # all levels count for multifidelity (one loader over every head's frames)
    trainer = get_trainer("mace")
    trainer.validate(
        TrainSettings(strategy="multifidelity", e0s="average", level=EXPENSIVE, batch_size=8), two_levels, Launch()
    )
