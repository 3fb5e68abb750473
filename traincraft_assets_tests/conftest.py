"""Shared fixtures: one real, tiny run of the whole graph on a throwaway Dagster instance.

Everything is real: EMT-labelled frames, MACE training (tiny models, 2 epochs, CPU), Dagster
runs on a sqlite instance. The session-wide graph run (`graph_run`) is for tests that only read
it, and it checks that they did; a test that runs anything on it takes `graph_copy` instead (or
`copied_project` for a module's own copy), so what a test sees never depends on which test
file ran before it on its worker.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from traincraft_assets.app import demo
from traincraft_assets.app.batches import ingest
from traincraft_assets.core.settings import DATA_ROOTS_ENV
from traincraft_assets.defs.definitions import build_defs
from traincraft_assets.defs.resources import InboxResource, StoreResource

# The suite's time is mostly one core at a time (process start-up, MACE's 9 s import, Dagster's
# orchestration), so two pytest workers share the two cores. One torch thread per process: tiny
# models train no faster on two (measured), and two workers' thread pools would fight.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Files that take minutes, longest first (measured on 2 cores): the workers take them before the
# many short files, so neither is left with a long file at the end. The rest keep their order.
LONGEST_FIRST = (
    "k8s/test_cluster.py",
    "core/training/mace/test_strategies.py",
    "test_cli.py",
    "core/test_fidelity.py",
    "core/test_spectra_example.py",
    "defs/training/test_resume.py",
    "defs/deploy/test_champion.py",
    "defs/loop/test_loop.py",
    "defs/loop/test_explore.py",
    "defs/test_ui.py",
    "defs/comparison/test_compare.py",
    "defs/automation/test_retrain_trigger.py",
    "demo/test_make_foundation.py",
    "test_submit.py",
    "defs/test_graph.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    tests = Path(__file__).parent

    def position(item):
        return rank.get(Path(item.path).relative_to(tests).as_posix(), len(rank))

    items.sort(key=position)  # stable: a file's tests keep their order


# Tiny but real: a 21-frame foundation pool, 16 target frames, 2-epoch trainings.
TINY_RUN_CONFIG = {
    "ops": {
        "pretraining_frames": {"config": {"source": "demo", "demo_frames_per_metal": 4}},
        "foundation_model": {
            "config": {
                "source": "scratch",
                "dtype": "float32",
                "max_num_epochs": 2,
                "num_channels": 8,
                "max_L": 0,
                "r_max": 4.0,
                "batch_size": 4,
            }
        },
        "split": {"config": {"valid_fraction": 0.25}},
        "replay_subset": {"config": {"num_samples": 3, "subselect": "fps", "num_heldout": 1}},
        "finetuned_model": {
            "config": {
                "strategy": "multihead",
                "dtype": "float32",
                "lr": 0.01,
                "max_num_epochs": 2,
                "batch_size": 4,
            }
        },
        # a short MD stability gate: its 3 x 200 default steps take longer than the tiny training
        "quality_gates": {"config": {"md_steps": 40, "md_structures": 2}},
    }
}


@pytest.fixture(scope="session", autouse=True)
def data_roots(tmp_path_factory):
    """Tests write their input files under pytest's temporary directory: it stands for the
    user's data directory (TRAINCRAFT_DATA_ROOTS), next to the working directory."""
    patch = pytest.MonkeyPatch()
    patch.setenv(DATA_ROOTS_ENV, os.pathsep.join([str(tmp_path_factory.getbasetemp()), os.getcwd()]))
    yield
    patch.undo()


