"""`traincraft`: ingest data batches, run the demo locally, submit runs to a deployment.

Each verb is a few lines over core (the inbox rules) or Dagster's API (jobs on the local
instance); the heavy imports happen inside the verb, so `traincraft --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEMO_RUN_CONFIG = Path(__file__).parent / "demo" / "run_config.yaml"


def local_home() -> Path:
    """This directory's Dagster home, ./.dagster_home. With ./dagster.yaml present it is linked
    in, so `dagster dev` with DAGSTER_HOME set here reads the same instance config."""
    home = Path.cwd() / ".dagster_home"
    home.mkdir(exist_ok=True)
    config, link = Path.cwd() / "dagster.yaml", home / "dagster.yaml"
    if config.is_file() and not link.is_symlink() and not link.exists():
        link.symlink_to(config)
    return home


def local_instance():
    """The instance `traincraft ui`, `dagster dev` and `dagster asset materialize` use from this
    directory: $DAGSTER_HOME when set, else ./.dagster_home configured by ./dagster.yaml (if present)."""
    import os

    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    if os.environ.get("DAGSTER_HOME"):
        return DagsterInstance.get()
    home = local_home()
    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home), config_dir=str(home)))


def ui(port: int) -> int:
    """`dagster dev` on this directory's instance (the one every verb here uses). DAGSTER_HOME
    is set, so dagster dev makes no temporary home of its own: that `.tmp_dagster_home_*`
    folder is left behind when a terminal closes under it."""
    import os
    import subprocess

    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(local_home()))
    dagster = Path(sys.executable).parent / "dagster"
    return subprocess.call([str(dagster), "dev", "-m", "traincraft_assets", "-p", str(port)], env=env)


def ingest(paths: list[Path], instance, inbox_path: Path | None = None) -> list[str]:
    """Take batch files into the inbox (core.inbox's rules) and register one partition each."""
    from traincraft_assets.core.inbox import Inbox
    from traincraft_assets.core.settings import load_settings
    from traincraft_assets.defs.data import data_batches

    batches = Inbox(inbox_path or load_settings().inbox).ingest(paths)
    for path, batch in zip(paths, batches):
        print(f"ingested {path} ({batch.n_frames} frames) as batch {batch.name!r}")
    keys = [batch.name for batch in batches]
    instance.add_dynamic_partitions(data_batches.name, keys)
    return keys


def retire(name: str, reason: str, instance, inbox_path: Path | None = None) -> Path:
    """Take a batch out of future datasets: core.inbox moves its file aside and records why;
    its partition is removed, so the dataset and everything downstream are rebuilt without it.
    Artifacts already made from it stay in the store, with their lineage."""
    from dagster import AssetKey, AssetObservation, MetadataValue

    from traincraft_assets.core.artifacts import LabelledFrames
    from traincraft_assets.core.frames import FrameError
    from traincraft_assets.core.inbox import Inbox
    from traincraft_assets.core.settings import load_settings
    from traincraft_assets.defs.data import data_batches

    if not instance.has_dynamic_partition(data_batches.name, name):
        known = instance.get_dynamic_partitions(data_batches.name)
        raise FrameError(f"no data batch named {name!r} is registered; registered batches: {known or 'none'}.")
    moved = Inbox(inbox_path or load_settings().inbox).retire(name, reason)
    instance.delete_dynamic_partition(data_batches.name, name)
    instance.report_runless_asset_event(
        AssetObservation(
            asset_key=AssetKey(LabelledFrames.asset),
            description=f"batch {name!r} retired: {reason}",
            metadata={"retired_batch": name, "reason": reason, "file": MetadataValue.path(str(moved))},
        )
    )
    print(f"retired batch {name!r} ({reason}); its file is kept at {moved}. The next dataset leaves it out.")
    return moved


def decide_champion(instance, promote: str = "", reason: str = "", defs=None) -> dict:
    """Materialize champion_model: the rule decides, or `promote` (a model version or run id)
    is chosen by hand. Returns the decision."""
    from dagster import AssetKey

    if defs is None:
        from traincraft_assets.defs.definitions import defs
    from traincraft_assets.core.champion import ChampionError

    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[AssetKey("champion_model")],
        run_config={"ops": {"champion_model": {"config": {"promote": promote, "reason": reason}}}},
        raise_on_error=False,
    )
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            raise ChampionError((error.cause or error).message.strip() if error else "champion_model failed")
    for event in result.all_events:
        if event.asset_key == AssetKey("champion_model") and (
            event.is_step_materialization or event.event_type_value == "ASSET_OBSERVATION"
        ):
            data = event.event_specific_data
            decision = (
                (data.materialization if hasattr(data, "materialization") else data.asset_observation)
                .metadata["decision"]
                .value
            )
            print(f"{'promoted' if decision['promoted'] else 'not promoted'}: {decision['reason']}")
            return decision
    raise ChampionError("champion_model recorded no decision")


