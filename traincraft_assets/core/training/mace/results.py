"""Reading a finished MACE run back: the learning curve, the kept epoch, the model file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from traincraft_assets.core.training.base import TrainingFailed

TARGET_HEAD = "Default"  # MACE's name for the fine-tuning head; the replay head is "pt_head"


def parse_results(results_dir: Path) -> list[dict]:
    """Per-epoch validation metrics from MACE's results/*_train.txt (JSON lines).

    Evaluation lines carry `mode: eval`; a restarted run appends, so the last line per
    (epoch, head) wins. The initial evaluation (epoch null) is kept as epoch -1: it is the
    zero-shot error before any update.
    """
    rows: dict[tuple[int, str], dict] = {}
    for path in sorted(Path(results_dir).glob("*_train.txt")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut off by a killed run
            if entry.get("mode") != "eval":
                continue
            epoch = -1 if entry.get("epoch") is None else int(entry["epoch"])
            head = str(entry.get("head", TARGET_HEAD))
            rows[(epoch, head)] = {"epoch": epoch, "head": head, **{
                k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k != "epoch"
            }}
    return [rows[k] for k in sorted(rows)]


def best_epoch(curve: Sequence[dict]) -> dict:
    """MACE keeps the checkpoint with the lowest validation loss of the target head."""
    target = [row for row in curve if row["head"] == TARGET_HEAD and row["epoch"] >= 0]
    return min(target, key=lambda row: row.get("loss", float("inf")), default={})


def final_model(workdir: Path, run_name: str) -> Path:
    path = Path(workdir) / f"{run_name}.model"
    if not path.is_file():
        raise TrainingFailed(f"MACE finished but wrote no {path.name} in {workdir}.")
    return path
