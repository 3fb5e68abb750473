"""Pod profiles, read back through dagster-k8s's own code: the op tags our assets carry are
parsed by `get_user_defined_k8s_config` and turned into a Kubernetes Job by
`construct_dagster_k8s_job`, exactly as `k8s_job_executor` does for a step pod. No cluster is
needed to see what the API would receive."""

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from traincraft_assets.core.settings import load_settings
from traincraft_assets.defs.definitions import build_defs
from traincraft_assets.defs.k8s.profiles import DEFAULT_PROFILES, PodProfile, ProfileError, load_profiles

GPU_ASSETS = {
    "foundation_model",
    "finetuned_model",
    "parity_report",
    "champion_model",
    "strategy_arm",
    "committee",
    "exploration",
    "candidates",
}
REPO = Path(__file__).resolve().parents[3]


def _step_pod(asset: str, step: str | None = None, defs: dg.Definitions | None = None):
    """The pod spec dagster-k8s builds for this asset's step (`step`: one op of a graph-backed asset)."""
    node = (defs or build_defs()).resolve_asset_graph().get(dg.AssetKey(asset)).assets_def.node_def
    op = node if step is None else next(op for op in node.iterate_op_defs() if op.name == step)
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="traincraft:test", dagster_home="/opt/dagster/home"),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-test",
        user_defined_k8s_config=get_user_defined_k8s_config(op.tags),
    )
    return job.spec.template.spec, op


@pytest.mark.parametrize("asset", sorted(GPU_ASSETS))
def test_training_and_evaluation_steps_ask_for_a_gpu_and_tolerate_gpu_nodes(asset):
    pod, op = _step_pod(asset)
    [container] = pod.containers
    assert container.resources.limits["nvidia.com/gpu"] == container.resources.requests["nvidia.com/gpu"] == "1"
    assert container.resources.limits["memory"] == "32Gi"
    assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]
    shm = [v for v in pod.volumes if v.name == "dshm"]
    assert shm and shm[0].empty_dir.medium == "Memory" and shm[0].empty_dir.size_limit == "8Gi"
    assert any(m.mount_path == "/dev/shm" for m in container.volume_mounts)
    env = {e.name: e.value for e in container.env}
    assert env["TRAINCRAFT_TRAINING_PROCESSES"] == "1"  # one rank per GPU
    assert env["OMP_NUM_THREADS"] == "4"  # the pod's 4 CPUs, not a thread per core of the node
    assert op.pool == "gpu"  # the instance's limit on this pool caps concurrent GPU steps
    assert op.retry_policy is None  # locally a failed training is a real failure


@pytest.mark.parametrize(
    "asset, step",
    [
        ("labelled_frames", "plan_chunks"),
        ("labelled_frames", "merge_chunks"),
        ("dataset", None),
        ("split", None),
        ("pretraining_frames", None),
        ("replay_subset", None),
    ],
)
def test_data_steps_stay_on_cpu(asset, step):
    pod, op = _step_pod(asset, step)
    [container] = pod.containers
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    assert container.resources.requests == {"cpu": "1", "memory": "4Gi"}
    assert {e.name: e.value for e in container.env}["OMP_NUM_THREADS"] == "1"
    assert not pod.tolerations and op.pool is None


@pytest.mark.parametrize(
    "fields, threads",
    [
        ({"cpu": "8"}, 8),
        ({"cpu": "1.5"}, 1),
        ({"cpu": "500m"}, 1),
        ({"cpu": "2", "cpu_limit": "6"}, 6),
        ({}, None),
        ({"cpu": "16", "gpus": 4}, 4),
        ({"cpu": "2", "gpus": 4}, 1),
    ],
)
def test_a_pods_threads_are_its_cpus_in_whole_cores(fields, threads):
    """OMP_NUM_THREADS from the CPU limit, else the request, shared by the training's processes
    (one per GPU): torch and OpenMP in a container otherwise start a thread per core of the
    whole node, in each process."""
    profile = PodProfile(**fields)
    env = {e["name"]: e["value"] for e in profile.k8s_config()["container_config"].get("env", [])}
    assert env.get("OMP_NUM_THREADS") == (None if threads is None else str(threads))