def previous_champion(instance) -> str:
    """The fine-tuned model that served before the current champion."""
    from dagster import AssetKey

    from traincraft_assets.core.champion import ChampionError

    serving = []
    for record in instance.fetch_materializations(AssetKey("champion_model"), limit=200).records:
        model = record.asset_materialization.metadata["serving_finetuned_model"].value
        if not serving or serving[-1] != model:
            serving.append(model)
    if len(serving) < 2:
        raise ChampionError(f"nothing to roll back to: {'one champion so far' if serving else 'no champion yet'}.")
    return serving[1]


def prepare_demo(instance, run_config: dict, batches_dir: Path, defs, inbox: Path | None, frames_per_kind: int) -> None:
    """Write the demo batches, ingest them, label each (one run per partition) and stage the
    foundation: everything a fine-tuning or a comparison starts from."""
    from traincraft_assets.core.demo import write_target_batches
    from traincraft_assets.defs.jobs import LABEL_BATCH, STAGE_FOUNDATION

    keys = ingest(write_target_batches(batches_dir, frames_per_kind), instance, inbox)
    label_job = defs.resolve_job_def(LABEL_BATCH)
    for key in keys:
        result = label_job.execute_in_process(instance=instance, partition_key=key, raise_on_error=True)
        print(f"labelled batch {key!r} (run {result.run_id})")
    run_job(defs, STAGE_FOUNDATION, instance, run_config)


def run_job(defs, name: str, instance, run_config: dict, partition: str | None = None):
    """Run one of the project's jobs in this process with its part of a whole-graph config."""
    from traincraft_assets.defs.jobs import run_config_for

    job = defs.resolve_job_def(name)
    result = job.execute_in_process(
        instance=instance, run_config=run_config_for(job, run_config), partition_key=partition, raise_on_error=True
    )
    print(f"{name}{f' [{partition}]' if partition else ''} run {result.run_id} succeeded")
    return result


def latest_metadata(instance, asset: str) -> dict:
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def run_demo(
    instance, run_config: dict, batches_dir: Path, defs=None, inbox: Path | None = None, frames_per_kind: int = 30
) -> dict:
    """Prepare the demo (batches labelled, foundation staged), then fine-tune and report in one
    run; return parity_report's metadata."""
    from traincraft_assets.core.artifacts import ParityReport
    from traincraft_assets.defs.jobs import FINETUNE

    if defs is None:
        from traincraft_assets.defs.definitions import defs

    prepare_demo(instance, run_config, batches_dir, defs, inbox, frames_per_kind)
    run_job(defs, FINETUNE, instance, run_config)
    return latest_metadata(instance, ParityReport.asset)


def _versus(error: float, baseline: float) -> str:
    """'3.1x better' or '1.4x WORSE': the factor is always >= 1, so it reads the same both ways."""
    if error == baseline:
        return "the same"
    word = "better" if error < baseline else "WORSE"
    low, high = sorted((error, baseline))
    return f"{high / low:.1f}x {word}" if low > 0 else word


