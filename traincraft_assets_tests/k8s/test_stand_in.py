"""The Kubernetes stand-in itself: a call it does not implement is recorded, so the cluster
tests fail on it (test_cluster.py checks after each test) instead of passing on a bare 404; a
deleted pod leaves no process behind, as a lost node's cgroup does not."""

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from traincraft_assets_tests.k8s.cluster import Cluster, Node


def _call(url: str, method: str = "GET", body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def cluster(tmp_path):
    with Cluster(tmp_path, [Node("cpu-node")], {}, "/usr/bin:/bin", "ns") as running:
        yield running


def test_calls_the_stand_in_does_not_implement_are_recorded(cluster):
    jobs = f"{cluster.url}/apis/batch/v1/namespaces/ns/jobs"
    pods = f"{cluster.url}/api/v1/namespaces/ns/pods"
    # implemented: listing, and a read of an object that is not there (a real API's 404)
    assert _call(jobs) == 200 and _call(f"{pods}?labelSelector=job-name%3Dx") == 200
    assert _call(f"{jobs}/missing") == 404 and _call(f"{pods}/missing/log") == 404
    assert cluster.unknown_calls == []
    # not implemented: another API group, a PATCH, a POST of a pod, a collection delete, a subresource
    unknown = [
        ("GET", f"{cluster.url}/apis/apps/v1/namespaces/ns/deployments"),
        ("PATCH", f"{jobs}/some-job"),
        ("POST", pods),
        ("DELETE", jobs),
        ("GET", f"{pods}/some-pod/exec"),
    ]
    for method, url in unknown:
        assert _call(url, method, {} if method in ("PATCH", "POST") else None) in (404, 405)
    assert cluster.unknown_calls == [f"{method} {url.removeprefix(cluster.url)}" for method, url in unknown]


# A pod whose grandchild left its tree and process group: started in its own session by a child
# that then exited, so it was re-parented away. A run worker's helper could end up so. The pod's
# main process then sleeps (`sleep`) or exits at once.
ESCAPING = """
import subprocess, sys, time
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
start = f"import subprocess; print(subprocess.Popen({sleeper!r}, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
child = subprocess.run([sys.executable, "-c", start], capture_output=True, text=True, check=True)
open("grandchild", "w").write(child.stdout.strip())
time.sleep(600 if sys.argv[1] == "sleep" else 0)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pod_with_a_grandchild(cluster: Cluster, then: str) -> tuple[str, int]:
    """(the pod, its escaped grandchild's pid), once the grandchild runs."""
    container = {"name": "main", "command": [sys.executable, "-c", ESCAPING, then]}
    cluster._create_job({"metadata": {"name": then}, "spec": {"template": {"spec": {"containers": [container]}}}})
    [pod] = [r.name for r in cluster.history.values() if r.job == then]
    marker = cluster.root / "pods" / pod / "root" / "grandchild"
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pod, int(marker.read_text())


def test_a_deleted_pod_leaves_no_process_behind_even_one_outside_its_tree_and_group(cluster):
    pod, grandchild = _pod_with_a_grandchild(cluster, "sleep")
    assert _alive(grandchild)
    cluster.delete_pod(pod)
    assert not _alive(grandchild), "a process of the deleted pod survived it"
    assert [line.split()[1] for line in cluster.escaped] == [str(grandchild)]


def test_a_pod_whose_main_process_ends_takes_the_rest_of_its_processes_with_it(cluster):
    """As a container's do when its main process exits: the pod succeeded, nothing of it runs on."""
    pod, grandchild = _pod_with_a_grandchild(cluster, "exit")
    deadline = time.monotonic() + 30
    while cluster.history[pod].exit_code is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.history[pod].exit_code == 0
    assert not _alive(grandchild), "a process of the finished pod ran on"
