"""The one Definitions object: each domain's assets and checks, the jobs and automation, the
resources and the executor, built for the deployment the settings name.

Nothing here runs at import: `defs` is a function Dagster calls when it loads the code location
(`dagster dev -m traincraft_assets`), and tests and the `traincraft` verbs call `build_defs`.
"""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.settings import Settings, load_settings
from traincraft_assets.defs import (
    automation,
    comparison,
    data,
    deploy,
    foundation,
    jobs,
    loop,
    reports,
    spectra,
    training,
)
from traincraft_assets.defs.k8s import Deployment
from traincraft_assets.defs.resources import default_resources

ASSETS = [
    *data.ASSETS,
    *foundation.ASSETS,
    *training.ASSETS,
    *reports.ASSETS,
    *deploy.ASSETS,
    *comparison.ASSETS,
    *loop.ASSETS,
    *spectra.ASSETS,
]
CHECKS = [*data.CHECKS, *deploy.CHECKS]


def build_defs(settings: Settings | None = None, resources: dict | None = None) -> dg.Definitions:
    """The definitions for `settings` (default: this process's environment) with the given
    resources (default: the settings' store and inbox; tests point them at temp dirs)."""
    settings = settings or load_settings()
    deployment = Deployment.from_settings(settings)
    graph = dg.Definitions(
        assets=[asset.build(deployment) for asset in ASSETS],
        asset_checks=[check.build(deployment) for check in CHECKS],
        resources=resources or default_resources(settings),
        executor=deployment.executor(),
    )
    project_jobs = jobs.build(settings, graph)
    return dg.Definitions.merge(graph, project_jobs, automation.build(settings, list(project_jobs.jobs)))


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads: the definitions for this process's environment."""
    return build_defs()
