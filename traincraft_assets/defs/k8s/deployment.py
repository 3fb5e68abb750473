"""One Definitions object serves both deployments; TRAINCRAFT_DEPLOYMENT (core.settings) picks
the executor. The op tags below are inert locally and, on Kubernetes, give the training and
evaluation step pods a GPU."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.settings import Settings

GPU_STEP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
            }
        },
        "pod_spec_config": {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        },
    }
}


def executor(settings: Settings):
    """Locally: steps run one after another in the run's process (MACE training is its own
    subprocess, and two trainings on a laptop's cores only slow each other). On Kubernetes:
    one pod per step, so GPU steps get GPU pods."""
    if settings.deployment == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
