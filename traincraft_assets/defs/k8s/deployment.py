"""One Definitions object serves both deployments; TRAINCRAFT_DEPLOYMENT (core.settings) picks
the executor, and the pod profiles become op tags (inert locally)."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.settings import Settings, load_settings
from traincraft_assets.defs.k8s.profiles import GPU_POOL, load_profiles

K8S_CONFIG_TAG = "dagster-k8s/config"

_SETTINGS = load_settings()  # read once, when the code loads
_PROFILES = load_profiles(_SETTINGS.pod_profiles)


def _step(profile: str) -> dict:
    """The `@asset` arguments of a step that runs with this pod profile."""
    on_cluster = _SETTINGS.deployment == "k8s"
    return {
        "op_tags": {K8S_CONFIG_TAG: _PROFILES[profile].k8s_config()},
        "retry_policy": _PROFILES[profile].retry_policy() if on_cluster else None,
    }


CPU_STEP = _step("cpu")
GPU_STEP = {**_step("gpu"), "pool": GPU_POOL}


def executor(settings: Settings):
    """Locally: steps run one after another in the run's process (MACE training is its own
    subprocess, and two trainings on a laptop's cores only slow each other). On Kubernetes:
    one pod per step, so GPU steps get GPU pods."""
    if settings.deployment == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