def test_a_profiles_file_overrides_fields_and_keeps_the_rest(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "gpu:\n  gpus: 2\n  node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}\ncpu:\n  memory: 2Gi\n"
    )
    profiles = load_profiles(path)
    assert profiles["gpu"].gpus == 2 and profiles["gpu"].shm_size == DEFAULT_PROFILES["gpu"].shm_size
    assert profiles["cpu"].memory == "2Gi" and profiles["cpu"].cpu == "1"
    config = profiles["gpu"].k8s_config()
    assert config["pod_spec_config"]["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "2"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("gpu:\n  gpu: 2\n", "profile 'gpu' has unknown field(s) ['gpu']"),
        ("tpu:\n  gpus: 1\n", "unknown profile(s) ['tpu']"),
        ("gpu:\n  gpus: -1\n", "'gpus' must be a whole number"),
        ("cpu:\n  retries: 1.5\n", "'retries' must be a whole number >= 0, found 1.5"),
        ("gpu:\n  retry_delay_s: soon\n", "'retry_delay_s' must be a number of seconds >= 0, found 'soon'"),
        ("- gpu\n", "expected a mapping"),
        ("cpu:\n  cpu: four\n", "profile 'cpu': cpu 'four' is not a Kubernetes CPU quantity"),
    ],
)
def test_a_bad_profiles_file_names_the_file_and_the_field(tmp_path, text, expected):
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profiles(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_the_cluster_deployment_reads_the_profiles_file_and_retries_gpu_steps(tmp_path):
    """What the image and Helm values do: TRAINCRAFT_DEPLOYMENT=k8s and TRAINCRAFT_POD_PROFILES
    set; the definitions built from those settings carry them (read when the definitions are
    built, not when the code is imported). A preempted GPU step is retried (and resumes)."""
    path = tmp_path / "profiles.yaml"
    path.write_text("gpu:\n  gpus: 4\n  memory_limit: 200Gi\n  retry_delay_s: 5\ncpu:\n  retries: 1\n")
    settings = load_settings({"TRAINCRAFT_POD_PROFILES": str(path), "TRAINCRAFT_DEPLOYMENT": "k8s"})
    defs = build_defs(settings)
    gpu, cpu = (defs.resolve_asset_graph().get(dg.AssetKey(a)).assets_def.op for a in ("finetuned_model", "split"))
    assert (gpu.retry_policy.max_retries, gpu.retry_policy.delay, cpu.retry_policy.max_retries) == (2, 5, 1)
    assert defs.resolve_job_def("finetune").executor_def.name == "k8s"
    local = build_defs().resolve_asset_graph().get(dg.AssetKey("finetuned_model")).assets_def.op
    assert local.retry_policy is None  # on a laptop a failure is a real one
    tags = json.loads(gpu.tags["dagster-k8s/config"])  # tags hold JSON text
    limits = tags["container_config"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "4" and limits["memory"] == "200Gi"
    # four ranks share the pod's 4 CPUs: one thread each
    assert tags["container_config"]["env"] == [
        {"name": "OMP_NUM_THREADS", "value": "1"},
        {"name": "TRAINCRAFT_TRAINING_PROCESSES", "value": "4"},
    ]


def test_labelling_chunks_run_on_label_pods_in_the_label_pool_and_are_retried_on_the_cluster(tmp_path):
    """Each chunk step of labelled_frames gets the `label` profile (sized apart from the data
    steps: a DFT code's pod), the `label` concurrency pool (the instance's limit on it caps the
    labelling pods of every run together) and, on the cluster, its retries: a chunk whose pod
    was lost is labelled again, alone."""
    pod, op = _step_pod("labelled_frames", "label_chunk")
    [container] = pod.containers
    assert container.resources.requests == {"cpu": "1", "memory": "4Gi"} and not pod.tolerations
    assert op.pool == "label" and op.retry_policy is None  # locally a failure is a real one
    path = tmp_path / "profiles.yaml"
    path.write_text("label:\n  cpu: '16'\n  memory: 64Gi\n")
    defs = build_defs(load_settings({"TRAINCRAFT_POD_PROFILES": str(path), "TRAINCRAFT_DEPLOYMENT": "k8s"}))
    pod, op = _step_pod("labelled_frames", "label_chunk", defs)
    [container] = pod.containers
    assert container.resources.requests == {"cpu": "16", "memory": "64Gi"}
    assert {e.name: e.value for e in container.env}["OMP_NUM_THREADS"] == "16"
    assert op.retry_policy.max_retries == DEFAULT_PROFILES["label"].retries == 2
    _, plan = _step_pod("labelled_frames", "plan_chunks", defs)
    assert plan.retry_policy is None and plan.pool is None


def test_every_step_of_the_graph_has_a_pod_profile():
    """Asset checks are steps (pods) too: one without a profile would land on any node with no
    requests. The foundation check evaluates the foundation on the dataset and the quality gates
    run MD with the model, so both are GPU steps."""
    # every job's steps: the whole graph spans two partitionings (batches, comparison arms)
    ops = {op.name: op for job in build_defs().resolve_all_job_defs() for op in job.graph.iterate_op_defs()}.values()
    gpu = set()
    for op in ops:
        assert "dagster-k8s/config" in op.tags, f"step {op.name} has no pod profile"
        if "nvidia.com/gpu" in op.tags["dagster-k8s/config"]:
            gpu.add(op.name)
    assert gpu == GPU_ASSETS | {"foundation_agreement", "quality_gates", "run_trajectory"}
