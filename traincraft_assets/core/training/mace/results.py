"""Reading a finished MACE run back: the learning curve, the kept epoch, the model file."""

from __future__ import annotations

import json
import zipfile
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


def _epoch(checkpoint: Path) -> int:
    suffix = checkpoint.stem.rsplit("_epoch-", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def _complete(checkpoint: Path) -> bool:
    """torch.save writes a zip archive; one cut off by a kill mid-write fails its CRC check."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def latest_checkpoint_epoch(workdir: Path, run_name: str) -> int | None:
    """The epoch of the newest complete checkpoint, which MACE's `--restart_latest` loads (MACE
    writes one only when the validation loss improves); None when there is none.

    A checkpoint cut off by a kill is set aside (renamed `*.pt.partial`, which MACE does not
    match), so the run resumes from the one before instead of failing on every retry."""
    checkpoints = (Path(workdir) / "checkpoints").glob(f"{run_name}_run-*_epoch-*.pt")
    for checkpoint in sorted((c for c in checkpoints if _epoch(c) >= 0), key=_epoch, reverse=True):
        if _complete(checkpoint):
            return _epoch(checkpoint)
        checkpoint.rename(checkpoint.with_name(checkpoint.name + ".partial"))
    return None


def final_model(workdir: Path, run_name: str) -> Path:
    path = Path(workdir) / f"{run_name}.model"
    if not path.is_file():
        raise TrainingFailed(f"MACE finished but wrote no {path.name} in {workdir}.")
    return path