def demo_summary(report: dict, verdicts: list[dict] | None) -> str:
    """The demo's closing lines, in words: the fine-tuned model against the zero-shot
    foundation, what it forgot, the gates' verdicts, and where to look next."""
    f, f0 = report["rmse_f_mev_per_a"], report["foundation_rmse_f_mev_per_a"]
    e, e0 = report["rmse_e_mev_per_atom"], report["foundation_rmse_e_mev_per_atom"]
    lines = [
        f"Fine-tuned vs zero-shot foundation on the valid set ({report['n_valid']} frames):",
        f"  forces    {f:7.1f} vs {f0:7.1f} meV/Å      ({_versus(f, f0)})",
        f"  energies  {e:7.1f} vs {e0:7.1f} meV/atom   ({_versus(e, e0)})",
        f"Forgetting, on {report['n_replay_heldout']} held-out frames of the foundation's own distribution: "
        f"errors {report['forgetting_f_ratio']:.2f}x (forces) and {report['forgetting_e_ratio']:.2f}x (energies) "
        "the foundation's; 1x forgets nothing.",
    ]
    if "replay_head_forgetting_f_ratio" in report:
        lines.append(
            f"  Its replay head, which predicts the foundation's theory as those labels do: "
            f"{report['replay_head_forgetting_f_ratio']:.2f}x (forces) and {report['replay_head_forgetting_e_ratio']:.2f}x "
            "(energies). The fine-tuned head's errors there also hold the change of theory it learned."
        )
    if verdicts is None:
        lines.append("Quality gates: not all have judged this model yet.")
    else:
        failed = [v for v in verdicts if not v["passed"]]
        lines.append(f"Quality gates: {len(verdicts) - len(failed)} of {len(verdicts)} passed.")
        lines += [f"  {v['gate']} failed: {v['reason']}" for v in failed]
    lines += [
        f"Report: {report['report_path']}",
        "Plots and every asset: .venv/bin/traincraft ui, then http://127.0.0.1:3000 (parity_report's page).",
    ]
    return "\n".join(lines)


def arm_run_config(run_config: dict, quick: bool) -> dict:
    """strategy_arm's run config: its entry in `run_config`, with --quick's budget over it."""
    from traincraft_assets.core.comparison import QUICK

    arm_config = dict(run_config.get("ops", {}).get("strategy_arm", {}).get("config", {}))
    if quick:
        arm_config.update({k: list(v) if isinstance(v, tuple) else v for k, v in QUICK.items()})
    return {"ops": {"strategy_arm": {"config": arm_config}}}


def run_compare(
    instance,
    run_config: dict,
    batches_dir: Path,
    quick: bool = False,
    arms: list[str] | None = None,
    defs=None,
    inbox: Path | None = None,
) -> dict:
    """Every arm of the strategy comparison (one run each), then the table. Starts from the
    instance's latest split, replay subset and foundation; on a fresh instance it prepares the
    demo first. Returns strategy_comparison's comparison.json."""
    from dagster import AssetKey

    from traincraft_assets.core.artifacts import ReplaySubset, Split, StrategyComparison
    from traincraft_assets.core.comparison import ARM_NAMES
    from traincraft_assets.defs.jobs import COMPARE
    from traincraft_assets.defs.lineage import latest_data_version

    if defs is None:
        from traincraft_assets.defs.definitions import defs
    unknown = sorted(set(arms or ()) - set(ARM_NAMES))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; expected some of {list(ARM_NAMES)}.")
    has_split = latest_data_version(instance, Split.asset) is not None
    if not has_split:  # nothing here yet: the demo's data and foundation
        prepare_demo(instance, run_config, batches_dir, defs, inbox, frames_per_kind=30)
    if not has_split or latest_data_version(instance, ReplaySubset.asset) is None:
        selection = [AssetKey(name) for name in ("dataset", "split", "replay_subset")]
        ops = {k: v for k, v in run_config.get("ops", {}).items() if k in ("dataset", "split", "replay_subset")}
        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=selection, run_config={"ops": ops}, raise_on_error=True
        )
    config = arm_run_config(run_config, quick)
    for arm in arms or ARM_NAMES:
        run_job(defs, COMPARE, instance, config, partition=arm)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey(StrategyComparison.asset)], raise_on_error=True
    )
    print(f"strategy_comparison run {result.run_id} succeeded")
    sha = latest_data_version(instance, StrategyComparison.asset)
    artifact = defs.resources["store"].store().open(StrategyComparison, sha)
    return {**json.loads(artifact.table_path.read_text()), "artifact": artifact}


