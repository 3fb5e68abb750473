"""The one Definitions object: each domain's assets and checks, the jobs and automation, the
resources, and the deployment's executor, merged."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.settings import load_settings
from traincraft_assets.defs import automation, comparison, data, deploy, foundation, jobs, reports, training
from traincraft_assets.defs.k8s import executor
from traincraft_assets.defs.resources import default_resources


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """Definitions with the given resources (tests point the store and inbox at temp dirs)."""
    settings = load_settings()
    graph = dg.Definitions.merge(
        data.defs,
        foundation.defs,
        training.defs,
        reports.defs,
        deploy.defs,
        comparison.defs,
        dg.Definitions(resources=resources or default_resources(settings), executor=executor(settings)),
    )
    return dg.Definitions.merge(graph, jobs.build(settings, graph), automation.build(settings))


defs = build_defs()
