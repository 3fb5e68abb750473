"""One Definitions object serves both deployments; TRAINCRAFT_DEPLOYMENT (core.settings) picks
the executor, and the pod profiles become op tags (inert locally)."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.settings import Settings, load_settings
from traincraft_assets.defs.k8s.profiles import GPU_POOL, load_profiles

K8S_CONFIG_TAG = "dagster-k8s/config"

_PROFILES = load_profiles(load_settings().pod_profiles)  # read once, when the code loads
CPU_STEP = {"op_tags": {K8S_CONFIG_TAG: _PROFILES["cpu"].k8s_config()}}
GPU_STEP = {"op_tags": {K8S_CONFIG_TAG: _PROFILES["gpu"].k8s_config()}, "pool": GPU_POOL}


def executor(settings: Settings):
    """Locally: steps run one after another in the run's process (MACE training is its own
    subprocess, and two trainings on a laptop's cores only slow each other). On Kubernetes:
    one pod per step, so GPU steps get GPU pods."""
    if settings.deployment == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
