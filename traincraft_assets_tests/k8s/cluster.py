"""A small Kubernetes cluster stand-in: the API server endpoints dagster-k8s calls, a scheduler
and a kubelet that runs each pod's container as a local subprocess.

What it stands in for: a namespace on a real cluster with a CPU node and a tainted NVIDIA GPU
node, as seen by dagster-k8s's `K8sRunLauncher` and `k8s_job_executor` through the official
`kubernetes` Python client (pointed here by a kubeconfig). It is faithful where our code and
dagster-k8s's depend on it, and simple elsewhere:

- API: batch/v1 Jobs (create, read, read status, list, delete) and core/v1 Pods (read, list,
  delete, log) and Events (list), with `labelSelector` / `fieldSelector` equality filters.
  Every Job body is kept as received, so tests assert on what the API was sent. Any other call
  is recorded in `unknown_calls` (and answered 404/405): a new call from dagster-k8s fails the
  test that made it, where a bare 404 could pass unnoticed.
- Job controller: one pod per Job (dagster-k8s sets backoffLimit 0); a pod that fails or is
  deleted fails its Job, as on Kubernetes 1.26+.
- Scheduler: a pod goes to the first node whose labels match its nodeSelector, whose NoSchedule
  taints it tolerates, and whose free `nvidia.com/gpu` covers its request; otherwise it stays
  Pending with reason Unschedulable (and an event saying so) until a GPU frees.
- Kubelet: the "image" is the Python environment running the tests plus the image's ENV; the
  container's command runs as a subprocess with the pod's env (value, fieldRef, envFrom of
  ConfigMaps and Secrets). Volumes (PVC, ConfigMap, Secret, emptyDir) are directories under the
  pod's root directory, linked at their mountPath inside it; an env value that is a path on a
  mount is rewritten to the pod's root, the way a container sees its mounts. There is no
  container isolation: security contexts, resource limits and a read-only root filesystem are
  recorded, not enforced. Deleting a pod SIGKILLs every process of it, like a lost node: each
  pod's processes carry its name in their environment (STAND_IN_POD), what a container's cgroup
  is on a node, so a process that left the pod's tree or process group dies with it too (and is
  recorded in `escaped`, for a test to say so). When a pod's main process ends, what is left of
  the pod is killed, as a container's processes are when its main process exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from traincraft_assets.core.processes import descendants

NVIDIA_GPU = "nvidia.com/gpu"
POD_MARKER = "STAND_IN_POD"  # in each pod process's environment: the pod it belongs to


def pod_processes(name: str) -> set[int]:
    """The live processes of pod `name` on this host, whoever their parent or process group:
    those whose environment carries its marker (a container's cgroup, here)."""
    marker = f"{POD_MARKER}={name}".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker in environ.read_bytes().split(b"\0"):
                found.add(int(environ.parent.name))
    return found


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Node:
    name: str
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict] = field(default_factory=list)  # {key, value?, effect}


@dataclass
class PodRecord:
    """What happened to one pod, for tests to read."""

    name: str
    job: str
    gpus: int
    node: str | None = None
    unschedulable: str | None = None  # the scheduler's last reason while Pending
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    deleted: bool = False


def _selector_matches(selector: str | None, values: dict) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, want = term.split("!=", 1)
            if values.get(key.strip()) == want.strip():
                return False
        else:
            key, want = re.split(r"==?", term, maxsplit=1)
            if values.get(key.strip()) != want.strip():
                return False
    return True


def _fields(obj: dict) -> dict:
    meta = obj.get("metadata", {})
    involved = obj.get("involvedObject", {})
    return {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "involvedObject.name": involved.get("name"),
        "involvedObject.kind": involved.get("kind"),
        "status.phase": obj.get("status", {}).get("phase"),
    }


def _tolerates(pod_spec: dict, taint: dict) -> bool:
    for tol in pod_spec.get("tolerations") or []:
        if tol.get("effect") not in (None, "", taint.get("effect")):
            continue
        if tol.get("operator") == "Exists" and tol.get("key") in (None, "", taint["key"]):
            return True
        if tol.get("key") == taint["key"] and tol.get("value") == taint.get("value"):
            return True
    return False


