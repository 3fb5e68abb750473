"""The cluster path end to end: real dagster-k8s code against a Kubernetes stand-in.

What runs for real: a PostgreSQL server (pgserver's wheel) holding the Dagster instance; a
dagster-webserver loading `-m traincraft_assets` with the image's environment
(TRAINCRAFT_DEPLOYMENT=k8s); `traincraft submit`; dagster-k8s's `K8sRunLauncher` and
`k8s_job_executor` talking HTTP to the stand-in through the official `kubernetes` client; every
run and step pod as a `dagster api execute_run` / `execute_step` process; real MACE training.
The instance is k8s/dagster.yaml, the pod profiles k8s/manifests/pod-profiles.yaml and the
image env k8s/Dockerfile's, with only what the stand-in needs changed (see `deployment.instance_yaml`).

What stands in for what: traincraft_assets_tests/k8s/cluster.py stands in for the cluster (a
CPU node and a tainted node with one NVIDIA GPU; a second GPU node joins for the committee); its
docstring says what it does not enforce.
The "GPU" is a scheduling resource only: training runs on CPU here.
"""

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from traincraft_assets.app.batches import ingest, retire
from traincraft_assets.core.demo import loop_starts, write_target_batches
from traincraft_assets.core.frames import write_frames
from traincraft_assets.core.labelling import LabelOptions, label_batch
from traincraft_assets.core.processes import descendants
from traincraft_assets.core.store import tree_sha256
from traincraft_assets.core.training.mace.results import _complete
from traincraft_assets.defs.definitions import build_defs
from traincraft_assets.defs.resources import InboxResource, StoreResource
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, with_session_foundation
from traincraft_assets_tests.core.helpers import chunk_labeller, chunk_runs, cu_bulk, mace_eval_epochs, most_at_once
from traincraft_assets_tests.k8s.cluster import NVIDIA_GPU, Cluster, Node
from traincraft_assets_tests.k8s.deployment import Deployment, deployed

pytestmark = pytest.mark.integration

GPU_STEPS = {"finetuned_model", "parity_report", "foundation_agreement", "quality_gates"}
SHARED_GPU_EPOCHS = 12  # the pod is deleted right after epoch 1's checkpoint: 10 epochs to spare
FINETUNE = TINY_RUN_CONFIG["ops"]["finetuned_model"]["config"]
# tiny members: naive fine-tunes (no replay set needed), a few epochs so that pods overlap
COMMITTEE = {"strategy": "naive", "dtype": "float32", "lr": 0.01, "max_num_epochs": 3, "batch_size": 4, "seed": 5}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, graph_run):
    root = tmp_path_factory.mktemp("cluster")

    def upstream(instance: dg.DagsterInstance, store: Path) -> None:
        """Labelled batches, the session's tiny foundation (what `stage_foundation` would have
        made) and the data a fine-tune reads, so that each test can also run alone (`-k`)."""
        defs = build_defs(
            resources={"store": StoreResource(root=str(store)), "inbox": InboxResource(path=str(store / "inbox"))}
        )
        for batch in ingest(instance, store / "inbox", write_target_batches(root / "batches", 4)):
            defs.resolve_job_def("label_batch").execute_in_process(instance=instance, partition_key=batch.name)
        stage = with_session_foundation(
            graph_run, {"ops": {"pretraining_frames": TINY_RUN_CONFIG["ops"]["pretraining_frames"]}}
        )
        defs.resolve_job_def("stage_foundation").execute_in_process(instance=instance, run_config=stage)
        data = {"ops": {k: TINY_RUN_CONFIG["ops"][k] for k in ("split", "replay_subset")}}
        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in ("dataset", "split", "replay_subset")],
            run_config=data,
        )

    with deployed(root, upstream) as running:
        yield running


