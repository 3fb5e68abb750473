"""Deployment profiles: what changes between the laptop and the Kubernetes cluster."""

from traincraft_assets.defs.k8s.deployment import GPU_STEP_TAGS, executor

__all__ = ["GPU_STEP_TAGS", "executor"]