def _gpu_request(pod_spec: dict) -> int:
    total = 0
    for container in pod_spec.get("containers", []):
        res = container.get("resources") or {}
        total += int((res.get("limits") or {}).get(NVIDIA_GPU) or (res.get("requests") or {}).get(NVIDIA_GPU) or 0)
    return total


class Cluster:
    """The stand-in. `with Cluster(root, nodes, image_env, exec_path) as cluster:` serves on a free local
    port; `cluster.kubeconfig` is a kubeconfig file for it."""

    def __init__(
        self, root: Path, nodes: list[Node], image_env: dict[str, str], exec_path: str, namespace: str = "default"
    ):
        self.root = Path(root)
        self.nodes = nodes
        self.image_env = image_env  # the image's ENV, as the container sees paths
        self.exec_path = exec_path  # PATH on this host, where the image's programs are
        self.namespace = namespace
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.events: list[dict] = []
        self.config_maps: dict[str, dict[str, str]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.received_jobs: list[dict] = []  # every Job body as the API received it
        # Processes of a deleted pod found outside its process tree and group ("pod: pid cmdline"):
        # killed with it, as its cgroup would be, and recorded so that a test can show them.
        self.escaped: list[str] = []
        # Calls the stand-in does not implement ("METHOD path"): a real API server would answer
        # them, so a test whose code made one fails instead of passing on a bare 404/405.
        self.unknown_calls: list[str] = []
        self.history: dict[str, PodRecord] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.kubeconfig = self.root / "kubeconfig"

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
                    "users": [{"name": "standin", "user": {"token": "standin"}}],
                    "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
                    "current-context": "standin",
                }
            )
        )
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._kubelet, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._server.shutdown()
        with self._lock:
            for name in list(self._procs):
                self._kill(name)

    # -- what a test does with kubectl -----------------------------------------------------
    def apply(self, manifest: dict) -> None:
        """Create a ConfigMap or Secret (what `kubectl apply` would)."""
        name = manifest["metadata"]["name"]
        if manifest["kind"] == "ConfigMap":
            self.config_maps[name] = dict(manifest.get("data") or {})
        elif manifest["kind"] == "Secret":
            self.secrets[name] = dict(manifest.get("stringData") or {})
        else:
            raise ValueError(f"the stand-in applies ConfigMaps and Secrets, not {manifest['kind']}")

    def pvc(self, claim: str) -> Path:
        """The directory backing PersistentVolumeClaim `claim` (ReadWriteMany: shared by pods)."""
        path = self.root / "volumes" / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def delete_pod(self, name: str) -> None:
        """`kubectl delete pod --grace-period=0 --force`, or the node under it going away."""
        with self._lock:
            self._kill(name)
            self.history[name].deleted = True
            pod = self.pods.pop(name, None)
            if pod is not None:
                self._fail_job(pod["metadata"]["labels"]["job-name"], "pod deleted")

    def running_pods(self, job_prefix: str = "") -> list[str]:
        with self._lock:
            return [n for n, p in self.pods.items() if p["status"]["phase"] == "Running" and n.startswith(job_prefix)]

    def log(self, pod: str) -> str:
        path = self.root / "pods" / pod / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- controller, scheduler, kubelet ----------------------------------------------------
    def _create_job(self, body: dict) -> dict:
        name = body["metadata"]["name"]
        with self._lock:
            if name in self.jobs:
                return None
            self.received_jobs.append(json.loads(json.dumps(body)))
            uid = str(uuid.uuid4())
            job = {**body, "apiVersion": "batch/v1", "kind": "Job"}
            job["metadata"] = {**body["metadata"], "namespace": self.namespace, "uid": uid, "creationTimestamp": _now()}
            job["status"] = {"active": 1, "startTime": _now()}
            self.jobs[name] = job
            template = body["spec"]["template"]
            pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
            labels = {**(template.get("metadata", {}).get("labels") or {}), "job-name": name, "controller-uid": uid}
            self.pods[pod_name] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    **(template.get("metadata") or {}),
                    "name": pod_name,
                    "namespace": self.namespace,
                    "labels": labels,
                    "uid": str(uuid.uuid4()),
                    "ownerReferences": [
                        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": True}
                    ],
                },
                "spec": template["spec"],
                "status": {"phase": "Pending"},
            }
            self.history[pod_name] = PodRecord(pod_name, name, _gpu_request(template["spec"]))
            return job

    def _fail_job(self, job_name: str, why: str) -> None:
        job = self.jobs.get(job_name)
        if job is None:
            return
        job["status"] = {
            **job["status"],
            "active": 0,
            "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": why}],
        }

    def _free_gpus(self, node: Node) -> int:
        used = sum(
            r.gpus
            for r in self.history.values()
            if r.node == node.name and r.started and r.finished is None and not r.deleted
        )
        return node.gpus - used

    def _schedule(self, name: str, pod: dict) -> Node | None:
        spec = pod["spec"]
        record = self.history[name]
        reasons = []
        for node in self.nodes:
            if not _selector_matches(
                ",".join(f"{k}={v}" for k, v in (spec.get("nodeSelector") or {}).items()), node.labels
            ):
                reasons.append("didn't match Pod's node affinity/selector")
            elif any(t.get("effect") == "NoSchedule" and not _tolerates(spec, t) for t in node.taints):
                reasons.append("had untolerated taint")
            elif record.gpus > self._free_gpus(node):
                reasons.append(f"Insufficient {NVIDIA_GPU}")
            else:
                return node
        record.unschedulable = f"0/{len(self.nodes)} nodes are available: " + ", ".join(reasons) + "."
        pod["status"] = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": record.unschedulable}
            ],
        }
        if not any(e["involvedObject"]["name"] == name and e["message"] == record.unschedulable for e in self.events):
            self._event(name, "Warning", "FailedScheduling", record.unschedulable)
        return None

    def _event(self, pod: str, kind: str, reason: str, message: str) -> None:
        self.events.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{pod}.{len(self.events)}", "namespace": self.namespace},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": self.namespace},
                "type": kind,
                "reason": reason,
                "message": message,
                "lastTimestamp": _now(),
            }
        )

    def _volume_dir(self, pod_dir: Path, volume: dict) -> Path:
        if "persistentVolumeClaim" in volume:
            return self.pvc(volume["persistentVolumeClaim"]["claimName"])
        path = pod_dir / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        for kind, store in (("configMap", self.config_maps), ("secret", self.secrets)):
            if kind in volume:
                source = volume[kind].get("name") or volume[kind].get("secretName")
                for key, value in store[source].items():
                    (path / key).write_text(value)
        return path

    def _start(self, name: str, pod: dict, node: Node) -> None:
        spec = pod["spec"]
        [container] = spec["containers"]
        pod_dir = self.root / "pods" / name
        root = pod_dir / "root"
        root.mkdir(parents=True)
        volumes = {v["name"]: self._volume_dir(pod_dir, v) for v in spec.get("volumes") or []}
        mounts = []
        for mount in container.get("volumeMounts") or []:
            source = volumes[mount["name"]] / mount.get("subPath", "")
            target = root / mount["mountPath"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
            mounts.append(mount["mountPath"].rstrip("/"))
        env = dict(self.image_env)
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                env.update(self.config_maps[source["configMapRef"]["name"]])
            if "secretRef" in source:
                env.update(self.secrets[source["secretRef"]["name"]])
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = var["value"]
            elif "fieldRef" in var.get("valueFrom", {}):
                path = var["valueFrom"]["fieldRef"]["fieldPath"]
                env[var["name"]] = {"metadata.name": name, "metadata.namespace": self.namespace}.get(path, "")
        for key, value in env.items():  # the container sees its mounts at mountPath
            if value.startswith("/") and any(
                value == m or value.startswith(m + "/") or m.startswith(value + "/") for m in mounts
            ):
                env[key] = str(root / value.lstrip("/"))
        env["PATH"] = self.exec_path  # a host path: never rewritten
        env[POD_MARKER] = name
        if "OMP_NUM_THREADS" in os.environ:  # no cgroup here: every node is this host, with the host's threads at most
            host = int(os.environ["OMP_NUM_THREADS"])
            env["OMP_NUM_THREADS"] = str(min(host, int(env.get("OMP_NUM_THREADS", host))))
        argv = (container.get("command") or []) + (container.get("args") or [])
        with open(pod_dir / "log", "wb") as log:  # the pod's process keeps its own descriptor
            self._procs[name] = subprocess.Popen(
                argv, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        record = self.history[name]
        record.node, record.started, record.unschedulable = node.name, time.monotonic(), None
        pod["spec"] = {**spec, "nodeName": node.name}
        pod["status"] = {
            "phase": "Running",
            "startTime": _now(),
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": _now()}},
                }
            ],
        }
        self._event(name, "Normal", "Started", f"Started container {container['name']}")

    def _cannot_start(self, name: str, pod: dict, exc: Exception) -> None:
        message = f"the stand-in kubelet could not start the container: {type(exc).__name__}: {exc}"
        log = self.root / "pods" / name / "log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(message + "\n")
        self._event(name, "Warning", "Failed", message)
        self.history[name].started = time.monotonic()
        pod["status"] = {
            "phase": "Failed",
            "message": message,
            "containerStatuses": [
                {
                    "name": pod["spec"]["containers"][0]["name"],
                    "image": "",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "CreateContainerError", "message": message}},
                }
            ],
        }
        self.history[name].finished, self.history[name].exit_code = time.monotonic(), -1
        self._fail_job(pod["metadata"]["labels"]["job-name"], message)

    def _finish(self, name: str, code: int) -> None:
        pod = self.pods[name]
        record = self.history[name]
        record.finished, record.exit_code = time.monotonic(), code
        status = pod["status"]
        status["phase"] = "Succeeded" if code == 0 else "Failed"
        status["containerStatuses"][0].update(
            ready=False,
            state={
                "terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": _now()}
            },
        )
        job_name = pod["metadata"]["labels"]["job-name"]
        if code == 0:
            job = self.jobs[job_name]
            job["status"] = {
                **job["status"],
                "active": 0,
                "succeeded": 1,
                "completionTime": _now(),
                "conditions": [{"type": "Complete", "status": "True"}],
            }
        else:
            self._fail_job(job_name, f"pod {name} exited with code {code}")

    def _kubelet(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                for name, pod in list(self.pods.items()):
                    phase = pod["status"]["phase"]
                    if phase == "Pending":
                        node = self._schedule(name, pod)
                        if node is not None:
                            try:
                                self._start(name, pod, node)
                            except Exception as exc:  # what a kubelet reports as CreateContainerError
                                self._cannot_start(name, pod, exc)
                    elif phase == "Running":
                        code = self._procs[name].poll()
                        if code is not None:  # the container's main process ended: so does the rest of it
                            del self._procs[name]
                            self._kill_processes(name, None)
                            self._finish(name, code)
            time.sleep(0.1)

    def _kill(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        tree = descendants(proc.pid) | ({proc.pid} if proc.poll() is None else set())
        for pid in pod_processes(name) - tree:
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                self.escaped.append(f"{name}: {pid} {command[:200]}")
        self._kill_processes(name, proc)
        proc.wait()
        record = self.history[name]
        record.finished, record.exit_code = time.monotonic(), -signal.SIGKILL

    def _kill_processes(self, name: str, proc: subprocess.Popen | None) -> None:
        """SIGKILL every process of pod `name`, as when its container's cgroup is killed: those
        carrying its marker, and its main process's tree and process group."""
        for _ in range(20):
            members = pod_processes(name)
            if proc is not None:
                members |= descendants(proc.pid) | ({proc.pid} if proc.poll() is None else set())
            if not members:
                break
            if proc is not None:  # it leads its own session: a child orphaned mid-kill stays in its group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    # -- the API server ----------------------------------------------------------------------
    def _handler(self):
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body, content_type: str = "application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, what: str):
                self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "NotFound",
                        "code": 404,
                        "message": f"{what} not found",
                    },
                )

            def _unknown(self, method: str, path: str):
                cluster.unknown_calls.append(f"{method} {path}")
                self._send(
                    405 if path.startswith(("/api/v1/", "/apis/batch/v1/")) else 404,
                    {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "not in the stand-in"},
                )

            def _route(self, method: str):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = url.path.strip("/").split("/")
                # /apis/batch/v1/namespaces/NS/jobs[/NAME[/status]] or /api/v1/namespaces/NS/(pods|events)[/NAME[/log]]
                if parts[:3] == ["apis", "batch", "v1"] and parts[5:6] == ["jobs"]:
                    collection, rest = cluster.jobs, parts[6:]
                    kind = "Job"
                elif parts[:2] == ["api", "v1"] and len(parts) > 4 and parts[4] in ("pods", "events"):
                    collection = (
                        cluster.pods if parts[4] == "pods" else {e["metadata"]["name"]: e for e in cluster.events}
                    )
                    rest, kind = parts[5:], parts[4][:-1].capitalize()
                else:
                    return self._unknown(method, url.path)
                if rest[1:] not in ([], ["log"], ["status"]) or (rest[1:] == ["log"] and kind != "Pod"):
                    return self._unknown(method, url.path)
                with cluster._lock:
                    if method == "POST" and kind == "Job" and not rest:
                        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                        job = cluster._create_job(body)
                        if job is None:
                            return self._send(
                                409,
                                {
                                    "kind": "Status",
                                    "apiVersion": "v1",
                                    "status": "Failure",
                                    "reason": "AlreadyExists",
                                    "code": 409,
                                },
                            )
                        return self._send(201, job)
                    deletes = method == "DELETE" and kind != "Event" and len(rest) == 1  # one Job or Pod
                    if method != "GET" and not deletes:
                        return self._unknown(method, url.path)
                    if method == "GET" and not rest:
                        items = [
                            o
                            for o in collection.values()
                            if _selector_matches(query.get("labelSelector"), o["metadata"].get("labels") or {})
                            and _selector_matches(query.get("fieldSelector"), _fields(o))
                        ]
                        return self._send(
                            200, {"apiVersion": "v1", "kind": f"{kind}List", "metadata": {}, "items": items}
                        )
                    obj = collection.get(rest[0]) if rest else None
                    if obj is None:
                        return self._not_found(f"{kind} {rest[0] if rest else ''}")
                    if method == "GET" and rest[1:] == ["log"]:
                        return self._send(200, cluster.log(rest[0]), "text/plain")
                    if method == "GET":
                        return self._send(200, obj)
                    if method == "DELETE" and kind == "Job":
                        for pod_name, pod in list(cluster.pods.items()):
                            if pod["metadata"]["labels"]["job-name"] == rest[0]:
                                cluster._kill(pod_name)
                                del cluster.pods[pod_name]
                        del cluster.jobs[rest[0]]
                        return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                    if method == "DELETE" and kind == "Pod":
                        cluster.delete_pod(rest[0])
                        return self._send(200, obj)
                return self._unknown(method, url.path)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_DELETE(self):
                self._route("DELETE")

            def do_PATCH(self):
                self._route("PATCH")

            def do_PUT(self):
                self._route("PUT")

        return Handler


def image_env(dockerfile: Path) -> dict[str, str]:
    """The final stage's ENV of `dockerfile` (PATH aside: the stand-in's programs are the
    environment running the tests, see `Cluster.exec_path`)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    env = {"HOME": "/tmp", "LANG": "C.UTF-8"}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for pair in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[pair[0]] = pair[1]
    env.pop("PATH", None)
    return env