def verify(instance, store_root: Path | None = None) -> int:
    """Re-hash every artifact in the store; report changed ones, unknown folders, stale
    staging, and orphans (artifacts no materialization on this instance records). Returns the
    number of problems."""
    from traincraft_assets.core.artifacts import CATALOGUE
    from traincraft_assets.core.settings import load_settings
    from traincraft_assets.core.store import ArtifactStore
    from traincraft_assets.defs.lineage import recorded_data_versions

    store = ArtifactStore(store_root or load_settings().store)
    problems = store.verify(CATALOGUE)
    checked = 0
    for asset in CATALOGUE:
        folder = store.root / asset
        recorded = recorded_data_versions(instance, asset)
        for artifact in sorted(folder.iterdir()) if folder.is_dir() else []:
            checked += 1
            if artifact.name not in recorded:
                problems.append((artifact, "orphan: no materialization on this Dagster instance records it"))
    for path, why in problems:
        print(f"{path}: {why}")
    print(f"checked {checked} artifacts in {store.root}: {len(problems) or 'no'} problem(s)")
    return len(problems)


TERMINAL = {"SUCCESS": 0, "FAILURE": 1, "CANCELED": 1}
IMPLICIT_ASSET_JOB = "__ASSET_JOB"  # Dagster's job for an ad-hoc asset selection


def submit(
    url: str,
    select: list[str],
    job: str | None = None,
    partition: str | None = None,
    run_config: dict | None = None,
    wait: bool = False,
    poll_s: float = 2.0,
) -> int:
    """Launch a run on a Dagster deployment through its GraphQL API (so the deployment's run
    launcher runs it: on Kubernetes, as pods); print its URL; with `wait`, follow its status
    to the end. Returns the exit code: 0 success, 1 the run failed, 2 it could not be launched."""
    import time
    from urllib.parse import urlsplit

    import requests
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parts = urlsplit(url if "://" in url else f"http://{url}")
    client = DagsterGraphQLClient(
        parts.hostname or "localhost",
        port_number=parts.port,
        use_https=parts.scheme == "https",
        path_prefix=parts.path.rstrip("/"),
    )
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    try:
        requests.get(f"{base}/server_info", timeout=10).raise_for_status()
    except requests.exceptions.RequestException as exc:
        print(
            f"traincraft: could not reach Dagster at {base} ({exc}). Is the webserver running and "
            "reachable from here (on a cluster: kubectl -n traincraft port-forward "
            "svc/<release>-dagster-webserver 3000:80, then --url http://localhost:3000)?",
            file=sys.stderr,
        )
        return 2
    config = dict(run_config or {})
    if select and "ops" in config:  # a whole-graph config file: keep what the selection runs
        config["ops"] = {name: value for name, value in config["ops"].items() if name in select}
    elif job and "ops" in config:  # the deployment runs this code: trim to the job's steps here
        from traincraft_assets.defs.definitions import defs
        from traincraft_assets.defs.jobs import run_config_for

        if job in {j.name for j in defs.resolve_all_job_defs()}:
            config = run_config_for(defs.resolve_job_def(job), config)
    try:
        run_id = client.submit_job_execution(
            job or IMPLICIT_ASSET_JOB,
            run_config=config,
            tags={"dagster/partition": partition} if partition else None,
            asset_selection=None if job else select,
        )
    except DagsterGraphQLClientError as exc:
        reason = exc.args[0] if exc.args else "unknown error"
        detail = getattr(exc, "body", None) or (exc.args[1] if len(exc.args) > 1 else "")
        print(f"traincraft: {base} refused the run: {reason}\n{detail}".rstrip(), file=sys.stderr)
        return 2
    print(f"{base}/runs/{run_id}")
    if not wait:
        return 0
    status = None
    while status not in TERMINAL:
        time.sleep(poll_s)
        current = client.get_run_status(run_id).value
        if current != status:
            print(f"run {run_id}: {current}", flush=True)
            status = current
    return TERMINAL[status]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traincraft", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_ingest = sub.add_parser("ingest", help="copy batch files into the inbox and register them")
    p_ingest.add_argument("paths", nargs="+", type=Path)
    p_retire = sub.add_parser("retire", help="take a batch out of future datasets, with the reason")
    p_retire.add_argument("batch", help="the batch (partition) name: its file name")
    p_retire.add_argument("--reason", required=True, help="why, kept with the batch and shown in the UI")
    p_promote = sub.add_parser("promote", help="make a fine-tuned model the champion by hand")
    p_promote.add_argument("model", help="the finetuned_model version (sha256) or the run that made it")
    p_promote.add_argument("--reason", required=True, help="why, kept in the champion's history")
    p_rollback = sub.add_parser("rollback", help="make the previous champion the champion again")
    p_rollback.add_argument("--reason", required=True, help="why, kept in the champion's history")
    p_demo = sub.add_parser("demo", help="generate demo data and materialize the whole graph")
    p_demo.add_argument("--config", type=Path, default=DEMO_RUN_CONFIG, help="run config YAML")
    p_demo.add_argument("--batches-dir", type=Path, default=Path(".traincraft/demo_batches"))
    p_compare = sub.add_parser(
        "compare", help="train every strategy at several target-set sizes on the same budget; table and plots"
    )
    p_compare.add_argument(
        "--config", type=Path, default=DEMO_RUN_CONFIG, help="run config YAML (strategy_arm: budget)"
    )
    p_compare.add_argument("--quick", action="store_true", help="two small sizes, 3 epochs: minutes on a laptop")
    p_compare.add_argument("--arms", help="comma-separated subset of the arms (default: all)")
    p_compare.add_argument("--batches-dir", type=Path, default=Path(".traincraft/demo_batches"))
    sub.add_parser("verify", help="re-hash every artifact in the store; report changes and orphans")
    p_ui = sub.add_parser("ui", help="the Dagster UI (dagster dev) on this directory's instance")
    p_ui.add_argument("--port", type=int, default=3000)
    p_submit = sub.add_parser("submit", help="launch a run on a Dagster deployment (e.g. the cluster)")
    p_submit.add_argument("--url", required=True, help="the Dagster webserver, e.g. http://localhost:3000")
    what = p_submit.add_mutually_exclusive_group(required=True)
    what.add_argument("--select", help="asset names, comma-separated, e.g. finetuned_model,parity_report")
    what.add_argument("--job", help="a job by name: label_batch, stage_foundation or finetune")
    p_submit.add_argument("--partition", help="the data_batches partition, for labelled_frames")
    p_submit.add_argument("-c", "--config", type=Path, help="run config YAML (examples/*.yaml)")
    p_submit.add_argument("--wait", action="store_true", help="follow the run; exit 1 if it fails")
    return parser


