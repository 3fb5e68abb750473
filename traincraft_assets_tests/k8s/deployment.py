"""The project deployed on the Kubernetes stand-in, as k8s/ deploys it on a cluster: a real
PostgreSQL (pgserver's wheel) holding the instance (k8s/dagster.yaml), the pod profiles
ConfigMap, the image's environment (k8s/Dockerfile), a real dagster-daemon and dagster-webserver,
and `traincraft submit` as a user types it. Used by test_cluster.py and by bench row 12."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml

from traincraft_assets.core.artifacts import FinetunedModel
from traincraft_assets.core.store import ArtifactStore
from traincraft_assets_tests.conftest import running_daemon, running_webserver
from traincraft_assets_tests.k8s.cluster import NVIDIA_GPU, Cluster, Node, image_env

K8S = Path(__file__).resolve().parents[2] / "k8s"
NAMESPACE = "traincraft"


def manifest(name: str) -> dict:
    return yaml.safe_load((K8S / "manifests" / name).read_text())


def instance_yaml(postgres_url: str, kubeconfig: Path) -> str:
    """k8s/dagster.yaml with what the stand-in needs: the test's PostgreSQL, the stand-in's
    API (instead of the in-cluster service account), runs launched at once (the queue is the
    daemon's; the webserver launches here), run monitoring every second instead of every
    minute (and a minute, not 15, for a run pod to start), automation off, and no instance
    limit on the pools (a test sets the one it checks), so that the cluster's GPU capacity does
    the queueing."""
    config = yaml.safe_load((K8S / "dagster.yaml").read_text())
    config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    launcher = config["run_launcher"]["config"]
    launcher.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig), job_image="traincraft:standin")
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    del config["concurrency"]["pools"]
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["run_monitoring"]["start_timeout_seconds"] = 60  # a run pod that never starts fails the test fast
    # declarative automation off: its runs (champion_model) would compete for the one GPU here
    config["auto_materialize"] = {"enabled": False, "use_sensors": False}
    return yaml.safe_dump(config)


@dataclass
class Deployment:
    """What a test or bench holds of the deployment: the cluster, the instance (this process's
    view of its PostgreSQL), the store volume, the webserver's URL and the users' env."""

    cluster: Cluster
    instance: dg.DagsterInstance
    root: Path
    store: Path
    url: str
    env: dict

    def submit(self, *args: str, config: dict) -> subprocess.Popen:
        """`traincraft submit` as a user types it."""
        path = Path(tempfile.mkstemp(suffix=".yaml", dir=self.root)[1])
        path.write_text(yaml.safe_dump(config))
        argv = [Path(sys.executable).parent / "traincraft", "submit", "--url", self.url, "-c", str(path), *args]
        return subprocess.Popen(
            argv, env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def model(self, materialization) -> FinetunedModel:
        """The model artifact a materialization names, on the store volume."""
        return ArtifactStore(self.store).open(FinetunedModel, materialization.tags["dagster/data_version"])

    def step_jobs(self, run_id: str) -> dict[str, list[dict]]:
        """The step Jobs the API received for a run, by step key, in order of creation."""
        jobs: dict[str, list[dict]] = {}
        for job in self.cluster.received_jobs:
            labels = job["metadata"].get("labels") or {}
            if labels.get("dagster/run-id") == run_id and "dagster/op" in labels:
                jobs.setdefault(labels["dagster/op"], []).append(job)
        return jobs

    @staticmethod
    def run_id(output: str) -> str:
        """The run `traincraft submit` launched, from the run's URL it prints."""
        return next(line for line in output.splitlines() if "/runs/" in line).rsplit("/", 1)[1].strip()

    def daemon_log(self, lines: int = 80) -> str:
        """The end of the daemon's log (run monitoring says there what it saw and did)."""
        path = self.root / "dagster-daemon.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextlib.contextmanager
def deployed(root: Path, prepare: Callable[[dg.DagsterInstance, Path], None] | None = None) -> Iterator[Deployment]:
    """The deployment in `root`, on a stand-in cluster of a CPU node and a tainted one-GPU node.
    `prepare(instance, store)` runs before the daemon and webserver start: upstream data made
    in this process against the same instance and store volume."""
    import pgserver

    pgdata = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # short: PostgreSQL's socket lives here
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    nodes = [
        Node("cpu-node"),
        Node(
            "gpu-node",
            gpus=1,
            labels={"nvidia.com/gpu.present": "true"},
            taints=[{"key": NVIDIA_GPU, "value": "present", "effect": "NoSchedule"}],
        ),
    ]
    exec_path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"  # the "image": this venv
    try:
        with Cluster(root, nodes, image_env(K8S / "Dockerfile"), exec_path, NAMESPACE) as cluster:
            home = root / "dagster_home"
            home.mkdir()
            # the driver k8s/dagster.yaml names (`scheme`): SQLAlchemy 2.1 would pick psycopg 3
            config = instance_yaml(
                server.get_uri().replace("postgresql://", "postgresql+psycopg2://"), cluster.kubeconfig
            )
            (home / "dagster.yaml").write_text(config)
            cluster.apply(
                {
                    "kind": "ConfigMap",
                    "metadata": {"name": "traincraft-dagster-instance"},
                    "data": {"dagster.yaml": config},
                }
            )
            cluster.apply(
                {
                    "kind": "Secret",
                    "metadata": {"name": "traincraft-postgresql"},
                    "stringData": {"DAGSTER_PG_PASSWORD": "unused"},
                }
            )
            profiles = manifest("pod-profiles.yaml")
            # a retried step waits a second here instead of the profile's minute
            text = yaml.safe_load(profiles["data"]["pod-profiles.yaml"])
            text["gpu"]["retry_delay_s"] = text["label"]["retry_delay_s"] = 1
            profiles["data"]["pod-profiles.yaml"] = yaml.safe_dump(text)
            cluster.apply(profiles)
            store = cluster.pvc("traincraft-store")
            with dg.DagsterInstance.from_config(str(home)) as instance:
                if prepare is not None:
                    prepare(instance, store)
                # The webserver sees what the chart's webserver and user deployment would see.
                profiles_path = root / "pod-profiles.yaml"
                profiles_path.write_text(profiles["data"]["pod-profiles.yaml"])
                env = {
                    **{k: v for k, v in image_env(K8S / "Dockerfile").items() if k.startswith("TRAINCRAFT_")},
                    "DAGSTER_HOME": str(home),
                    "TRAINCRAFT_STORE": str(store),
                    "TRAINCRAFT_INBOX": str(store / "inbox"),
                    "TRAINCRAFT_POD_PROFILES": str(profiles_path),
                }
                with running_daemon(env, cwd=root), running_webserver(env, cwd=root) as url:
                    yield Deployment(cluster, instance, root, store, url, env)
    finally:
        server.cleanup()
