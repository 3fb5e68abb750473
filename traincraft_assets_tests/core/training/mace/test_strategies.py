"""Every strategy of the fine-tuning study, trained for real by mace_run_train through the
trainer interface (1 epoch, tiny foundation from the session's graph run). Flag rendering is
unit-tested in test_command.py; these tests show MACE 0.3.16 accepts each rendered command and
does what the strategy means."""

from pathlib import Path

import pytest

from traincraft_assets.core.artifacts import FoundationModel, ReplaySubset, Split
from traincraft_assets.core.evaluation import predict
from traincraft_assets.core.frames import elements, labels_present, read_frames
from traincraft_assets.core.models import load_model
from traincraft_assets.core.training import Launch, TrainInputs, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings
from traincraft_assets.core.training.mace.results import _complete
from traincraft_assets_tests.core.helpers import mace_eval_epochs

pytestmark = pytest.mark.integration


def _artifact(graph_run, kind):
    return kind(Path(graph_run.latest(kind.asset).metadata["artifact_path"].value))


@pytest.fixture(scope="module")
def inputs(graph_run):
    split, replay, foundation = (_artifact(graph_run, k) for k in (Split, ReplaySubset, FoundationModel))
    train = read_frames(split.train_path)
    return TrainInputs(
        train_file=split.train_path,
        valid_file=split.valid_path,
        replay_file=replay.selected_path,
        foundation_model=foundation.model_path,
        foundation=foundation.info,
        data_labels=labels_present(train),
        data_elements=elements(train),
    )


def _train(inputs, tmp_path, **settings):
    lines = []
    trainer = get_trainer("mace")
    settings = TrainSettings(max_num_epochs=1, batch_size=4, dtype="float32", lr=0.01, **settings)
    result = trainer.train(settings, inputs, Launch(), tmp_path / "run", lines.append, "finetuned")
    assert result.model_path.is_file() and result.epochs_run == 1
    # the kept model is the best checkpoint: checkpoints stay out of what is published
    assert "checkpoints" not in {p.name for p in trainer.outputs(tmp_path / "run", "finetuned")}
    deploy = trainer.export(result.model_path, tmp_path / "run" / "deploy.model")
    return result, deploy, "\n".join(lines)


def _params(path):
    return {k: v.detach().clone() for k, v in load_model(path).state_dict().items()}


def _same(a, b, prefix):
    keys = [k for k in a if k.startswith(prefix) and k in b and a[k].shape == b[k].shape]
    assert keys, prefix
    return all(bool((a[k] == b[k]).all()) for k in keys)


def test_freeze_keeps_frozen_blocks_equal_to_the_foundation(inputs, tmp_path):
    """The comparison's `frozen` arm (--freeze 5): interactions fixed, products and readouts
    trained. Other depths differ only in MACE's count (test_command.py renders them)."""
    result, _, _ = _train(inputs, tmp_path, strategy="naive", freeze=5)
    before, after = _params(inputs.foundation_model), _params(result.model_path)
    assert _same(before, after, "interactions.")
    assert not _same(before, after, "products.")
    assert not _same(before, after, "readouts.")


def test_naive_trains_a_single_head_model(inputs, tmp_path):
    result, deploy, log = _train(inputs, tmp_path, strategy="naive")
    assert "epoch 1/1 (Default: loss" in log and "elapsed, about 0:00 left" in log  # progress, from MACE's own line
    assert list(load_model(result.model_path).heads) == ["Default"]
    assert deploy == result.model_path  # already deployable: no second copy
    # what MACE used, read back from its log: the weighted loss fits energy and forces only,
    # even where the frames carry stress
    effective = result.effective
    assert effective["loss"] == {"class": "WeightedEnergyForcesLoss", "weights": {"energy": 10.0, "forces": 10.0}}
    assert effective["lr"] == 0.01 and effective["ema_decay"] == 0.995
    assert effective["heads"]["Default"]["fitted"] == ["energy", "forces"]


def test_lora_trains_and_merges_adapters(inputs, tmp_path):
    result, _, log = _train(inputs, tmp_path, strategy="naive", lora=True)
    assert "lora" in log.lower()
    assert not any("lora" in k.lower() for k in _params(result.model_path))  # merged into weights


def test_multihead_replay_keeps_a_replay_head_and_publishes_a_single_head_model(inputs, tmp_path):
    result, deploy_path, log = _train(inputs, tmp_path, strategy="multihead")
    multihead = load_model(result.model_path)
    assert set(multihead.heads) == {"Default", "pt_head"}
    assert "pt_head" in log
    # MACE's own record: universal loss whatever we ask, our lr (force_mh_ft_lr), and stress
    # fitted on every head whose frames carry it, though the heads asked were energy, forces
    effective = result.effective
    assert effective["loss"]["class"] == "UniversalLoss" and effective["lr"] == 0.01
    for head in ("Default", "pt_head"):
        frames = effective["heads"][head]["train_frames"]
        assert frames["energy"] > 0 and ("stress" in effective["heads"][head]["fitted"]) == (frames["stress"] > 0)
    deploy = load_model(deploy_path)
    assert deploy_path.name == "deploy.model" and list(deploy.heads) == ["Default"]
    frames = read_frames(inputs.valid_file)
    for a, b in zip(predict(multihead, frames, "Default"), predict(deploy, frames)):
        assert a.energy == pytest.approx(b.energy, abs=1e-4)
        assert abs(a.forces - b.forces).max() < 1e-4


