"""One Definitions object serves both deployments; what differs is decided here, when the
definitions are built from the settings (never at import): the executor, and what each step's
pod asks for (its pod profile as the `dagster-k8s/config` op tag, inert locally, and on the
cluster its retry policy)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from traincraft_assets.core.settings import Deployment as DeploymentName
from traincraft_assets.core.settings import Settings
from traincraft_assets.defs.k8s.profiles import DEFAULT_PROFILES, POOLS, PodProfile, load_profiles

K8S_CONFIG_TAG = "dagster-k8s/config"


@dataclass(frozen=True)
class Deployment:
    name: DeploymentName = "local"
    profiles: dict[str, PodProfile] | None = None  # None: the default profiles

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployment:
        return cls(settings.deployment, load_profiles(settings.pod_profiles))

    def step(self, profile: str) -> dict:
        """The `@asset` / `@asset_check` arguments of a step that runs with this pod profile:
        its pod's config, its retries on the cluster (locally a failure is a real one), and for
        GPU and labelling steps the concurrency pool that caps how many run at once."""
        pod = (self.profiles or DEFAULT_PROFILES)[profile]
        on_cluster = self.name == "k8s"
        return {
            "op_tags": {K8S_CONFIG_TAG: pod.k8s_config()},
            "retry_policy": pod.retry_policy() if on_cluster else None,
            **({"pool": POOLS[profile]} if profile in POOLS else {}),
        }

    def executor(self):
        """Locally: steps run one after another in the run's process (MACE training is its own
        subprocess, and two trainings on a laptop's cores only slow each other). On Kubernetes:
        one pod per step, so GPU steps get GPU pods."""
        if self.name == "k8s":
            from dagster_k8s import k8s_job_executor

            return k8s_job_executor
        return dg.in_process_executor
