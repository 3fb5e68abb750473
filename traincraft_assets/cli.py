"""`traincraft`: ingest data batches and run the demo on the local Dagster instance."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from traincraft_assets.core.frames import FrameError, read_frames
from traincraft_assets.core.store import file_sha256

DEMO_RUN_CONFIG = Path(__file__).parent / "demo" / "run_config.yaml"


def local_instance():
    """The instance `dagster dev` and `dagster asset materialize` would use from this directory:
    $DAGSTER_HOME when set, else ./.dagster_home configured by ./dagster.yaml (if present)."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    if os.environ.get("DAGSTER_HOME"):
        return DagsterInstance.get()
    home = Path.cwd() / ".dagster_home"
    home.mkdir(exist_ok=True)
    config_dir = Path.cwd() if (Path.cwd() / "dagster.yaml").is_file() else home
    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home), config_dir=str(config_dir)))


def inbox_dir() -> Path:
    from traincraft_assets.defs.resources import DEFAULT_INBOX

    return Path(os.environ.get("TRAINCRAFT_INBOX", DEFAULT_INBOX)).absolute()


def ingest(paths: list[Path], instance, inbox: Path | None = None) -> list[str]:
    """Copy batch files into the inbox and register one data_batches partition per file.

    Each file is read first, so a malformed file is refused before anything changes. A batch is
    immutable: the same name with different content is refused (use a new file name).
    """
    from traincraft_assets.defs.data import data_batches

    inbox = inbox or inbox_dir()
    names = [path.name for path in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FrameError(
            f"several files are named {repeated}; the file name is the batch name, so rename "
            "them before ingesting."
        )
    counts = {}
    for path in paths:  # every file is checked before any is copied
        counts[path] = len(read_frames(path))
        target = inbox / path.name
        if target.exists() and file_sha256(target) != file_sha256(path):
            raise FrameError(
                f"{path}: a different batch named {path.name!r} is already in the inbox "
                f"({target}). Batches are immutable; give the new file a new name."
            )
    inbox.mkdir(parents=True, exist_ok=True)
    for path, n in counts.items():
        target = inbox / path.name
        if not target.exists():
            with tempfile.NamedTemporaryFile(dir=inbox, prefix=".incoming-", delete=False) as tmp:
                shutil.copyfile(path, tmp.name)
            os.replace(tmp.name, target)
        print(f"ingested {path} ({n} frames) as batch {path.name!r}")
    keys = [path.name for path in paths]
    instance.add_dynamic_partitions(data_batches.name, keys)
    return keys


def run_demo(
    instance, run_config: dict, batches_dir: Path, defs=None, inbox: Path | None = None, frames_per_kind: int = 30
) -> dict:
    """Write the demo batches, ingest them, label each (one run per partition), stage the
    foundation, then fine-tune and report in one run; return parity_report's metadata."""
    from dagster import AssetKey

    from traincraft_assets.core.demo import write_target_batches

    if defs is None:
        from traincraft_assets.defs.definitions import defs

    keys = ingest(write_target_batches(batches_dir, frames_per_kind), instance, inbox)
    label_job = defs.resolve_job_def("label_batch")
    for key in keys:
        result = label_job.execute_in_process(instance=instance, partition_key=key, raise_on_error=True)
        print(f"labelled batch {key!r} (run {result.run_id})")
    for name in ("stage_foundation", "finetune"):
        job = defs.resolve_job_def(name)
        result = job.execute_in_process(
            instance=instance, run_config=run_config_for(job, run_config), raise_on_error=True
        )
        print(f"{name} run {result.run_id} succeeded")
    event = instance.get_latest_materialization_event(AssetKey("parity_report"))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def run_config_for(job, run_config: dict) -> dict:
    """The part of a whole-graph run config (examples/*.yaml) that one job accepts."""
    ops = {k: v for k, v in run_config.get("ops", {}).items() if job.graph.has_node_named(k)}
    return {**run_config, "ops": ops}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traincraft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_ingest = sub.add_parser("ingest", help="copy batch files into the inbox and register them")
    p_ingest.add_argument("paths", nargs="+", type=Path)
    p_demo = sub.add_parser("demo", help="generate demo data and materialize the whole graph")
    p_demo.add_argument("--config", type=Path, default=DEMO_RUN_CONFIG, help="run config YAML")
    p_demo.add_argument("--batches-dir", type=Path, default=Path(".traincraft/demo_batches"))
    return parser



def main(argv: list[str] | None = None) -> int:
    from traincraft_assets.defs.reports import PARITY_CONTRACT_KEYS

    args = _parser().parse_args(argv)
    try:
        with local_instance() as instance:
            if args.command == "ingest":
                ingest(args.paths, instance)
            else:
                run_config = yaml.safe_load(args.config.read_text())
                metadata = run_demo(instance, run_config, args.batches_dir)
                print("\nparity report (valid set):")
                print(json.dumps({k: metadata[k] for k in PARITY_CONTRACT_KEYS}, indent=1, default=str))
                print("\nOpen the UI with `dagster dev` from this directory to see every asset.")
    except (FrameError, FileNotFoundError) as exc:
        print(f"traincraft: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
