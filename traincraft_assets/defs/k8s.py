"""Deployment profiles: what changes between the laptop and the Kubernetes cluster.

One Definitions object serves both; TRAINCRAFT_DEPLOYMENT picks the executor. The op tags below
are inert locally and, on Kubernetes, give the training and evaluation step pods a GPU.
"""

from __future__ import annotations

import os

import dagster as dg

DEPLOYMENT_ENV = "TRAINCRAFT_DEPLOYMENT"

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


def deployment() -> str:
    value = os.environ.get(DEPLOYMENT_ENV, "local")
    if value not in ("local", "k8s"):
        raise ValueError(f"{DEPLOYMENT_ENV} must be 'local' or 'k8s'; got {value!r}.")
    return value


def executor():
    """Locally: steps run one after another in the run's process (MACE training is its own
    subprocess, and two trainings on a laptop's cores only slow each other). On Kubernetes:
    one pod per step, so GPU steps get GPU pods."""
    if deployment() == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
