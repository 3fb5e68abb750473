"""Deployment profiles: what changes between the laptop and the Kubernetes cluster."""

from traincraft_assets.defs.k8s.deployment import Deployment

__all__ = ["Deployment"]
