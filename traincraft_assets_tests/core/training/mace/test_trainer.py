"""MaceTrainer's own steps that need no training: which inputs it uses, the placeholder labels
it writes for pseudolabelled replay, and the manifest record."""

from dataclasses import replace

import numpy as np

from traincraft_assets.core.frames import get_label, read_frames, write_frames
from traincraft_assets.core.training import TrainInputs, Uses, get_trainer
from traincraft_assets.core.training.mace import TrainSettings
from traincraft_assets_tests.core.helpers import cu_bulk, labelled


def test_uses_follow_the_strategy():
    trainer = get_trainer("mace")
    assert trainer.uses(TrainSettings()) == Uses(foundation=True, replay=True)
    assert trainer.uses(TrainSettings(strategy="naive")) == Uses(foundation=True, replay=False)
    assert trainer.uses(TrainSettings(strategy="scratch")) == Uses(foundation=True, replay=False)  # its E0s
    assert trainer.uses(TrainSettings(strategy="scratch", e0s="average")) == Uses(foundation=False, replay=False)


def _inputs(tmp_path):
    replay = tmp_path / "replay.xyz"
    write_frames(
        replay,
        [
            labelled(cu_bulk(rattle=0.05, seed=k, repeat=1), energy=-14.0, forces=0.3, stress=np.ones(9))
            for k in range(2)
        ],
    )
    return TrainInputs(train_file=tmp_path / "t.xyz", valid_file=tmp_path / "v.xyz", replay_file=replay)


def test_pseudolabelled_replay_gets_placeholder_labels_in_scratch(tmp_path):
    """MACE leaves replay frames without labels at loss weight 0, so every frame gets zeros for
    the foundation's pseudolabels to replace; the replay artifact itself is not touched."""
    inputs = _inputs(tmp_path)
    before = inputs.replay_file.read_bytes()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    prepared = get_trainer("mace").prepare(TrainSettings(replay_labels="pseudo"), inputs, scratch)
    assert prepared.replay_file.parent == scratch
    for atoms in read_frames(prepared.replay_file):
        assert get_label(atoms, "energy") == 0.0
        assert not get_label(atoms, "forces").any()
        assert get_label(atoms, "stress") is None
    assert inputs.replay_file.read_bytes() == before
    assert prepared.train_file == inputs.train_file


def test_reference_replay_is_used_as_given(tmp_path):
    inputs = _inputs(tmp_path)
    assert get_trainer("mace").prepare(TrainSettings(), inputs, tmp_path) is inputs


def test_describe_records_the_e0s_argument_as_run(tmp_path):
    inputs = replace(_inputs(tmp_path), foundation={"e0s": {"29": -3.5}})
    argv = ["python", "-m", "mace.cli.run_train", "--E0s", "{29: -3.5}", "--name", "finetuned"]
    record = get_trainer("mace").describe(TrainSettings(e0s="dict", e0s_dict={"Cu": -3.5}), inputs, argv)
    assert record == {
        "strategy": {
            "strategy": "multihead",
            "freeze": None,
            "lora": False,
            "replay_labels": "reference",
            "replay_head": True,
        },
        "heads": ["energy", "forces"],
        "e0s": {
            "mode": "dict",
            "argument": "{29: -3.5}",
            "foundation_e0s_ev": {"29": -3.5},
            "set_on_foundation_copy": False,  # multihead: MACE uses --E0s as given
        },
        # no level of theory recorded on the frames: the model's is unknown, not guessed
        "level_of_theory": "unknown",
        "data_levels_of_theory": {},
        "replay_levels_of_theory": {"unknown": 2},
    }