@pytest.fixture(autouse=True)
def only_known_api_calls(request):
    """Fail a test during which dagster-k8s made an API call the stand-in does not implement:
    a real cluster would have answered it, so the test's result would not say what a cluster
    does (test_stand_in.py shows the recording)."""
    if "deployment" not in request.fixturenames:
        yield
        return
    calls = request.getfixturevalue("deployment").cluster.unknown_calls
    before = len(calls)
    yield
    if made := calls[before:]:
        pytest.fail(f"API calls the stand-in does not implement (teach it, or find who made them): {made}")


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_a_finetune_run_is_one_pod_per_step_with_its_pod_profile(deployment):
    config = {
        "ops": {k: TINY_RUN_CONFIG["ops"][k] for k in ("split", "replay_subset", "finetuned_model", "quality_gates")}
    }
    code, out = _finish(deployment.submit("--job", "finetune", "--wait", config=config))
    assert code == 0, out
    run_id = Deployment.run_id(out)
    run = deployment.instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS

    received = deployment.cluster.received_jobs
    [run_job] = [j for j in received if j["metadata"]["name"] == f"dagster-run-{run_id}"]
    steps = deployment.step_jobs(run_id)
    assert set(steps) == {"dataset", "dataset_dataset_health", "split", "replay_subset"} | GPU_STEPS
    assert all(len(jobs) == 1 for jobs in steps.values()), {k: len(v) for k, v in steps.items()}
    pods = [
        r
        for r in deployment.cluster.history.values()
        if r.job in {j["metadata"]["name"] for js in steps.values() for j in js}
    ]
    # The run is marked a success once the last step reports; that step's pod may still be exiting.
    deadline = time.monotonic() + 60
    while any(p.exit_code is None for p in pods) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(pods) == len(steps) and [p.exit_code for p in pods] == [0] * len(pods), [
        (p.job, p.exit_code) for p in pods
    ]

    for step, [job] in steps.items():
        spec = job["spec"]["template"]["spec"]
        [container] = spec["containers"]
        limits = container["resources"].get("limits") or {}
        record = next(r for r in deployment.cluster.history.values() if r.job == job["metadata"]["name"])
        if step in GPU_STEPS:
            # k8s/manifests/pod-profiles.yaml's gpu profile, as the API received it
            assert limits[NVIDIA_GPU] == "1" and limits["memory"] == "64Gi", step
            assert container["resources"]["requests"]["cpu"] == "8"
            assert {"name": "OMP_NUM_THREADS", "value": "8"} in container["env"]  # threads = the pod's CPUs
            assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert [t["key"] for t in spec["tolerations"]] == [NVIDIA_GPU]
            assert any(
                v["name"] == "dshm" and v["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
                for v in spec["volumes"]
            )
            assert record.node == "gpu-node"
        else:
            assert NVIDIA_GPU not in limits and limits.get("memory") == "16Gi", step
            assert {"name": "OMP_NUM_THREADS", "value": "2"} in container["env"]
            assert not spec.get("tolerations") and not spec.get("nodeSelector")
            assert record.node == "cpu-node"
        # what every pod gets from the launcher config (k8s/dagster.yaml): store, security
        assert {"mountPath": "/store", "name": "store"} in container["volumeMounts"]
        assert {"name": "store", "persistentVolumeClaim": {"claimName": "traincraft-store"}} in spec["volumes"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["serviceAccountName"] == "traincraft-dagster"
    run_container = run_job["spec"]["template"]["spec"]["containers"][0]
    assert NVIDIA_GPU not in (run_container.get("resources") or {}).get("limits", {})  # the run pod orchestrates

    model = deployment.instance.get_latest_materialization_event(dg.AssetKey("finetuned_model"))
    assert model.run_id == run_id and deployment.model(model.asset_materialization).model_path.is_file()


def test_two_trainings_share_one_gpu_and_survive_a_lost_training_pod_and_a_lost_run_pod(deployment):
    """Two fine-tunes launched at once against a cluster with one GPU: the second's step pod
    waits, Unschedulable, until the GPU frees. Mid-way through the first's training, two nodes
    are lost: the one running the first's training pod, and the one running the second's run
    pod (the orchestrator). Dagster retries the first's step, which waits for the GPU and then
    resumes from MACE's checkpoint; the daemon's run monitoring resumes the second's run in a
    new run pod, which finds its step still queued and waits for it: that training runs once,
    uninterrupted."""
    cluster = deployment.cluster
    runs = []
    for seed in (11, 12):
        config = {
            "ops": {
                "finetuned_model": {"config": {**FINETUNE, "max_num_epochs": SHARED_GPU_EPOCHS, "seed": seed}},
                "quality_gates": TINY_RUN_CONFIG["ops"]["quality_gates"],
            }
        }
        proc = deployment.submit("--select", "finetuned_model", "--wait", config=config)
        runs.append(proc)
        while not any(
            j["metadata"]["name"].startswith("dagster-step-")
            for j in cluster.received_jobs[len(cluster.received_jobs) - 1 :]
        ):
            time.sleep(0.2)  # launch the second once the first's step Job exists, so the first gets the GPU

    work = deployment.store / ".training"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        training = [r for r in cluster.history.values() if r.gpus and r.started and r.finished is None]
        # complete checkpoints only: one still being written is set aside on resume
        epochs = [int(p.stem.rsplit("-", 1)[1]) for p in work.glob("*/checkpoints/*_epoch-*.pt") if _complete(p)]
        if training and epochs and max(epochs) >= 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no GPU pod got to a checkpoint of epoch 1")
    [first] = training
    [waiting] = [r for r in cluster.history.values() if r.gpus and not r.started]
    assert f"Insufficient {NVIDIA_GPU}" in waiting.unschedulable
    first_run, second_run = (_run_of_job(cluster, pod.job) for pod in (first, waiting))
    [second_run_pod] = [r.name for r in cluster.history.values() if r.job == f"dagster-run-{second_run}"]
    cluster.delete_pod(first.name)
    cluster.delete_pod(second_run_pod)

    results = [_finish(proc) for proc in runs]
    assert all(code == 0 for code, _ in results), "\n".join(out[-3000:] for _, out in results)
    steps = {
        j["metadata"]["name"]: step
        for run in (first_run, second_run)
        for step, jobs in deployment.step_jobs(run).items()
        for j in jobs
    }
    gpu_pods = sorted(
        (r for r in cluster.history.values() if r.job in steps and r.gpus and r.started), key=lambda r: r.started
    )
    # two trainings plus the deleted one's retry, and each run's quality gates (finetuned_model's checks)
    assert sorted(steps[r.job] for r in gpu_pods) == ["finetuned_model"] * 3 + ["quality_gates"] * 2
    for earlier, later in itertools.pairwise(gpu_pods):
        assert later.started >= earlier.finished, f"{later.name} ran while {earlier.name} held the only GPU"

    # the lost training pod: its step retried in the same run, resumed from the checkpoint
    retried = deployment.step_jobs(first_run)["finetuned_model"]
    assert [j["metadata"]["name"] for j in retried] == [first.job, f"{first.job}-1"]
    resumed = _materialization(deployment, first_run).metadata["resumed_from_epoch"].value
    assert resumed is not None and resumed >= 1
    model = deployment.model(_materialization(deployment, first_run))
    assert model.manifest["resumed_from_epoch"] == resumed and "--restart_latest" in model.manifest["argv"]
    # MACE's own log: epochs before the checkpoint were trained once, not again after the delete
    epochs = mace_eval_epochs(model.path)
    again = {key for key in epochs if epochs.count(key) > 1 and key[0] < resumed}
    assert not again, f"epochs before the checkpoint ({resumed}) were trained again: {sorted(again)}"
    assert {epoch for epoch, _ in epochs} == set(range(SHARED_GPU_EPOCHS))
    assert deployment.instance.get_run_by_id(first_run).status == dg.DagsterRunStatus.SUCCESS
    for step in deployment.instance.get_records_for_run(
        first_run, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    ).records:
        assert step.event_log_entry.step_key == "finetuned_model"

    # the lost run pod: the run resumed once, in a new run pod; its one training ran through
    run_jobs = [
        j["metadata"]["name"]
        for j in cluster.received_jobs
        if j["metadata"]["name"].startswith(f"dagster-run-{second_run}")
    ]
    pods = [(r.name, r.job, r.exit_code, r.deleted) for r in cluster.history.values() if second_run in r.job]
    assert run_jobs == [f"dagster-run-{second_run}", f"dagster-run-{second_run}-1"], (
        run_jobs,
        pods,
        cluster.escaped,
        _run_log(deployment, second_run),
        deployment.daemon_log(),
    )
    assert [j["metadata"]["name"] for j in deployment.step_jobs(second_run)["finetuned_model"]] == [waiting.job]
    assert cluster.history[waiting.name].exit_code == 0 and not cluster.history[waiting.name].deleted
    assert _materialization(deployment, second_run).metadata["resumed_from_epoch"].value == -1
    assert deployment.instance.get_run_by_id(second_run).status == dg.DagsterRunStatus.SUCCESS


@pytest.fixture
def inbox_batch(deployment, tmp_path):
    """Puts a batch of unlabelled Cu cells (one per seed) in the cluster's inbox, retired
    afterwards: the later tests' datasets hold the fixture's batches at one level of theory."""
    made = []

    def make(seeds: range):
        path = tmp_path / f"cells-{seeds.start}.xyz"
        write_frames(path, [cu_bulk(rattle=0.05, seed=seed, repeat=1) for seed in seeds])
        [batch] = ingest(deployment.instance, deployment.store / "inbox", [path])
        made.append(batch)
        return path, batch

    yield make
    for batch in made:
        retire(deployment.instance, deployment.store / "inbox", batch.name, "a chunk-pod test's batch")


def test_a_batch_labelled_as_chunk_pods_survives_a_lost_chunk_pod(deployment, inbox_batch, tmp_path):
    """labelled_frames with chunk_steps: 3 on the cluster: three label_chunk pods label at once
    (a labeller pausing 4 s a frame, 2 frames each). One is deleted mid-labelling; its step
    alone is retried in a new pod, and the merged artifact is the one a local, single-process
    label_batch makes of the same file, byte for byte."""
    cluster = deployment.cluster
    path, batch = inbox_batch(range(6))
    # the program and its run records on the store volume, as a team's DFT wrapper would be
    work = deployment.store / "chunk-labeller"
    work.mkdir()
    runs = work / "runs"
    config = chunk_labeller(work, runs, pause_s=4)
    reference = tmp_path / "reference"
    reference.mkdir()
    local = chunk_labeller(tmp_path, tmp_path / "local-runs")
    label_batch(path, batch.name, "command", LabelOptions(command=local["command"]), reference / "frames.xyz")

    jobs_before = len(cluster.received_jobs)
    proc = deployment.submit(
        "--job",
        "label_batch",
        "--partition",
        batch.name,
        "--wait",
        config={"ops": {"labelled_frames": {"config": {**config, "chunk_steps": 3}}}},
    )
    deadline = time.monotonic() + 300
    while len(list(runs.glob("*-*"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    started = {int(p.name.split("-")[1]): int(p.name.split("-")[0]) for p in runs.glob("*-*")}
    assert len(started) == 3, f"the three chunks' labeller runs did not all start: {started}"
    with cluster._lock:  # the pod running the chunk whose labeller started last
        pid = max(started, key=lambda pid: float((runs / f"{started[pid]}-{pid}").read_text().split()[0]))
        [victim] = [name for name, p in cluster._procs.items() if pid in descendants(p.pid)]
        running = [r for r in cluster.history.values() if r.started and r.finished is None]
    cluster.delete_pod(victim)

    code, out = _finish(proc)
    assert code == 0, out[-3000:]
    run_id = Deployment.run_id(out)
    chunk_jobs = {
        j["metadata"]["name"]
        for j in cluster.received_jobs[jobs_before:]
        if "label_chunk" in j["metadata"]["labels"].get("dagster/op", "")
    }
    first = [r for r in cluster.history.values() if r.job in chunk_jobs and not r.job.endswith("-1")]
    assert len(first) == 3 and all(r in running for r in first), "the three chunk pods were not running at once"
    victim_job = cluster.history[victim].job
    assert chunk_jobs == {r.job for r in first} | {f"{victim_job}-1"}  # the lost chunk's step alone retried
    retried_chunk = started[pid]
    assert chunk_runs(runs) == {first: 2 if first == retried_chunk else 1 for first in (0, 2, 4)}
    steps = deployment.step_jobs(run_id)
    assert sum(len(v) for k, v in steps.items() if "label_chunk" not in k) == 3  # plan, merge, the check

    [record] = deployment.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("labelled_frames"), asset_partitions=[batch.name]), limit=1
    ).records
    assert record.run_id == run_id
    assert record.asset_materialization.tags["dagster/data_version"] == tree_sha256(reference)
    assert not any((deployment.store / ".scratch").iterdir())


def test_chunk_pods_across_runs_stay_within_the_label_pool(deployment, inbox_batch, tmp_path):
    """With the `label` pool set as docs/kubernetes.md says (`dagster instance concurrency set
    label 2`), two batches submitted at once, each as 3 chunk steps, label in no more than two
    pods at a time across both runs; every chunk is labelled once."""
    batches = [inbox_batch(range(10, 16)), inbox_batch(range(20, 26))]
    runs = deployment.store / "pool-labeller" / "runs"
    runs.parent.mkdir()
    config = {
        "ops": {"labelled_frames": {"config": {**chunk_labeller(runs.parent, runs, pause_s=2), "chunk_steps": 3}}}
    }
    dagster = [str(Path(sys.executable).parent / "dagster"), "instance", "concurrency"]
    env = {**os.environ, **deployment.env}
    subprocess.run([*dagster, "set", "label", "2"], env=env, check=True, capture_output=True)
    try:
        procs = [
            deployment.submit("--job", "label_batch", "--partition", batch.name, "--wait", config=config)
            for _, batch in batches
        ]
        results = [_finish(proc) for proc in procs]
    finally:
        deployment.instance.event_log_storage.delete_concurrency_limit("label")  # unlimited again
    assert all(code == 0 for code, _ in results), "\n".join(out[-3000:] for _, out in results)
    assert chunk_runs(runs) == {0: 2, 2: 2, 4: 2}  # chunks start at frames 0, 2, 4 of each batch: each once
    assert most_at_once(runs) == 2, "the label pool's limit was not what bounded the chunk pods"


def _run_of_job(cluster: Cluster, job: str) -> str:
    return next(
        j["metadata"]["labels"]["dagster/run-id"] for j in cluster.received_jobs if j["metadata"]["name"] == job
    )


def _materialization(deployment: Deployment, run_id: str):
    [materialization] = [
        r.asset_materialization
        for r in deployment.instance.fetch_materializations(dg.AssetKey("finetuned_model"), limit=5).records
        if r.run_id == run_id
    ]
    return materialization


def _run_log(deployment: Deployment, run_id: str) -> str:
    """The run's event log, for an assertion message: what Dagster recorded, step by step."""
    lines = []
    for record in deployment.instance.get_records_for_run(run_id, limit=1000).records:
        event = record.event_log_entry.dagster_event
        message = (event.message if event else record.event_log_entry.user_message) or ""
        lines.append(f"{event.event_type_value if event else ''}: {message}"[:300])
    return "\n".join(lines[-60:])


def test_committee_members_and_walks_run_as_concurrent_gpu_pods(deployment):
    """The loop's committee on the cluster: one run per member, submitted at once. A second GPU
    node has joined (two GPUs in all): two members' pods train side by side, the third waits,
    Unschedulable, for a GPU to free; never more than two at once; each member its own seed.
    Then the walks fan out the same way, with that committee."""
    cluster, instance = deployment.cluster, deployment.instance
    with cluster._lock:
        cluster.nodes.append(
            Node(
                "gpu-node-2",
                gpus=1,
                labels={"nvidia.com/gpu.present": "true"},
                taints=[{"key": NVIDIA_GPU, "value": "present", "effect": "NoSchedule"}],
            )
        )
    defs = build_defs(
        resources={
            "store": StoreResource(root=str(deployment.store)),
            "inbox": InboxResource(path=str(deployment.store / "inbox")),
        }
    )
    defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("dataset"), dg.AssetKey("split")], run_config={}
    )
    members = [f"member-{k}" for k in range(3)]
    instance.add_dynamic_partitions("committee_members", members)
    config = {"ops": {"committee": {"config": {**COMMITTEE, "members": len(members)}}}}
    procs = [deployment.submit("--select", "committee", "--partition", m, "--wait", config=config) for m in members]
    results = [_finish(proc) for proc in procs]
    assert all(code == 0 for code, _ in results), "\n".join(out[-3000:] for _, out in results)

    pods = sorted(
        (r for r in cluster.history.values() if r.gpus and r.started and _op_of_job(cluster, r.job) == "committee"),
        key=lambda r: r.started,
    )
    _wait_exited(pods)
    assert len(pods) == 3 and {p.node for p in pods} == {"gpu-node", "gpu-node-2"}
    overlapping = [(a, b) for a, b in itertools.combinations(pods, 2) if b.started < a.finished]
    assert overlapping, "no two members trained at the same time"
    for pod in pods:  # never three at once: at each start, at most one other is still training
        assert sum(o.started <= pod.started < o.finished for o in pods if o is not pod) <= 1
    assert any(f"Insufficient {NVIDIA_GPU}" in (e.get("message") or "") for e in cluster.events)
    trained = _latest_each(instance, "committee", members)
    seeds = {m: meta.metadata["seed"].value for m, meta in zip(members, trained)}
    assert seeds == {m: COMMITTEE["seed"] + k for k, m in enumerate(members)}

    # exploration fans out: one run, and one GPU pod, per walk, side by side on the two GPUs.
    # The starting structures lie on the store volume; pods here share the host's filesystem,
    # so its host path stands in for the /store/... a real pod would be given.
    starts = deployment.store / "loop" / "starts.xyz"
    starts.parent.mkdir(exist_ok=True)
    write_frames(starts, loop_starts()[:2])
    walks = ["0@600K", "1@600K"]
    instance.add_dynamic_partitions("exploration_walks", walks)
    explore = {
        "structures": str(starts),
        "temperatures_k": [600],
        "steps": 20,
        "save_interval": 5,
        "trust_lo": 1e-6,
        "trust_hi": 50.0,
    }
    config = {"ops": {"exploration": {"config": explore}}}
    procs = [deployment.submit("--select", "exploration", "--partition", w, "--wait", config=config) for w in walks]
    results = [_finish(proc) for proc in procs]
    assert all(code == 0 for code, _ in results), "\n".join(out[-3000:] for _, out in results)
    walk_pods = [r for r in cluster.history.values() if r.started and _op_of_job(cluster, r.job) == "exploration"]
    _wait_exited(walk_pods)
    assert len(walk_pods) == 2 and all(p.gpus == 1 for p in walk_pods)
    first, second = sorted(walk_pods, key=lambda r: r.started)
    assert second.started < first.finished, "the two walks did not run side by side"
    committee = {m.metadata["committee"].value for m in trained}
    explored = _latest_each(instance, "exploration", walks)
    assert {m.metadata["committee"].value for m in explored} == committee and len(committee) == 1
    assert all(m.metadata["n_saved"].value == 4 for m in explored)


def _wait_exited(pods: list, timeout_s: float = 60) -> None:
    """A run is marked a success once its last step reports; that step's pod may still be exiting."""
    deadline = time.monotonic() + timeout_s
    while any(p.finished is None for p in pods) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(p.finished is not None for p in pods), [(p.name, p.exit_code) for p in pods]


def _latest_each(instance: dg.DagsterInstance, asset: str, partitions: list[str]) -> list:
    return [
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[p]), limit=1
        )
        .records[0]
        .asset_materialization
        for p in partitions
    ]


def _op_of_job(cluster: Cluster, job: str) -> str | None:
    return next(
        (
            j["metadata"].get("labels", {}).get("dagster/op")
            for j in cluster.received_jobs
            if j["metadata"]["name"] == job
        ),
        None,
    )
