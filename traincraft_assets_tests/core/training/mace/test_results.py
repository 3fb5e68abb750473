"""Reading a finished MACE run back: MACE's results file, the kept epoch, the model file."""

import json

import pytest

from traincraft_assets.core.training import TrainingFailed, TrainResult
from traincraft_assets.core.training.mace.results import best_epoch, final_model, parse_results


def epochs_run(curve):
    return TrainResult(model_path=None, argv=[], curve=curve, best={}).epochs_run


def _eval(epoch, head, loss, rmse_f, rmse_e=0.02):
    # the keys MACE 0.3.16 writes on an evaluation line (tools/train.py valid_err_log)
    return {
        "loss": loss,
        "mae_e": 0.5,
        "mae_e_per_atom": rmse_e * 0.8,
        "rmse_e": 0.7,
        "rmse_e_per_atom": rmse_e,
        "q95_e": 1.0,
        "mae_f": rmse_f * 0.6,
        "rel_mae_f": 3.9,
        "rmse_f": rmse_f,
        "rel_rmse_f": 4.5,
        "q95_f": 0.04,
        "mae_stress": None,
        "rmse_stress": None,
        "time": 0.1,
        "mode": "eval",
        "epoch": epoch,
        "head": head,
    }


def _opt(epoch, loss):
    return {"loss": loss, "time": 0.2, "mode": "opt", "epoch": epoch}


def _write_results(directory, entries, truncated_tail=None):
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(e) for e in entries]
    text = "\n".join(lines) + "\n"
    if truncated_tail is not None:
        text += truncated_tail  # a run killed mid-write leaves half a line
    path = directory / "finetuned_run-0_train.txt"
    path.write_text(text)
    return path


def test_parse_results_reads_a_restarted_multihead_run(tmp_path):
    results = tmp_path / "results"
    entries = [
        _eval(None, "pt_head", 0.001, 0.018),
        _eval(None, "Default", 0.008, 1.86),
        _opt(0, 0.06),
        _opt(0, 0.03),
        _eval(0, "pt_head", 0.0014, 0.017),
        _eval(0, "Default", 0.0064, 1.79),
        _opt(1, 0.02),
        _eval(1, "pt_head", 0.0015, 0.030),
        _eval(1, "Default", 0.0050, 1.50),
        # restarted with --restart_latest: epoch 1 evaluated again, results appended
        _opt(1, 0.019),
        _eval(1, "pt_head", 0.0013, 0.025),
        _eval(1, "Default", 0.0040, 1.20),
        _opt(2, 0.01),
        _eval(2, "pt_head", 0.0012, 0.021),
        _eval(2, "Default", 0.0030, 0.90),
    ]
    _write_results(results, entries, truncated_tail='{"loss": 0.002, "mae_e": 0.3, "mode": "ev')
    (results / "notes.txt").write_text("not a results file\n")

    curve = parse_results(results)
    assert [(row["epoch"], row["head"]) for row in curve] == [
        (-1, "Default"),
        (-1, "pt_head"),
        (0, "Default"),
        (0, "pt_head"),
        (1, "Default"),
        (1, "pt_head"),
        (2, "Default"),
        (2, "pt_head"),
    ]
    by_key = {(row["epoch"], row["head"]): row for row in curve}
    assert by_key[(-1, "Default")]["rmse_f"] == pytest.approx(1.86)  # zero-shot, before any update
    assert by_key[(1, "Default")]["rmse_f"] == pytest.approx(1.20)  # the restarted run's line wins
    assert by_key[(1, "pt_head")]["loss"] == pytest.approx(0.0013)
    assert by_key[(2, "Default")]["rmse_e_per_atom"] == pytest.approx(0.02)
    assert "rmse_stress" not in by_key[(2, "Default")]  # null metrics are left out, not 0
    assert epochs_run(curve) == 3
    # the mean training loss of the epoch's batches, on the target head's row; the restart's wins
    assert by_key[(0, "Default")]["train_loss"] == pytest.approx(0.045)
    assert by_key[(1, "Default")]["train_loss"] == pytest.approx(0.019)
    assert "train_loss" not in by_key[(1, "pt_head")] and "train_loss" not in by_key[(-1, "Default")]


