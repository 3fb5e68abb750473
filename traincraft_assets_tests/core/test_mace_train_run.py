"""mace_train: running the training subprocess and reading MACE's results file."""

import json
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest

from traincraft_assets.core.mace_train import (
    COMMAND_ENV,
    TrainingFailed,
    epochs_run,
    final_model,
    parse_results,
    run_training,
)


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
    with pytest.raises(TrainingFailed, match="finetuned.model"):
        final_model(tmp_path)
    (tmp_path / "finetuned.model").write_bytes(b"m")
    assert final_model(tmp_path) == tmp_path / "finetuned.model"


# run_training: these tests exercise our wrapper's process handling (streaming, exit codes,
# error messages) with a small stand-in program set through TRAINCRAFT_MACE_TRAIN_COMMAND.
# They do not run MACE; real training is covered by the integration tests.


def _fake_trainer(tmp_path, body, monkeypatch):
    script = tmp_path / "fake_run_train.py"
    script.write_text(textwrap.dedent(body))
    monkeypatch.setenv(COMMAND_ENV, shlex.join([sys.executable, str(script)]))
    return script


def test_run_training_streams_lines_in_order(tmp_path, monkeypatch):
    script = _fake_trainer(
        tmp_path,
        """\
        import os, sys
        print("args:", " ".join(sys.argv[1:]), flush=True)
        print("cwd:", os.getcwd(), flush=True)
        for epoch in range(5):
            print(f"epoch {epoch} done", flush=True)
        print("warning on stderr", file=sys.stderr, flush=True)
        """,
        monkeypatch,
    )
    workdir = tmp_path / "not_yet" / "run"
    lines = []
    argv = run_training(["--name", "finetuned", "--seed", "0"], workdir, lines.append)

    assert argv == [sys.executable, str(script), "--name", "finetuned", "--seed", "0"]
    assert lines[0] == "args: --name finetuned --seed 0"
    assert lines[1] == f"cwd: {workdir}"
    assert lines[2:7] == [f"epoch {i} done" for i in range(5)]
    assert lines[7] == "warning on stderr"  # stderr is merged into the stream
    assert workdir.is_dir()


def test_run_training_passes_extra_environment(tmp_path, monkeypatch):
    _fake_trainer(tmp_path, "import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'])\n", monkeypatch)
    lines = []
    run_training([], tmp_path / "w", lines.append, env={"CUDA_VISIBLE_DEVICES": "3"})
    assert lines == ["3"]


def test_run_training_failure_reports_code_and_tail(tmp_path, monkeypatch):
    _fake_trainer(
        tmp_path,
        """\
        import sys
        for i in range(60):
            print(f"log line {i}", flush=True)
        print("RuntimeError: CUDA out of memory", file=sys.stderr, flush=True)
        sys.exit(3)
        """,
        monkeypatch,
    )
    lines = []
    with pytest.raises(TrainingFailed) as info:
        run_training(["--name", "x"], tmp_path / "w", lines.append)
    message = str(info.value)
    assert "code 3" in message
    assert "log line 59" in message and "RuntimeError: CUDA out of memory" in message
    assert "log line 0\n" not in message  # only the tail, not the whole log
    assert len(lines) == 61  # every line still reached the callback


def test_run_training_program_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv(COMMAND_ENV, str(tmp_path / "no_such_mace_run_train"))
    with pytest.raises(TrainingFailed) as info:
        run_training([], tmp_path / "w", lambda line: None)
    assert COMMAND_ENV in str(info.value)


def test_run_training_fails_when_mace_logs_a_silent_fallback(tmp_path, monkeypatch):
    """MACE 0.3.16 logs 'Pseudolabeling was not successful' and trains on the placeholders;
    the step must fail instead of publishing a model that is not pseudolabelled replay."""
    _fake_trainer(
        tmp_path,
        """\
        print("2026-11-21 INFO: Generating pseudolabels", flush=True)
        print("2026-11-21 WARNING: Pseudolabeling was not successful, continuing with original configurations", flush=True)
        print("2026-11-21 INFO: Done", flush=True)
        """,
        monkeypatch,
    )
    with pytest.raises(TrainingFailed) as info:
        run_training([], tmp_path / "w", lambda line: None)
    assert "pseudolabelling failed" in str(info.value) and "exited" not in str(info.value)


def test_interrupting_the_step_stops_the_training_process_group(tmp_path, monkeypatch):
    """A run stopped from the UI raises in the step; MACE (and any torchrun workers it
    spawned) must not keep training."""
    pid_file = tmp_path / "child.pid"
    _fake_trainer(
        tmp_path,
        f"""\
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("training started", flush=True)
        time.sleep(120)
        """,
        monkeypatch,
    )

    def stop_on_first_line(line):
        raise KeyboardInterrupt  # what Dagster's termination raises in the step

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_training([], tmp_path / "w", stop_on_first_line)
    assert time.monotonic() - started < 30
    status = Path(f"/proc/{int(pid_file.read_text())}/status")
    for _ in range(50):  # gone, or a zombie waiting for a reaper (not running either)
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        pytest.fail("the training's child process is still running")
