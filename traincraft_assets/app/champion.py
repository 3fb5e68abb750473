"""`traincraft promote` and `traincraft rollback`: a person chooses the champion, and the
choice is recorded like the rule's (champion_model with config `promote`)."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.artifacts import ChampionModel
from traincraft_assets.core.champion import ChampionError
from traincraft_assets.defs import instance
from traincraft_assets.defs.deploy.assets import DECISION


def decide(
    dagster_instance: dg.DagsterInstance,
    defs: dg.Definitions,
    promote: str = "",
    reason: str = "",
    loggers: dict | None = None,
) -> dict:
    """Materialize champion_model: the rule decides, or `promote` (a model version or run id)
    is chosen by hand. Returns the decision. `loggers`: the run's logger config (a caller that
    prints its own progress quiets Dagster's)."""
    name = ChampionModel.asset
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance,
        asset_selection=[dg.AssetKey(name)],
        run_config={
            "ops": {name: {"config": {"promote": promote, "reason": reason}}},
            **({"loggers": loggers} if loggers else {}),
        },
        raise_on_error=False,
    )
    if not result.success:
        error = result.failure_data_for_node(name).error if result.failure_data_for_node(name) else None
        raise ChampionError((error.cause or error).message.strip() if error else f"{name} failed")
    events = [*result.asset_materializations_for_node(name), *result.asset_observations_for_node(name)]
    if not events:
        raise ChampionError(f"{name} recorded no decision")
    return events[0].metadata[DECISION].value


def previous_champion(dagster_instance: dg.DagsterInstance) -> str:
    """The fine-tuned model that served before the current champion."""
    serving = []
    for record in instance.recent_materializations(dagster_instance, ChampionModel.asset, 200):
        model = record.asset_materialization.metadata["serving_finetuned_model"].value
        if not serving or serving[-1] != model:
            serving.append(model)
    if len(serving) < 2:
        raise ChampionError(f"nothing to roll back to: {'one champion so far' if serving else 'no champion yet'}.")
    return serving[1]