def print_comparison(content: dict) -> None:
    from traincraft_assets.core.comparison import markdown_table

    artifact = content["artifact"]
    print("\nstrategy comparison (meV/atom, meV/Å; forgetting: frames the foundation never trained on):")
    print(markdown_table(content["rows"]))
    print("\nfindings:", json.dumps(content["findings"], indent=1))
    print(
        f"\ntable: {artifact.markdown_path}\nplots: {artifact.error_plot_path}\n       {artifact.forgetting_plot_path}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import yaml

    if args.command == "ui":
        return ui(args.port)
    if args.command == "submit":
        run_config = yaml.safe_load(args.config.read_text()) if args.config else None
        select = [name.strip() for name in args.select.split(",")] if args.select else []
        return submit(args.url, select, args.job, args.partition, run_config, args.wait)

    from traincraft_assets.core.champion import ChampionError
    from traincraft_assets.core.frames import FrameError
    from traincraft_assets.core.settings import SettingsError

    try:
        with local_instance() as instance:
            if args.command == "ingest":
                ingest(args.paths, instance)
            elif args.command == "retire":
                retire(args.batch, args.reason, instance)
            elif args.command == "promote":
                decide_champion(instance, args.model, args.reason)
            elif args.command == "rollback":
                decide_champion(instance, previous_champion(instance), f"rollback: {args.reason}")
            elif args.command == "verify":
                return 1 if verify(instance) else 0
            elif args.command == "compare":
                arms = [a.strip() for a in args.arms.split(",")] if args.arms else None
                content = run_compare(
                    instance, yaml.safe_load(args.config.read_text()), args.batches_dir, args.quick, arms
                )
                print_comparison(content)
            else:
                run_config = yaml.safe_load(args.config.read_text())
                from traincraft_assets.defs.deploy.assets import gate_verdicts
                from traincraft_assets.defs.lineage import latest_data_version

                metadata = run_demo(instance, run_config, args.batches_dir)
                print(
                    "\n"
                    + demo_summary(metadata, gate_verdicts(instance, latest_data_version(instance, "finetuned_model")))
                )
    except (FrameError, FileNotFoundError, SettingsError, ChampionError, ValueError) as exc:
        print(f"traincraft: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
