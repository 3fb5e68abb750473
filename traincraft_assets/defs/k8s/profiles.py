"""Pod profiles: what a step's Kubernetes pod asks for, as typed config.

Three profiles: `cpu` for data steps, `gpu` for training and evaluation, `label` for the steps
that run a labeller (a DFT code wants other pods than a dataset merge). Each becomes the
`dagster-k8s/config` op tag of its steps, which `k8s_job_executor` applies to the step's pod
(locally the tag is inert). A team overrides them without code changes: a YAML file named by
TRAINCRAFT_POD_PROFILES with any of the fields below under `cpu:` / `gpu:` / `label:`. GPU
steps share the `gpu` concurrency pool and labelling steps the `label` pool, so an instance
limit on each (k8s/dagster.yaml) caps how many run at once: the GPUs the team has, the
labelling pods the cluster may hold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from traincraft_assets.core.settings import TRAINING_PROCESSES_ENV

PROFILE_NAMES = ("cpu", "gpu", "label")
# The concurrency pool of each profile that has one: steps that compete for GPUs, or for the
# cluster's labelling capacity, across every run.
POOLS = {"gpu": "gpu", "label": "label"}
NVIDIA_GPU = "nvidia.com/gpu"


class ProfileError(ValueError):
    """A pod profiles file the project cannot use; names the file and the field."""


@dataclass(frozen=True)
class PodProfile:
    cpu: str | None = None  # CPU request (cores, Kubernetes quantity)
    cpu_limit: str | None = None
    memory: str | None = None  # memory request, e.g. "16Gi"
    memory_limit: str | None = None
    gpus: int = 0  # nvidia.com/gpu, request = limit
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    shm_size: str | None = None  # a memory-backed /dev/shm of this size (PyTorch data loaders)
    # On the cluster, a step whose pod was evicted, preempted or lost with its node is retried
    # this many times, first after `retry_delay_s`, then exponentially later; a training resumes
    # from its checkpoint (core/training/workdir.py). Locally a failure is a real one: no retry.
    retries: int = 0
    retry_delay_s: float = 60.0

    def retry_policy(self) -> dg.RetryPolicy | None:
        if not self.retries:
            return None
        return dg.RetryPolicy(max_retries=self.retries, delay=self.retry_delay_s, backoff=dg.Backoff.EXPONENTIAL)

    def threads(self) -> int | None:
        """OMP_NUM_THREADS for the pod: its CPU limit, else its request, in whole cores, shared
        by the training's processes (one per GPU); at least one. A container sees every core of
        its node, so torch and OpenMP would start a thread per node core and contend for the few
        the pod may use."""
        quantity = self.cpu_limit or self.cpu
        if quantity is None:
            return None
        text = str(quantity).strip()
        try:
            cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ProfileError(
                f'cpu {quantity!r} is not a Kubernetes CPU quantity; expected cores such as "4", "1.5" or "500m".'
            ) from None
        return max(1, int(cores) // max(1, self.gpus))

    def k8s_config(self) -> dict:
        """The value of the `dagster-k8s/config` tag."""
        requests = {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v}
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        container: dict = {"resources": {"requests": requests, "limits": limits}}
        threads = self.threads()
        env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
        if self.gpus:
            requests[NVIDIA_GPU] = limits[NVIDIA_GPU] = str(self.gpus)
            # a training in this pod runs one process per GPU (core/training/mace/command.py)
            env[TRAINING_PROCESSES_ENV] = str(self.gpus)
        if env:
            container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        pod: dict = {}
        if self.node_selector:
            pod["node_selector"] = dict(self.node_selector)
        if self.tolerations:
            pod["tolerations"] = [dict(t) for t in self.tolerations]
        if self.shm_size:
            container["volume_mounts"] = [{"name": "dshm", "mount_path": "/dev/shm"}]
            pod["volumes"] = [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": self.shm_size}}]
        return {"container_config": container, **({"pod_spec_config": pod} if pod else {})}


DEFAULT_PROFILES = {
    "cpu": PodProfile(cpu="1", memory="4Gi", memory_limit="8Gi"),
    "gpu": PodProfile(
        cpu="4",
        memory="16Gi",
        memory_limit="32Gi",
        gpus=1,
        tolerations=[{"key": NVIDIA_GPU, "operator": "Exists", "effect": "NoSchedule"}],
        shm_size="8Gi",
        retries=2,
    ),
    # a labelling step's pod lost with its node is retried alone; its chunk is labelled again
    "label": PodProfile(cpu="1", memory="4Gi", memory_limit="8Gi", retries=2),
}


def load_profiles(path: Path | None) -> dict[str, PodProfile]:
    """The default profiles, with the fields given in `path` (YAML) replaced."""
    if path is None:
        return dict(DEFAULT_PROFILES)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot read the pod profiles ({exc}).") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of profile name to fields, found {type(data).__name__}.")
    unknown = sorted(set(data) - set(PROFILE_NAMES))
    if unknown:
        raise ProfileError(f"{path}: unknown profile(s) {unknown}; expected some of {list(PROFILE_NAMES)}.")
    fields = {f.name for f in dataclasses.fields(PodProfile)}
    profiles = dict(DEFAULT_PROFILES)
    for name, changes in data.items():
        bad = sorted(set(changes or {}) - fields)
        if bad:
            raise ProfileError(
                f"{path}: profile {name!r} has unknown field(s) {bad}; expected some of {sorted(fields)}."
            )
        profiles[name] = dataclasses.replace(profiles[name], **(changes or {}))
        for whole in ("gpus", "retries"):
            value = getattr(profiles[name], whole)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ProfileError(
                    f"{path}: profile {name!r} field {whole!r} must be a whole number >= 0, found {value!r}."
                )
        try:
            profiles[name].threads()
        except ProfileError as exc:
            raise ProfileError(f"{path}: profile {name!r}: {exc}") from None
        delay = profiles[name].retry_delay_s
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            raise ProfileError(
                f"{path}: profile {name!r} field 'retry_delay_s' must be a number of seconds >= 0, found {delay!r}."
            )
    return profiles