def test_parse_results_single_head_without_head_field(tmp_path):
    entry = _eval(0, "x", 0.1, 0.2)
    del entry["head"]
    _write_results(tmp_path / "results", [entry])
    (row,) = parse_results(tmp_path / "results")
    assert row["head"] == "Default" and row["epoch"] == 0 and row["rmse_f"] == pytest.approx(0.2)


def test_no_results_means_no_epochs(tmp_path):
    assert parse_results(tmp_path / "missing") == []
    assert epochs_run([]) == 0
    _write_results(tmp_path / "results", [_eval(None, "Default", 0.1, 0.2)])
    assert epochs_run(parse_results(tmp_path / "results")) == 0  # only the initial evaluation


def test_final_model_missing_is_reported(tmp_path):
    with pytest.raises(TrainingFailed, match=r"finetuned\.model"):
        final_model(tmp_path, "finetuned")
    (tmp_path / "finetuned.model").write_bytes(b"m")
    assert final_model(tmp_path, "finetuned") == tmp_path / "finetuned.model"


def test_best_epoch_is_the_lowest_target_head_validation_loss(tmp_path):
    """MACE keeps the checkpoint of the target head's lowest loss; the replay head and the
    evaluation before training (epoch -1) do not count."""
    entries = [
        _eval(None, "Default", 0.0001, 1.0),  # before training: lowest loss, but not a checkpoint
        _eval(0, "Default", 0.0064, 1.79),
        _eval(0, "pt_head", 0.0001, 0.01),  # replay head: lower, but not what MACE selects on
        _eval(1, "Default", 0.0030, 0.90),
        _eval(2, "Default", 0.0050, 1.50),
    ]
    _write_results(tmp_path / "results", entries)
    best = best_epoch(parse_results(tmp_path / "results"))
    assert (best["epoch"], best["head"], best["rmse_f"]) == (1, "Default", pytest.approx(0.90))
    assert best_epoch([]) == {}


def _checkpoint(directory, epoch, complete=True):
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"finetuned_run-0_epoch-{epoch}.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("finetuned/data.pkl", b"x" * 1000)
    if not complete:
        path.write_bytes(path.read_bytes()[:300])  # a kill mid-write
    return path


def test_resume_point_is_the_newest_complete_checkpoint(tmp_path):
    from traincraft_assets.core.training.mace.results import latest_checkpoint_epoch

    assert latest_checkpoint_epoch(tmp_path, "finetuned") is None
    checkpoints = tmp_path / "checkpoints"
    _checkpoint(checkpoints, 2)
    _checkpoint(checkpoints, 10)
    assert latest_checkpoint_epoch(tmp_path, "finetuned") == 10
    cut = _checkpoint(checkpoints, 11, complete=False)
    assert latest_checkpoint_epoch(tmp_path, "finetuned") == 10
    assert not cut.exists() and cut.with_name(cut.name + ".partial").exists()  # MACE will not load it
    assert latest_checkpoint_epoch(tmp_path, "foundation") is None  # another run's checkpoints


def test_a_kill_while_the_next_checkpoint_is_written_resumes_from_the_previous_one(tmp_path):
    """MACE 0.3.16 by default deletes checkpoint N before writing N+1, so a kill in between left
    nothing to resume from (seen in CI). It now keeps them all (--keep_checkpoints) and the
    trainer prunes all but the newest two while it runs: the older of those is complete."""
    from traincraft_assets.core.training.mace.results import latest_checkpoint_epoch, prune_checkpoints

    checkpoints = tmp_path / "checkpoints"
    swa = checkpoints / "finetuned_run-0_epoch-1_swa.pt"
    for epoch in (1, 2, 3):  # as MACE saves them, the trainer pruning after each line
        _checkpoint(checkpoints, epoch)
        if epoch == 1:
            swa.write_bytes(b"stage two")
        prune_checkpoints(tmp_path)
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == [
        "finetuned_run-0_epoch-1_swa.pt",
        "finetuned_run-0_epoch-2.pt",
        "finetuned_run-0_epoch-3.pt",
    ]
    _checkpoint(checkpoints, 4, complete=False)  # the kill, mid-write; the pruning ran once more
    prune_checkpoints(tmp_path)
    assert latest_checkpoint_epoch(tmp_path, "finetuned") == 3
