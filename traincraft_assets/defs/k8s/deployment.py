"""One Definitions object serves both deployments; TRAINCRAFT_DEPLOYMENT (core.settings) picks
the executor, and the pod profiles become op tags (inert locally)."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.settings import Settings, load_settings
from traincraft_assets.defs.k8s.profiles import GPU_POOL, load_profiles

K8S_CONFIG_TAG = "dagster-k8s/config"
# On a cluster a GPU step pod can be preempted or lose its node; the retry resumes the training
# from its checkpoint (core/training/workdir.py). Locally a failure is a real one: no retry.
GPU_STEP_RETRIES = dg.RetryPolicy(max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL)

_SETTINGS = load_settings()  # read once, when the code loads
_PROFILES = load_profiles(_SETTINGS.pod_profiles)
CPU_STEP = {"op_tags": {K8S_CONFIG_TAG: _PROFILES["cpu"].k8s_config()}}
GPU_STEP = {
    "op_tags": {K8S_CONFIG_TAG: _PROFILES["gpu"].k8s_config()},
    "pool": GPU_POOL,
    "retry_policy": GPU_STEP_RETRIES if _SETTINGS.deployment == "k8s" else None,
}


def executor(settings: Settings):
    """Locally: steps run one after another in the run's process (MACE training is its own
    subprocess, and two trainings on a laptop's cores only slow each other). On Kubernetes:
    one pod per step, so GPU steps get GPU pods."""
    if settings.deployment == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
