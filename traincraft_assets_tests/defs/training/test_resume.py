"""The finetuned_model step killed with SIGKILL mid-training, then run again.

Stands in for a lost node or an OOM-killed run worker: the step's process gets no chance to
clean up. Real parts: a Dagster run of `finetuned_model` in its own process on a real on-disk
instance configured like the repository's dagster.yaml, a real `dagster-daemon` doing run
monitoring, real MACE training, a real SIGKILL. What must hold: no MACE process survives its
step, run monitoring marks the dead run failed instead of leaving it STARTED, and the next run
of the same training resumes from MACE's checkpoint instead of epoch 0.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from traincraft_assets.app import demo
from traincraft_assets.core.training.mace.results import _complete
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, Project, running_daemon, with_session_foundation

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration

EPOCHS = 30  # tiny epochs take a fraction of a second: enough of them to kill the step mid-way
FINETUNE = {
    "ops": {
        "finetuned_model": {
            "config": {**TINY_RUN_CONFIG["ops"]["finetuned_model"]["config"], "max_num_epochs": EPOCHS}
        },
        "quality_gates": TINY_RUN_CONFIG["ops"]["quality_gates"],  # finetuned_model's checks run with it
    }
}

STEP = textwrap.dedent(
    """\
    import json, sys
    import dagster as dg
    from traincraft_assets.defs.definitions import build_defs
    from traincraft_assets.defs.instance import open_instance
    from traincraft_assets.defs.resources import InboxResource, StoreResource

    home, store, inbox, config = sys.argv[1:5]
    defs = build_defs(resources={"store": StoreResource(root=store), "inbox": InboxResource(path=inbox)})
    with open_instance(home) as instance:
        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("finetuned_model")], run_config=json.loads(config)
        )
    """
)


def _mace_processes(marker: str) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = status.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mace.cli.run_train" in cmdline and marker in cmdline:
            found.append(int(status.parent.name))
    return found


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, graph_run):
    """The repository's dagster.yaml (its launcher and run monitoring) on a fresh home, polling
    every second instead of every 30 s, declarative automation off, with a real daemon; the
    demo's upstream made once for the module's tests."""
    tmp_path = tmp_path_factory.mktemp("resume")
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["storage"]["sqlite"]["base_dir"] = str(home / "storage")
    config["compute_logs"]["config"]["base_dir"] = str(home / "compute_logs")
    config["local_artifact_storage"]["config"]["base_dir"] = str(home)
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["auto_materialize"] = {"enabled": False, "use_sensors": False}  # no champion runs meanwhile
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        project = Project(tmp_path, instance)
        config = with_session_foundation(graph_run, TINY_RUN_CONFIG)
        demo.prepare(instance, project.defs, config, tmp_path / "batches", project.inbox, frames_per_kind=4)
        upstream = {"ops": {k: TINY_RUN_CONFIG["ops"][k] for k in ("split", "replay_subset")}}
        project.materialize(["dataset", "split", "replay_subset"], upstream)
        yield (
            project,
            lambda: running_daemon({"DAGSTER_HOME": str(home), "TRAINCRAFT_STORE": str(project.store)}, tmp_path),
        )


def _training_step_in_its_own_process(project: Project, finetune: dict) -> tuple[subprocess.Popen, Path]:
    """finetuned_model running in another process: returned, with its work directory, once MACE
    has written a checkpoint of epoch 1."""
    import json

    before = set((project.store / ".training").glob("*"))
    step = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STEP,
            project.instance.root_directory,
            str(project.store),
            str(project.inbox),
            json.dumps(finetune),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    work = project.store / ".training"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        # complete checkpoints only: one still being written when the step is killed is set aside
        epochs = [
            int(p.stem.rsplit("-", 1)[1])
            for d in set(work.glob("*")) - before
            for p in d.glob("checkpoints/*_epoch-*.pt")
            if _complete(p)
        ]
        if epochs and max(epochs) >= 1:
            break
        assert step.poll() is None, "the step ended before it could be stopped"
        time.sleep(0.2)
    else:
        step.kill()
        pytest.fail("no checkpoint of epoch 1 appeared")
    assert step.poll() is None, "the training finished before it could be stopped"
    [workdir] = set(work.glob("*")) - before
    return step, workdir


def _no_mace_survives(work: Path) -> None:
    for _ in range(100):
        if not _mace_processes(str(work)):
            return
        time.sleep(0.1)
    pytest.fail(f"MACE outlived its stopped step: pids {_mace_processes(str(work))}")


def test_a_step_killed_mid_training_leaves_no_mace_is_marked_failed_and_the_rerun_resumes(prepared):
    import json

    project, daemon = prepared
    step, workdir = _training_step_in_its_own_process(project, FINETUNE)
    os.kill(step.pid, signal.SIGKILL)
    step.wait()
    _no_mace_survives(workdir)

    [killed] = project.instance.get_runs(limit=1)  # the newest: the killed one
    with daemon():  # only while needed: the rerun below runs in this process, no daemon about
        deadline = time.monotonic() + 120  # the daemon's first monitoring pass follows its start-up
        while project.instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.STARTED:
            assert time.monotonic() < deadline, "run monitoring left the killed run STARTED"
            time.sleep(1)
    assert project.instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    failure = project.instance.get_records_for_run(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert f"(pid {step.pid}) is gone" in failure[0].event_log_entry.dagster_event.message

    project.materialize(["finetuned_model"], FINETUNE)
    meta = project.latest("finetuned_model").metadata
    manifest = json.loads(Path(meta["manifest_path"].value).read_text())
    assert manifest["resumed_from_epoch"] is not None and manifest["resumed_from_epoch"] >= 1
    assert meta["resumed_from_epoch"].value == manifest["resumed_from_epoch"]
    assert "--restart_latest" in manifest["argv"] and manifest["epochs_run"] == EPOCHS
    assert not workdir.exists()  # released once published


def test_ctrl_c_during_training_stops_mace_and_ends_the_run_canceled(prepared):
    """Ctrl-C in the shell running `dagster asset materialize` (SIGINT to its process)."""
    project, _ = prepared
    other_seed = {
        "ops": {
            **FINETUNE["ops"],
            "finetuned_model": {"config": {**FINETUNE["ops"]["finetuned_model"]["config"], "seed": 1}},
        }
    }
    step, workdir = _training_step_in_its_own_process(project, other_seed)
    models = project.store / "finetuned_model"
    models_before = set(models.iterdir()) if models.exists() else set()
    os.kill(step.pid, signal.SIGINT)
    step.wait(timeout=120)
    _no_mace_survives(workdir)
    [stopped] = project.instance.get_runs(limit=1)
    assert project.instance.get_run_by_id(stopped.run_id).status == dg.DagsterRunStatus.CANCELED
    assert (set(models.iterdir()) if models.exists() else set()) == models_before  # nothing partial published
    assert (workdir / "checkpoints").is_dir()  # kept: the same training started again resumes
