"""Deployment profiles: what changes between the laptop and the Kubernetes cluster."""

from traincraft_assets.defs.k8s.deployment import CPU_STEP, GPU_STEP, executor

__all__ = ["CPU_STEP", "GPU_STEP", "executor"]
