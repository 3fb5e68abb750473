"""Preflight: the first step of a run checks the settings of every step in the run.

Dagster checks config types when a run is launched; whether the settings fit the data and the
files (an e0s dict missing an element of the data, a foundation path that is not a MACE model,
an input file outside the project's roots) it cannot know. Every asset calls `preflight`
before it does anything, so whichever step of a run starts first reports the problems of all
of them and nothing is written: a bad e0s dict no longer waits for dataset, split and replay.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import dagster as dg

from traincraft_assets.core.artifacts import FoundationModel, LabelledFrames
from traincraft_assets.core.foundation import foundation_preview
from traincraft_assets.core.paths import allowed_roots, path_problems
from traincraft_assets.core.training.finetune import DataFacts
from traincraft_assets.defs.config import SettingsConfig
from traincraft_assets.defs.lineage import latest_artifact
from traincraft_assets.defs.partitions import data_batches
from traincraft_assets.defs.resources import StoreResource


class PlannedRun:
    """What a step's check may ask about the run being started, before any step has worked."""

    def __init__(self, context: dg.AssetExecutionContext, store: StoreResource):
        self.context = context
        self.store = store.store()
        self.roots = allowed_roots(self.store.root)
        self.assets = {key.to_user_string() for key in context.job_def.asset_layer.selected_asset_keys}

    def config(self, asset: str) -> SettingsConfig:
        """`asset`'s config in this run, defaults filled in."""
        config_type, _ = CHECKS[asset]
        return config_type(**self.context.run_config.get("ops", {}).get(asset, {}).get("config", {}))

    @functools.cached_property
    def data(self) -> DataFacts | None:
        """Elements and labels of the labelled batches (their latest materializations), None
        before any batch is labelled."""
        instance = self.context.instance
        batches = set(instance.get_dynamic_partitions(data_batches.name))
        seen, found_elements, found_labels, cursor = set(), set(), set(), None
        while batches - seen:
            result = instance.fetch_materializations(dg.AssetKey(LabelledFrames.asset), limit=1000, cursor=cursor)
            for record in result.records:
                event = record.asset_materialization
                if event.partition in batches and event.partition not in seen:
                    seen.add(event.partition)
                    found_elements.update(event.metadata["elements"].value)
                    found_labels.update(event.metadata["labels"].value)
            if not result.has_more:
                break
            cursor = result.cursor
        if not seen:
            return None
        return DataFacts(tuple(sorted(found_elements)), tuple(sorted(found_labels)))

    @functools.cached_property
    def foundation(self) -> dict | None:
        """The foundation this run's training will use: previewed from foundation_model's
        settings when this run stages it, else the staged one; None when not known yet."""
        if FoundationModel.asset in self.assets:
            return foundation_preview(self.config(FoundationModel.asset).to_settings(), self.roots)[0]
        staged = latest_artifact(self.context, self.store, FoundationModel)
        return staged.info if staged else None


Check = Callable[[SettingsConfig, PlannedRun], list[str]]
CHECKS: dict[str, tuple[type[SettingsConfig], Check | None]] = {}


def register_preflight(asset: str, config_type: type[SettingsConfig], check: Check | None = None) -> None:
    """Declare `asset`'s config (its input-path fields are checked) and an optional check of it
    against the planned run, returning problems as sentences."""
    CHECKS[asset] = (config_type, check)


def preflight(context: dg.AssetExecutionContext, store: StoreResource) -> None:
    """Fail the step, before it works, if the settings of any step in this run cannot work.
    Once a step of the run has succeeded, its preflight passed: later steps (a pod each, on
    Kubernetes) skip it."""
    if context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=1
    ).records:
        return
    run = PlannedRun(context, store)
    problems = []
    for asset in sorted(run.assets & set(CHECKS)):
        _, check = CHECKS[asset]
        config = run.config(asset)
        found = path_problems(config.to_settings(), run.roots) + (check(config, run) if check else [])
        problems += [f"{asset}: {problem}" for problem in dict.fromkeys(found)]
    if problems:
        listed = "\n".join(f"- {p}" for p in problems)
        raise dg.Failure(
            description=f"this run's settings cannot work; nothing was run or written:\n{listed}\n"
            "Fix the run config (launchpad, or the YAML given to -c / TRAINCRAFT_RUN_CONFIG) and launch again.",
            allow_retries=False,
        )
