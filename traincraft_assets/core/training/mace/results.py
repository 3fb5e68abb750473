"""Reading a finished MACE run back: the learning curve, the kept epoch, the model file, and
the settings MACE actually used."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from traincraft_assets.core.models import TARGET_HEAD
from traincraft_assets.core.training.base import TrainingFailed


def parse_results(results_dir: Path) -> list[dict]:
    """Per-epoch validation metrics from MACE's results/*_train.txt (JSON lines), with the
    epoch's mean training loss (its `mode: opt` lines, one per batch) on the target head's row.

    Evaluation lines carry `mode: eval`; a restarted run appends, so the last line per
    (epoch, head) wins. The initial evaluation (epoch null) is kept as epoch -1: it is the
    zero-shot error before any update.
    """
    rows: dict[tuple[int, str], dict] = {}
    train: dict[int, list[float]] = {}
    evaluated: set[int] = set()
    for path in sorted(Path(results_dir).glob("*_train.txt")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut off by a killed run
            if entry.get("mode") == "opt" and entry.get("epoch") is not None:
                epoch = int(entry["epoch"])
                if epoch in evaluated:  # trained again after its evaluation: a restart, whose lines win
                    evaluated.discard(epoch)
                    train[epoch] = []
                train.setdefault(epoch, []).append(float(entry["loss"]))
            if entry.get("mode") != "eval":
                continue
            epoch = -1 if entry.get("epoch") is None else int(entry["epoch"])
            head = str(entry.get("head", TARGET_HEAD))
            if head == TARGET_HEAD:
                evaluated.add(epoch)
            rows[(epoch, head)] = {
                "epoch": epoch,
                "head": head,
                **{k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and k != "epoch"},
            }
    for (epoch, head), row in rows.items():
        if head == TARGET_HEAD and train.get(epoch):
            row["train_loss"] = sum(train[epoch]) / len(train[epoch])
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


CHECKPOINTS = "*_epoch-*.pt"


def prune_checkpoints(workdir: Path, keep: int = 2) -> None:
    """Delete all but the newest `keep` checkpoints (by epoch; SWA ones are left alone).

    By default MACE 0.3.16 deletes its previous checkpoint before it writes the next
    (tools/checkpoint.py), so a kill during that write leaves nothing complete and the rerun
    starts from epoch 0. So MACE is run with --keep_checkpoints and the pruning happens here,
    while it runs: the newest may still be being written, the one before it is complete."""
    numbered = sorted((c for c in (Path(workdir) / "checkpoints").glob(CHECKPOINTS) if _epoch(c) >= 0), key=_epoch)
    for old in numbered[:-keep]:
        old.unlink(missing_ok=True)


def latest_checkpoint_epoch(workdir: Path, run_name: str) -> int | None:
    """The epoch of the newest complete checkpoint, which MACE's `--restart_latest` loads (MACE
    writes one only when the validation loss improves); None when there is none.

    A checkpoint cut off by a kill is set aside (renamed `*.pt.partial`, which MACE does not
    match), so the run resumes from the one before instead of failing on every retry."""
    directory = Path(workdir) / "checkpoints"
    pattern = f"{run_name}_run-*_epoch-*.pt"
    for checkpoint in sorted((c for c in directory.glob(pattern) if _epoch(c) >= 0), key=_epoch, reverse=True):
        if _complete(checkpoint):
            return _epoch(checkpoint)
        checkpoint.rename(checkpoint.with_name(checkpoint.name + ".partial"))
    return None


def final_model(workdir: Path, run_name: str) -> Path:
    path = Path(workdir) / f"{run_name}.model"
    if not path.is_file():
        raise TrainingFailed(f"MACE finished but wrote no {path.name} in {workdir}.")
    return path


LOG_LINE = re.compile(r"^\S+ \S+ INFO: (.*)$")
HEAD_START = re.compile(r"=+\s+Processing head (\S+)\s+=+")
TRAIN_COUNTS = re.compile(r"^Total Training set \[(.*)\]$")
LOSS = re.compile(r"^(\w+Loss)\((.*)\)$")
LEARNING_RATE = re.compile(r"^Learning rate: ([\d.eE+-]+), weight decay: ([\d.eE+-]+)$")
EMA = re.compile(r"^Using Exponential Moving Average with decay: ([\d.eE+-]+)$")
PROPERTIES = ("energy", "forces", "stress", "dipole", "polarizability")
LABEL_COUNTS = {p: "dipole components" if p == "dipole" else p for p in PROPERTIES}  # MACE's names in its log


def effective_settings(log_dir: Path) -> dict:
    """What MACE actually trained with, read back from its own log (not the argv we passed:
    multihead mode replaces the loss with `universal` whatever `--loss` says, and the
    universal loss fits stress whenever frames carry it).

    Returns loss (MACE's class and weights), lr, weight decay, EMA decay (None: off) and, per
    head, the training frames per label and the properties fitted (a label some training frame
    has, with a non-zero loss weight). A resumed run appends to the log: the last start wins.
    """
    logs = sorted(p for p in Path(log_dir).glob("*.log") if not p.name.endswith("_debug.log"))
    if not logs:
        return {}
    found: dict = {"ema_decay": None, "heads": {}}
    head = None
    for line in logs[-1].read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line.strip())
        if not match:
            continue
        text = match.group(1).strip()
        if m := HEAD_START.search(text):
            head = m.group(1)
        elif (m := TRAIN_COUNTS.match(text)) and head is not None:
            counts = dict(item.split(": ") for item in m.group(1).split(", "))
            found["heads"][head] = {"counts": {k: int(v) for k, v in counts.items()}}
        elif m := LOSS.match(text):
            weights = dict(re.findall(r"(\w+)_weight=([\d.eE+-]+)", m.group(2)))
            found["loss"] = {"class": m.group(1), "weights": {k: float(v) for k, v in weights.items()}}
        elif m := LEARNING_RATE.match(text):
            found["lr"], found["weight_decay"] = float(m.group(1)), float(m.group(2))
        elif m := EMA.match(text):
            found["ema_decay"] = float(m.group(1))
    weights = found.get("loss", {}).get("weights", {})
    for record in found["heads"].values():
        frames = record.pop("counts")
        record["train_frames"] = {p: frames.get(LABEL_COUNTS[p], 0) for p in PROPERTIES}
        record["train_frames"]["virials"] = frames.get("virials", 0)
        record["fitted"] = [p for p in PROPERTIES if record["train_frames"][p] > 0 and weights.get(p, 0.0) > 0] + (
            ["virials"] if record["train_frames"]["virials"] > 0 and weights.get("virials", 0.0) > 0 else []
        )
    return found
