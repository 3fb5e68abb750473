"""run_training: our wrapper's process handling (streaming, exit codes, error messages, no
orphans) with a small stand-in program as the launch's command (what
TRAINCRAFT_MACE_TRAIN_COMMAND sets).

They do not run MACE; real training is covered by test_strategies.py.
"""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from traincraft_assets.core.settings import TRAIN_COMMAND_ENV
from traincraft_assets.core.training import Launch, TrainingFailed
from traincraft_assets.core.training.mace.command import command_prefix
from traincraft_assets.core.training.mace.process import EpochProgress, run_training


def _gone(pid: int) -> bool:
    """Exited, or a zombie waiting for a reaper (not running either)."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" in status.read_text()


def _fake_trainer(tmp_path, body) -> list[str]:
    """The command that starts a stand-in trainer running `body`, as a launch renders it."""
    script = tmp_path / "fake_run_train.py"
    script.write_text(textwrap.dedent(body))
    return command_prefix(Launch(command=(sys.executable, str(script))))


def test_run_training_streams_lines_in_order(tmp_path):
    trainer = _fake_trainer(
        tmp_path,
        """\
        import os, sys
        print("args:", " ".join(sys.argv[1:]), flush=True)
        print("cwd:", os.getcwd(), flush=True)
        for epoch in range(5):
            print(f"epoch {epoch} done", flush=True)
        print("warning on stderr", file=sys.stderr, flush=True)
        """,
    )
    workdir = tmp_path / "not_yet" / "run"
    lines = []
    argv = [*trainer, "--name", "finetuned", "--seed", "0"]
    assert argv == [sys.executable, str(tmp_path / "fake_run_train.py"), "--name", "finetuned", "--seed", "0"]
    run_training(argv, workdir, lines.append)

    assert lines[0] == "args: --name finetuned --seed 0"
    assert lines[1] == f"cwd: {workdir}"
    assert lines[2:7] == [f"epoch {i} done" for i in range(5)]
    assert lines[7] == "warning on stderr"  # stderr is merged into the stream
    assert workdir.is_dir()


def test_run_training_passes_extra_environment(tmp_path):
    trainer = _fake_trainer(tmp_path, "import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'])\n")
    lines = []
    run_training(trainer, tmp_path / "w", lines.append, env={"CUDA_VISIBLE_DEVICES": "3"})
    assert lines == ["3"]


def test_run_training_failure_reports_code_and_tail(tmp_path):
    trainer = _fake_trainer(
        tmp_path,
        """\
        import sys
        for i in range(60):
            print(f"log line {i}", flush=True)
        print("RuntimeError: CUDA out of memory", file=sys.stderr, flush=True)
        sys.exit(3)
        """,
    )
    lines = []
    with pytest.raises(TrainingFailed) as info:
        run_training([*trainer, "--name", "x"], tmp_path / "w", lines.append)
    message = str(info.value)
    assert "code 3" in message
    assert "log line 59" in message and "RuntimeError: CUDA out of memory" in message
    assert "log line 0\n" not in message  # only the tail, not the whole log
    assert len(lines) == 61  # every line still reached the callback


def test_run_training_program_not_found(tmp_path):
    with pytest.raises(TrainingFailed) as info:
        run_training([str(tmp_path / "no_such_mace_run_train")], tmp_path / "w", lambda line: None)
    assert TRAIN_COMMAND_ENV in str(info.value)


def test_run_training_fails_when_mace_logs_a_silent_fallback(tmp_path):
    """MACE 0.3.16 logs 'Pseudolabeling was not successful' and trains on the placeholders;
    the step must fail instead of publishing a model that is not pseudolabelled replay."""
    trainer = _fake_trainer(
        tmp_path,
        """\
        print("2026-11-21 INFO: Generating pseudolabels", flush=True)
        print("2026-11-21 WARNING: Pseudolabeling was not successful, continuing with original configurations", flush=True)
        print("2026-11-21 INFO: Done", flush=True)
        """,
    )
    with pytest.raises(TrainingFailed) as info:
        run_training(trainer, tmp_path / "w", lambda line: None)
    assert "pseudolabelling failed" in str(info.value) and "exited" not in str(info.value)


def test_interrupting_the_step_stops_the_training_process_group(tmp_path):
    """A run stopped from the UI raises in the step; MACE (and any torchrun workers it
    spawned) must not keep training."""
    pid_file = tmp_path / "child.pid"
    trainer = _fake_trainer(
        tmp_path,
        f"""\
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("training started", flush=True)
        time.sleep(120)
        """,
    )

    def stop_on_first_line(line):
        raise KeyboardInterrupt  # what Dagster's termination raises in the step

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_training(trainer, tmp_path / "w", stop_on_first_line)
    assert time.monotonic() - started < 30
    child = int(pid_file.read_text())
    for _ in range(50):
        if _gone(child):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the training's child process is still running")


def test_a_killed_step_takes_its_training_down(tmp_path):
    """SIGKILL of the process running the step (an OOM kill, a lost run worker) gives it no
    chance to clean up; the guard must still stop the training and everything it started."""
    pid_file = tmp_path / "pids"
    trainer = _fake_trainer(
        tmp_path,
        f"""\
        import os, subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(f"{{os.getpid()}} {{worker.pid}}")
        print("training started", flush=True)
        time.sleep(120)
        """,
    )
    step = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from traincraft_assets.core.training.mace.process import run_training; "
            "run_training(sys.argv[2:], sys.argv[1], print)",
            str(tmp_path / "w"),
            *trainer,
        ],
    )
    for _ in range(600):
        if pid_file.exists() and len(pid_file.read_text().split()) == 2:
            break
        time.sleep(0.1)
    else:
        step.kill()
        pytest.fail("the stand-in training never started")
    trainer, worker = (int(p) for p in pid_file.read_text().split())
    step.kill()
    step.wait()
    for _ in range(100):
        if _gone(trainer) and _gone(worker):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"training processes survived their step: {[p for p in (trainer, worker) if not _gone(p)]}")


def _evaluation(epoch, head="Default", loss=0.0123, e=12.34, f=45.67) -> str:
    """A line as MACE 0.3.16 logs it (tools/train.py, valid_err_log)."""
    phrase = "Initial" if epoch is None else f"Epoch {epoch}"
    return (
        f"2026-12-03 11:50:01.123 INFO: {phrase}: head: {head}, loss={loss:8.8f}, "
        f"RMSE_E_per_atom={e:8.2f} meV, RMSE_F={f:8.2f} meV / A"
    )


def test_each_epoch_gets_one_progress_line_with_an_eta_from_this_processs_own_rate():
    """MACE logs no i/N and no ETA; the run log gets one line per epoch with both."""
    now = [100.0]
    progress = EpochProgress(10, clock=lambda: now[0])
    now[0] = 130.0  # MACE's start-up (imports, statistics) does not count
    assert progress(_evaluation(None)) is None
    assert progress("2026-12-03 INFO: Started training, reporting errors on validation set") is None
    now[0] = 150.0  # a resumed training: its first epoch here is epoch 4
    assert progress(_evaluation(4, "pt_head")) is None  # a multihead run's replay head
    assert progress(_evaluation(4, "Default")) == (
        "epoch 5/10 (Default: loss 0.0123, RMSE_E 12.3 meV/atom, RMSE_F 45.7 meV/Å); 0:20 elapsed, about 1:40 left"
    )
    assert progress(_evaluation(4, "Default")) is None  # a line repeated
    now[0] = 170.0
    line = progress(_evaluation(5))
    assert line.startswith("epoch 6/10 (Default:") and line.endswith("0:40 elapsed, about 1:20 left")
    now[0] = 250.0
    assert progress(_evaluation(9)).endswith("2:00 elapsed, about 0:00 left")
