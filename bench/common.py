"""What every row shares: the row record, side-by-side repetitions, the machine, a throwaway
project (Dagster instance, store, inbox) and the demo's run config at the bench's sizes."""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "examples" / "demo.yaml"
DEMO_FOUNDATION = REPO / "traincraft_assets" / "demo" / "foundation" / "foundation.model"


@dataclass
class Row:
    """One line of the table: `ratio` compares target to anchor in the direction `goal` states."""

    row: str
    what: str
    anchor: str
    target: str
    anchor_value: float | None
    target_value: float | None
    unit: str
    ratio: float | None
    goal: str = "-"
    met: bool | None = None
    note: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def not_measured(row: str, what: str, why: str) -> Row:
    return Row(row, what, "-", "-", None, None, "", None, note=f"not measured ({why})")


def side_by_side(
    anchor: Callable[[], float], target: Callable[[], float], repeats: int
) -> tuple[list[float], list[float]]:
    """Run anchor and target alternately (ABBA order, so drift in the machine's load hits both
    alike); return each one's measurements."""
    anchors, targets = [], []
    for i in range(repeats):
        if i % 2 == 0:
            anchors.append(anchor())
            targets.append(target())
        else:
            targets.append(target())
            anchors.append(anchor())
    return anchors, targets


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    """The machine the figures were measured on, for the results file and the table's header."""
    import torch

    from traincraft_assets.core.manifest import package_versions

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "gpu": gpu,
        "load_average_at_start": os.getloadavg(),
        **{k: v for k, v in package_versions().items() if k != "traincraft_assets"},
    }


# --quick's replay pool: 30 frames per metal (210; 30 Cu, over the bench's 24 replay samples), not
# the demo's 100 (700). Making and EMT-labelling the demo's pool takes 10-15 s here (ASE's EMT
# neighbour list; reading it back from an extxyz file is no faster), a fixed cost that --quick's
# repeated end-to-end runs cannot afford; full mode keeps the demo's pool.
QUICK_POOL_FRAMES_PER_METAL = 30
# Replay frames in every row's multihead training: the 24 the recorded figures were measured with
# (the demo now replays 96, which lengthens each epoch but not what a row compares).
REPLAY_SAMPLES = 24


def demo_config(epochs: int, mode: str) -> dict:
    """examples/demo.yaml (the shipped demo foundation, multihead replay) with the fine-tuning's
    epochs set, the bench's replay size, the quick pool in --quick, and the quality gates' MD
    run as short as the tests' (its 3 x 200 steps are the gate's own work, not what a row
    measures)."""
    config = copy.deepcopy(yaml.safe_load(DEMO_CONFIG.read_text()))
    config["ops"]["finetuned_model"]["config"]["max_num_epochs"] = epochs
    config["ops"]["replay_subset"]["config"]["num_samples"] = REPLAY_SAMPLES
    if mode == "quick":
        config["ops"]["pretraining_frames"]["config"]["demo_frames_per_metal"] = QUICK_POOL_FRAMES_PER_METAL
    config["ops"]["quality_gates"] = {"config": {"md_steps": 40, "md_structures": 2}}
    config["ops"].pop("strategy_arm", None)
    return config


class Project:
    """A throwaway project under `root`: its own Dagster instance (DAGSTER_HOME), store and
    inbox, set in this process's environment (core.settings reads it at each call) so that
    in-process runs and `dagster` subprocesses started from here share them. Restores the
    environment on exit."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.env = {
            "DAGSTER_HOME": str(self.root / "dagster_home"),
            "TRAINCRAFT_STORE": str(self.root / "store"),
            "TRAINCRAFT_INBOX": str(self.root / "inbox"),
            "TRAINCRAFT_DATA_ROOTS": str(self.root),
        }

    def __enter__(self) -> Project:
        import dagster as dg

        from traincraft_assets.defs.definitions import build_defs

        for path in self.env.values():
            Path(path).mkdir(parents=True, exist_ok=True)
        self._saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        self.instance = dg.DagsterInstance.get()
        self.defs = build_defs()
        return self

    def __exit__(self, *exc) -> None:
        self.instance.dispose()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @property
    def inbox(self) -> Path:
        return Path(self.env["TRAINCRAFT_INBOX"])

    def add_batches(self, paths: list[Path]) -> list[str]:
        """Register batch files as partitions (`traincraft ingest`)."""
        from traincraft_assets.app.batches import ingest

        return [batch.name for batch in ingest(self.instance, self.inbox, paths)]

    def label(self, batch: str) -> int:
        """Materialize labelled_frames for one batch; returns the frames labelled."""
        from traincraft_assets.defs.jobs import LABEL_BATCH

        result = self.defs.resolve_job_def(LABEL_BATCH).execute_in_process(
            instance=self.instance, partition_key=batch, raise_on_error=True
        )
        (materialization,) = result.asset_materializations_for_node("labelled_frames")
        return int(materialization.metadata["n_frames"].value)

    def materialize(self, assets: list[str], run_config: dict | None = None):
        """Materialize `assets` in this process, with their entries of a whole-graph config."""
        import dagster as dg

        job = self.defs.resolve_implicit_global_asset_job_def()
        ops = {k: v for k, v in (run_config or {}).get("ops", {}).items() if k in assets}
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey(a) for a in assets],
            run_config={"ops": ops},
            raise_on_error=True,
        )
