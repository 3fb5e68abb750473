"""Preflight: the first step of a run checks the settings of every step in the run.

Dagster checks config types when a run is launched; whether the settings fit the data and the
files (an e0s dict missing an element of the data, a foundation path that is not a MACE model,
an input file outside the project's roots) it cannot know. Every step runs `preflight` before
it does anything (defs/steps.py), so whichever step of a run starts first reports the problems
of all of them and nothing is written: a bad e0s dict no longer waits for dataset, split and
replay. Each asset's config type and check are registered by its decorator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from traincraft_assets.core.artifacts import FoundationModel
from traincraft_assets.core.foundation import foundation_preview
from traincraft_assets.core.paths import allowed_roots, path_problems
from traincraft_assets.core.settings import Settings
from traincraft_assets.core.store import ArtifactStore
from traincraft_assets.core.training import Launch
from traincraft_assets.core.training.finetune import DataFacts
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import SettingsConfig


class PlannedRun:
    """What a step's check may ask about the run being started, before any step has worked."""

    def __init__(
        self,
        context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
        store: ArtifactStore,
        settings: Settings,
    ):
        self.context = context
        self.store = store
        self.launch = Launch.from_settings(settings)
        self.roots: list[Path] = allowed_roots(store.root, settings)
        self.assets = {key.to_user_string() for key in context.job_def.asset_layer.selected_asset_keys}

    def config(self, asset: str) -> SettingsConfig:
        """`asset`'s config in this run, defaults filled in."""
        config_type, _ = CHECKS[asset]
        return config_type(**self.context.run.run_config.get("ops", {}).get(asset, {}).get("config", {}))

    @functools.cached_property
    def data(self) -> DataFacts | None:
        """Elements, labels and levels of theory of the labelled batches (their latest
        materializations), None before any batch is labelled."""
        facts = instance.labelled_batch_facts(self.context.instance)
        return DataFacts(tuple(facts[0]), tuple(facts[1]), facts[2]) if facts else None

    @functools.cached_property
    def foundation(self) -> dict | None:
        """The foundation this run's training will use: previewed from foundation_model's
        settings when this run stages it, else the staged one; None when not known yet."""
        if FoundationModel.asset in self.assets:
            return foundation_preview(self.config(FoundationModel.asset).to_settings(), self.roots)[0]
        sha = instance.artifact_version(self.context.instance, self.context.run.run_id, FoundationModel.asset)
        return self.store.open(FoundationModel, sha).info if sha else None


Check = Callable[[SettingsConfig, PlannedRun], list[str]]
CHECKS: dict[str, tuple[type[SettingsConfig], Check | None]] = {}


def register_preflight(asset: str, config_type: type[SettingsConfig], check: Check | None = None) -> None:
    """Declare `asset`'s config (its input-path fields are checked) and an optional check of it
    against the planned run, returning problems as sentences. One asset, one declaration."""
    if asset in CHECKS and CHECKS[asset] != (config_type, check):
        raise ValueError(f"the preflight of {asset!r} is declared twice: two assets with one name?")
    CHECKS[asset] = (config_type, check)


def preflight(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, store: ArtifactStore, settings: Settings
) -> None:
    """Fail the step, before it works, if the settings of any step in this run cannot work.
    Once a step of the run has succeeded, its preflight passed: later steps (a pod each, on
    Kubernetes) skip it."""
    if instance.a_step_succeeded(context.instance, context.run.run_id):
        return
    run = PlannedRun(context, store, settings)
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
