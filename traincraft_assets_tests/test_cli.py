"""The shell paths a user takes: `traincraft ingest` and `dagster asset materialize`, as real
subprocesses against a real on-disk instance (DAGSTER_HOME in a temp dir)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from traincraft_assets.core.demo import write_target_batches
from traincraft_assets.core.processes import descendants, process_alive
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, free_port, with_session_foundation

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shell_env(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TRAINCRAFT_STORE": str(tmp_path / "store"),
        "TRAINCRAFT_INBOX": str(tmp_path / "inbox"),
    }
    return env


def _run(args, env, cwd):
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_ingest_then_dagster_asset_materialize_whole_graph(shell_env, graph_run, tmp_path):
    batches = write_target_batches(tmp_path / "batches", frames_per_kind=4)
    ingest = _run([BIN / "traincraft", "ingest", *batches], shell_env, tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    assert sorted(p.name for p in (tmp_path / "inbox").glob("*.xyz")) == ["cu_defects.xyz", "cu_surfaces.xyz"]

    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump(with_session_foundation(graph_run, TINY_RUN_CONFIG)))  # staged by copy
    dagster = BIN / "dagster"
    first = _run(
        [
            dagster,
            "asset",
            "materialize",
            "-m",
            "traincraft_assets",
            "--select",
            "labelled_frames",
            "--partition",
            "cu_surfaces.xyz",
        ],
        shell_env,
        tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    whole = _run(
        [
            dagster,
            "asset",
            "materialize",
            "-m",
            "traincraft_assets",
            "--select",
            "not group:comparison and not group:loop and not group:spectra",
            "--partition",
            "cu_defects.xyz",
            "-c",
            run_yaml,
        ],
        shell_env,
        tmp_path,
    )
    assert whole.returncode == 0, whole.stderr[-3000:]

    os.environ["DAGSTER_HOME"], old = shell_env["DAGSTER_HOME"], os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            assert set(instance.get_dynamic_partitions("data_batches")) == {"cu_surfaces.xyz", "cu_defects.xyz"}
            dataset = instance.get_latest_materialization_event(dg.AssetKey("dataset")).asset_materialization
            assert dataset.metadata["n_frames"].value == 16  # both batches merged
            parity = instance.get_latest_materialization_event(dg.AssetKey("parity_report")).asset_materialization
            report = Path(parity.metadata["report_path"].value)
            assert report.is_file() and report.is_relative_to(tmp_path / "store")
    finally:
        if old is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = old


def test_ingest_refuses_bad_input_and_changes_nothing(shell_env, tmp_path):
    [good] = write_target_batches(tmp_path / "a", frames_per_kind=1)[:1]
    broken = tmp_path / "broken.xyz"
    broken.write_text('3\nLattice="bad\n Cu 0 0 0\n')
    result = _run([BIN / "traincraft", "ingest", good, broken], shell_env, tmp_path)
    assert result.returncode == 2
    assert "broken.xyz" in result.stderr and "ASE could not read it" in result.stderr
    assert not (tmp_path / "inbox").exists()  # the good file was not copied either

    assert _run([BIN / "traincraft", "ingest", good], shell_env, tmp_path).returncode == 0
    [other] = [p for p in write_target_batches(tmp_path / "b", frames_per_kind=1, seed=7) if p.name == good.name]
    clash = _run([BIN / "traincraft", "ingest", other], shell_env, tmp_path)
    assert clash.returncode == 2 and "Batches are immutable" in clash.stderr
    assert (tmp_path / "inbox" / good.name).read_bytes() == good.read_bytes()


def test_ingest_refuses_two_files_with_the_same_name(shell_env, tmp_path):
    [first] = write_target_batches(tmp_path / "a", frames_per_kind=1)[:1]
    [second] = [p for p in write_target_batches(tmp_path / "b", frames_per_kind=1, seed=5) if p.name == first.name]
    result = _run([BIN / "traincraft", "ingest", first, second], shell_env, tmp_path)
    assert result.returncode == 2 and first.name in result.stderr and "rename" in result.stderr
    assert not (tmp_path / "inbox").exists()


def test_retire_takes_a_batch_out_of_the_next_dataset_and_keeps_it_out(shell_env, tmp_path):
    from traincraft_assets_tests.conftest import Project

    batches = write_target_batches(tmp_path / "batches", frames_per_kind=2)
    defects = tmp_path / "batches" / "cu_defects.xyz"
    assert _run([BIN / "traincraft", "ingest", *batches], shell_env, tmp_path).returncode == 0
    with dg.DagsterInstance.from_config(shell_env["DAGSTER_HOME"]) as instance:
        project = Project(tmp_path, instance)
        for batch in ("cu_defects.xyz", "cu_surfaces.xyz"):
            project.label(batch)
        project.materialize(["dataset"])
        retired_frames = Path(project.latest("labelled_frames", "cu_defects.xyz").metadata["artifact_path"].value)

        done = _run(
            [BIN / "traincraft", "retire", "cu_defects.xyz", "--reason", "forces in kcal/mol"], shell_env, tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert instance.get_dynamic_partitions("data_batches") == ["cu_surfaces.xyz"]
        assert (tmp_path / "inbox" / ".retired" / "cu_defects.xyz").read_bytes() == defects.read_bytes()
        assert not (tmp_path / "inbox" / "cu_defects.xyz").exists()
        [observation] = instance.fetch_observations(dg.AssetKey("labelled_frames"), limit=1).records
        assert observation.asset_observation.metadata["reason"].value == "forces in kcal/mol"

        project.materialize(["dataset"])
        used = project.latest("dataset").metadata["batches"].value
        assert [b["batch"] for b in used] == ["cu_surfaces.xyz"]
        assert retired_frames.is_dir()  # what was made from it stays, with its lineage

    again = _run([BIN / "traincraft", "ingest", defects], shell_env, tmp_path)
    assert again.returncode == 2 and "was retired on" in again.stderr and "forces in kcal/mol" in again.stderr
    unknown = _run([BIN / "traincraft", "retire", "nope.xyz", "--reason", "x"], shell_env, tmp_path)
    assert unknown.returncode == 2 and "registered batches: ['cu_surfaces.xyz']" in unknown.stderr


def test_compare_refuses_an_unknown_arm_before_any_work(shell_env, tmp_path):
    result = _run([BIN / "traincraft", "compare", "--quick", "--arms", "naive,sideways"], shell_env, tmp_path)
    assert result.returncode == 2
    assert "unknown arms ['sideways']" in result.stderr and "multihead" in result.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / ".traincraft").exists()


def test_verify_rehashes_the_store_and_fails_on_a_changed_artifact_or_an_orphan(shell_env, tmp_path):
    batches = write_target_batches(tmp_path / "batches", frames_per_kind=2)
    assert _run([BIN / "traincraft", "ingest", *batches], shell_env, tmp_path).returncode == 0
    name = batches[0].name
    labelled = _run(
        [
            BIN / "dagster",
            "asset",
            "materialize",
            "-m",
            "traincraft_assets",
            "--select",
            "labelled_frames",
            "--partition",
            name,
        ],
        shell_env,
        tmp_path,
    )
    assert labelled.returncode == 0, labelled.stderr
    clean = _run([BIN / "traincraft", "verify"], shell_env, tmp_path)
    assert clean.returncode == 0 and "checked 1 artifacts" in clean.stdout and "no problem" in clean.stdout, (
        clean.stdout
    )

    [artifact] = (tmp_path / "store" / "labelled_frames").iterdir()
    (artifact / "frames.xyz").write_text((artifact / "frames.xyz").read_text().replace("Cu", "Ni", 1))
    orphan = tmp_path / "store" / "labelled_frames" / ("0" * 64)
    orphan.mkdir()
    found = _run([BIN / "traincraft", "verify"], shell_env, tmp_path)
    assert found.returncode == 1
    assert f"{artifact}: content changed since it was published" in found.stdout
    assert f"{orphan}: orphan: no materialization" in found.stdout


def _gone(pid: int, seen_at: float) -> bool:
    """Exited (a zombie waiting for a reaper counts), or its pid now belongs to a later process."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" in status.read_text() or not process_alive(pid, seen_at)
    except OSError:
        return True


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_traincraft_ui_serves_this_directory_s_instance_and_ends_whole(tmp_path, monkeypatch, stop):
    """`traincraft ui` is `dagster dev` on ./.dagster_home, configured by ./dagster.yaml: the
    instance the other verbs use. Stopped by a service manager or `kill` (SIGTERM) or by its
    closing terminal (SIGHUP), sent to the traincraft process alone, it ends the whole `dagster
    dev` tree: its webserver, daemon and code servers are gone, the port is free again, and no
    temporary Dagster home is left behind."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(TRAINCRAFT_STORE=str(tmp_path / "store"), TRAINCRAFT_INBOX=str(tmp_path / "inbox"))
    port = free_port()
    ui = subprocess.Popen(
        [BIN / "traincraft", "ui", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # as from a terminal, even when pytest itself runs under nohup (SIGHUP ignored, inherited)
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    query = json.dumps({"query": "{ instance { runLauncher { name } } }"}).encode()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", query, {"Content-Type": "application/json"}
                )
                launcher = json.load(urllib.request.urlopen(request, timeout=5))["data"]["instance"]["runLauncher"]
                break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None, "traincraft ui did not serve the UI"
                time.sleep(1)
        assert launcher["name"] == "LocalRunLauncher"  # ./dagster.yaml's, not Dagster's default
        monkeypatch.chdir(tmp_path)  # dagster.yaml's storage paths are relative to the directory
        with dg.DagsterInstance.from_config(str(tmp_path / ".dagster_home")) as instance:
            while not instance.get_daemon_heartbeats():  # the UI's daemon writes to this very instance
                assert time.monotonic() < deadline, "no daemon heartbeat in ./.dagster_home"
                time.sleep(1)
        tree, seen_at = descendants(ui.pid), time.time()
        assert len(tree) >= 3, tree  # dagster dev, its webserver and its daemon at least
        os.kill(ui.pid, stop)
        assert ui.wait(timeout=90) == 128 + stop
    finally:
        if ui.poll() is None:  # the test failed: leave nothing of it running for the next ones
            for pid in descendants(ui.pid):
                os.kill(pid, signal.SIGKILL)
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    left = [pid for pid in tree if not _gone(pid, seen_at)]
    assert not left, f"processes of dagster dev still running: {left}"
    with socket.socket() as listener:  # nothing listens on the port: a server may take it again
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (TIME_WAIT is fine)
        listener.bind(("127.0.0.1", port))
        listener.listen()
    assert not list(tmp_path.glob(".tmp_dagster_home_*"))