class Project:
    """A project directory with its own store, inbox and Dagster instance."""

    def __init__(self, root: Path, instance: dg.DagsterInstance):
        self.root = root
        self.instance = instance
        self.store = root / "store"
        self.inbox = root / "inbox"
        self.defs = build_defs(
            resources={"store": StoreResource(root=str(self.store)), "inbox": InboxResource(path=str(self.inbox))}
        )

    def add_batch(self, path: Path) -> str:
        """Place a batch file in the inbox and register its partition (`traincraft ingest`)."""
        return ingest(self.instance, self.inbox, [path])[0].name

    def label(self, batch: str, run_config: dict | None = None, raise_on_error: bool = True):
        return self.defs.resolve_job_def("label_batch").execute_in_process(
            instance=self.instance, partition_key=batch, run_config=run_config or {}, raise_on_error=raise_on_error
        )

    def materialize(self, assets: list[str], run_config: dict | None = None, raise_on_error: bool = True):
        """One run of the given unpartitioned assets (and their checks)."""
        return self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey(a) for a in assets],
            run_config=run_config or {},
            raise_on_error=raise_on_error,
        )

    def latest(self, asset: str, partition: str | None = None) -> dg.AssetMaterialization:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
            limit=1,
        ).records
        return records[0].asset_materialization if records else None


def _instance(root: Path):
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    return dg.instance_for_test(temp_dir=str(home))


@pytest.fixture
def project(tmp_path):
    with _instance(tmp_path) as instance:
        yield Project(tmp_path, instance)


def _state(project: Project) -> dict:
    """What a test could change in a project: its runs, its batches, its store's artifacts."""
    return {
        "runs": {
            record.dagster_run.run_id: record.dagster_run.job_name for record in project.instance.get_run_records()
        },
        "batches": sorted(project.instance.get_dynamic_partitions("data_batches")),
        "artifacts": sorted(str(p.relative_to(project.store)) for p in project.store.glob("*/*")),
    }


@pytest.fixture(scope="session")
def graph_run(tmp_path_factory):
    """The whole graph materialized once by `traincraft demo`'s own code, with tiny settings.
    Read-only: a test that ran anything on it, registered a batch or wrote to its store fails
    the session at teardown, saying what changed."""
    root = tmp_path_factory.mktemp("graph")
    with _instance(root) as instance:
        project = Project(root, instance)
        demo.run(instance, project.defs, TINY_RUN_CONFIG, root / "batches", project.inbox, frames_per_kind=4, say=print)
        made = _state(project)
        yield project
        now = _state(project)
        changed = {what: {"made": made[what], "now": now[what]} for what in made if now[what] != made[what]}
        assert not changed, (
            f"graph_run is shared and read-only, but a test changed it: {changed}. "
            "A test that runs anything takes `graph_copy` (or `copied_project`) instead."
        )


@contextlib.contextmanager
def copied_project(source: Project, root: Path):
    """A project of its own at `root`: the files of `source` (store, inbox, Dagster home) copied,
    its own instance on the copy, with every run and materialization `source` had."""
    shutil.copytree(source.root, root, dirs_exist_ok=True)
    with _instance(root) as instance:
        yield Project(root, instance)


@pytest.fixture
def graph_copy(graph_run, tmp_path):
    """The session's graph run, copied for a test that writes to it."""
    with copied_project(graph_run, tmp_path / "graph") as project:
        yield project


def with_session_foundation(graph_run: Project, run_config: dict) -> dict:
    """`run_config` with foundation_model copying the session's tiny foundation (`source: path`)
    instead of training another: for tests of what comes after the foundation."""
    model = graph_run.latest("foundation_model").metadata["model_path"].value
    return {
        **run_config,
        "ops": {**run_config.get("ops", {}), "foundation_model": {"config": {"source": "path", "path": str(model)}}},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_daemon(env: dict, cwd: Path):
    """A real `dagster-daemon run` for `-m traincraft_assets` (sensors, run monitoring, retries),
    its log in `cwd`/dagster-daemon.log for a failing test to show."""
    with open(Path(cwd) / "dagster-daemon.log", "ab") as log:
        daemon = subprocess.Popen(
            [Path(sys.executable).parent / "dagster-daemon", "run", "-m", "traincraft_assets"],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield daemon
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


@contextlib.contextmanager
def running_webserver(env: dict, cwd: Path | None = None):
    """A real dagster-webserver for `-m traincraft_assets` on a free local port; yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            Path(sys.executable).parent / "dagster-webserver",
            "-m",
            "traincraft_assets",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("dagster-webserver did not start within 60 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