def test_replay_with_lora(inputs, tmp_path):
    result, _, _ = _train(inputs, tmp_path, strategy="multihead", lora=True)
    assert set(load_model(result.model_path).heads) == {"Default", "pt_head"}


def test_pseudolabelled_replay_relabels_replay_frames(inputs, tmp_path):
    """The trainer writes placeholder labels on the replay frames itself (MACE would otherwise
    leave label-less frames at loss weight 0); the replay file given stays untouched."""
    before = inputs.replay_file.read_bytes()
    result, _, log = _train(inputs, tmp_path, strategy="multihead", replay_labels="pseudo")
    assert "pseudolabel" in log.lower()
    # With placeholder zeros kept, the replay head's initial force error would equal the
    # foundation's force magnitude; relabelled by the foundation itself, it is ~0.
    pt_initial = [r for r in result.curve if r["head"] == "pt_head" and r["epoch"] == -1]
    assert pt_initial and pt_initial[0]["rmse_f"] < 1e-3
    assert inputs.replay_file.read_bytes() == before
    argv = result.argv
    assert argv[argv.index("--pt_train_file") + 1] != str(inputs.replay_file)  # the placeholders


def test_scratch_uses_the_foundation_e0s(inputs, tmp_path):
    shape = ModelShape(num_channels=8, max_L=0, r_max=4.0, num_interactions=2, correlation=2)
    result, _, _ = _train(inputs, tmp_path, strategy="scratch", e0s="foundation", shape=shape)
    model = load_model(result.model_path)
    e0 = float(model.atomic_energies_fn.atomic_energies.reshape(-1)[0])
    assert e0 == pytest.approx(inputs.foundation["e0s"]["29"], rel=1e-5)
    assert "--foundation_model" not in result.argv


def test_a_killed_training_resumes_from_its_checkpoint_and_a_finished_one_is_not_rerun(inputs, tmp_path):
    """What a lost GPU node looks like to the next attempt: the work directory holds MACE's
    checkpoints; the rerun continues from the latest one (epochs before it are not trained
    again, read from MACE's results) and says so; a third attempt after success runs nothing.
    Naive here; multihead resumes through the whole step in defs/training/test_resume.py and
    k8s/test_cluster.py."""
    trainer = get_trainer("mace")
    settings = TrainSettings(strategy="naive", max_num_epochs=4, batch_size=4, dtype="float32", lr=0.01)
    workdir = tmp_path / "work"

    def stop_after_a_later_epoch(line):
        # complete checkpoints only: one still being written would be cut off by the kill
        epochs = [int(p.stem.rsplit("-", 1)[1]) for p in (workdir / "checkpoints").glob("*_epoch-*.pt") if _complete(p)]
        if epochs and max(epochs) >= 1 and "Epoch" in line:
            raise KeyboardInterrupt  # the step dies; run_training stops MACE's process group

    with pytest.raises(KeyboardInterrupt):
        trainer.train(settings, inputs, Launch(), workdir, stop_after_a_later_epoch, "finetuned")
    before = mace_eval_epochs(workdir)

    lines = []
    result = trainer.train(settings, inputs, Launch(), workdir, lines.append, "finetuned")
    resumed = result.resumed_from_epoch
    assert resumed is not None and resumed >= 1, "\n".join(lines[-30:])
    assert "--restart_latest" in result.argv and result.epochs_run == 4
    after = mace_eval_epochs(workdir)
    # MACE 0.3.16 saves `epoch-N` after epoch N and, restarted, begins again AT epoch N (its
    # tools/train.py: epoch = start_epoch): that one epoch is trained twice; none before it.
    trained_twice = {key for key in after if after.count(key) > 1 and key[0] < resumed}
    assert not trained_twice, f"epochs before the checkpoint ({resumed}) were trained again: {sorted(trained_twice)}"
    assert {epoch for epoch, _ in after} == {0, 1, 2, 3} and len(after) > len(before)

    no_mace = Launch(command=(str(tmp_path / "no_mace_here"),))
    again = trainer.train(settings, inputs, no_mace, workdir, lines.append, "finetuned")
    assert again.argv == result.argv and again.resumed_from_epoch == resumed  # nothing ran


def test_a_diverging_training_stops_at_the_first_nan_loss_and_keeps_its_log(inputs, tmp_path):
    """lr 1e12 sends the weights to NaN in the first epoch; MACE itself would go on to the last
    epoch on NaN weights and publish a NaN model."""
    from traincraft_assets.core.training import TrainingDiverged

    settings = TrainSettings(strategy="naive", max_num_epochs=50, batch_size=4, dtype="float32", lr=1e12)
    workdir = tmp_path / "work"
    with pytest.raises(TrainingDiverged) as error:
        get_trainer("mace").train(settings, inputs, Launch(), workdir, lambda line: None, "finetuned")
    message = str(error.value)
    for part in ("diverged", "Epoch 0", "loss=", "nan", str(workdir), "lower lr"):
        assert part in message, (part, message)
    assert list((workdir / "logs").glob("*.log")), "MACE's log is kept for inspection"
    assert mace_eval_epochs(workdir)[-1][0] == 0  # stopped after the first epoch, not at epoch 49
    assert not (workdir / ".done").exists()  # not marked finished: nothing to publish
