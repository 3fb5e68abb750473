"""`traincraft compare`: every fine-tuning strategy on the same data and budget, one run per
arm, then the table and the figures (core/comparison.py)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from traincraft_assets.app.demo import Say, prepare, run_job
from traincraft_assets.core.artifacts import ReplaySubset, Split, StrategyComparison
from traincraft_assets.core.comparison import ARM_NAMES, QUICK, markdown_table
from traincraft_assets.defs import instance
from traincraft_assets.defs.jobs import COMPARE

SHARED_INPUTS = ("dataset", "split", "replay_subset")


def arm_run_config(run_config: dict, quick: bool) -> dict:
    """strategy_arm's run config: its entry in `run_config`, with --quick's budget over it."""
    arm_config = dict(run_config.get("ops", {}).get("strategy_arm", {}).get("config", {}))
    if quick:
        arm_config.update({k: list(v) if isinstance(v, tuple) else v for k, v in QUICK.items()})
    return {"ops": {"strategy_arm": {"config": arm_config}}}


def run(
    dagster_instance: dg.DagsterInstance,
    defs: dg.Definitions,
    run_config: dict,
    batches_dir: Path,
    inbox: Path,
    quick: bool = False,
    arms: list[str] | None = None,
    say: Say = print,
) -> dict:
    """Every arm of the strategy comparison (one run each), then the table. Starts from the
    instance's latest split, replay subset and foundation; on a fresh instance it prepares the
    demo first. Returns strategy_comparison's comparison.json, with its artifact."""
    unknown = sorted(set(arms or ()) - set(ARM_NAMES))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; expected some of {list(ARM_NAMES)}.")
    has_split = instance.latest_data_version(dagster_instance, Split.asset) is not None
    if not has_split:  # nothing here yet: the demo's data and foundation
        prepare(dagster_instance, defs, run_config, batches_dir, inbox, frames_per_kind=30, say=say)
    if not has_split or instance.latest_data_version(dagster_instance, ReplaySubset.asset) is None:
        ops = {k: v for k, v in run_config.get("ops", {}).items() if k in SHARED_INPUTS}
        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=dagster_instance,
            asset_selection=[dg.AssetKey(name) for name in SHARED_INPUTS],
            run_config={"ops": ops},
            raise_on_error=True,
        )
    config = arm_run_config(run_config, quick)
    for arm in arms or ARM_NAMES:
        run_job(defs, COMPARE, dagster_instance, config, partition=arm, say=say)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance, asset_selection=[dg.AssetKey(StrategyComparison.asset)], raise_on_error=True
    )
    say(f"strategy_comparison run {result.run_id} succeeded")
    sha = instance.latest_data_version(dagster_instance, StrategyComparison.asset)
    artifact = defs.resources["store"].store().open(StrategyComparison, sha)
    return {**json.loads(artifact.table_path.read_text()), "artifact": artifact}


def text(content: dict) -> str:
    """The comparison as the terminal shows it: the table, the findings, where the files are."""
    artifact = content["artifact"]
    return "\n".join(
        [
            "",
            "strategy comparison (meV/atom, meV/Å; forgetting: frames the foundation never trained on):",
            markdown_table(content["rows"]),
            "",
            "findings: " + json.dumps(content["findings"], indent=1),
            "",
            f"table: {artifact.markdown_path}",
            f"plots: {artifact.error_plot_path}",
            f"       {artifact.forgetting_plot_path}",
        ]
    )
