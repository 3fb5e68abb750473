"""Strategy comparison: the same target data, foundation and epoch budget, one arm per strategy,
each trained on nested subsets of the training side (10, 30, ... frames), every model scored
on the valid side (target accuracy) and on the forgetting set (frames from the foundation's
distribution it never trained on).

An arm is one strategy with its settings (ARMS); arms are independent so they can run in
parallel (one run per arm on a cluster). `write_comparison` puts them side by side in one
table and two figures. Training goes through the same plan/trainer as `finetuned_model`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from traincraft_assets.core.artifacts import StrategyComparison
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.evaluation import evaluate
from traincraft_assets.core.frames import read_frames, write_frames
from traincraft_assets.core.metrics import to_mev
from traincraft_assets.core.models import REPLAY_HEAD, known_frames, load_model, model_heads
from traincraft_assets.core.plots import (
    error_vs_frames_figure,
    figure_thumbnail_base64,
    forgetting_vs_accuracy_figure,
    save_figure,
)
from traincraft_assets.core.training.base import Launch, OnOutput, Trainer
from traincraft_assets.core.training.finetune import Upstream, plan_training
from traincraft_assets.core.training.mace import ModelShape, TrainSettings
from traincraft_assets.core.training.workdir import WorkdirLock

ZERO_SHOT = "zero_shot"
# Each arm's changes to the common settings. Frozen: MACE --freeze 5 keeps the embedding and
# interaction blocks fixed and trains products and readouts. Scratch trains the foundation's
# architecture, with the foundation's E0s, so only the starting weights differ; it keeps its own
# learning rate (MACE's 1e-2 for random weights), the fine-tuning arms share the configured one.
ARMS: dict[str, dict] = {
    "naive": {"strategy": "naive"},
    "naive_average_e0s": {"strategy": "naive", "e0s": "average"},
    "multihead": {"strategy": "multihead"},
    "frozen": {"strategy": "naive", "freeze": 5},
    "lora": {"strategy": "naive", "lora": True},
    "scratch": {"strategy": "scratch", "lr": None},
}
ARM_NAMES = (ZERO_SHOT, *ARMS)
ALL_FRAMES = 0  # a size meaning the whole training side


@dataclass
class CompareSettings:
    sizes: Sequence[int] = field(
        default=(10, 30, 100, ALL_FRAMES), metadata={"help": "training frames per model; 0: the whole training side"}
    )
    training: TrainSettings = field(
        default_factory=lambda: TrainSettings(max_num_epochs=50),
        metadata={"help": "the budget every arm shares; each arm changes only its strategy (ARMS)"},
    )
    eval_batch_size: int = field(default=32, metadata={"help": "frames per evaluation batch"})


# What `--quick` changes: small enough for CI on 2 CPU cores, still every arm at two sizes.
QUICK = {"sizes": (10, 30), "max_num_epochs": 3}


def subset_sizes(sizes: Sequence[int], n_train: int) -> list[int]:
    """The distinct sizes to train, in frames (0 and sizes beyond the training side become all)."""
    if not sizes:
        raise ValueError("a comparison needs at least one training-set size; sizes is empty.")
    if any(n < 0 for n in sizes):
        raise ValueError(f"training-set sizes must be positive (0: all frames); got {list(sizes)}.")
    return sorted({n_train if n == ALL_FRAMES or n > n_train else n for n in sizes})


def arm_settings(arm: str, training: TrainSettings, foundation_info: dict | None) -> TrainSettings:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {list(ARM_NAMES)}.")
    settings = replace(training, **ARMS[arm])
    if settings.strategy == "scratch" and foundation_info and foundation_info.get("shape"):
        settings = replace(settings, shape=ModelShape(**foundation_info["shape"]))
    return settings


def _scores(model, valid, forgetting, settings: CompareSettings, device: str) -> dict:
    """Errors of the model's target head on the valid and forgetting frames, and of a multihead
    model's replay head on the forgetting frames (NaN without one): the forgetting frames carry
    the foundation's theory, which only the replay head predicts (evaluation.Parity)."""
    forgetting = known_frames(forgetting, model)
    replay_head = REPLAY_HEAD in model_heads(model)
    out = {}
    for name, frames, head in (
        ("valid", valid, None),
        ("forgetting", forgetting, None),
        ("forgetting_replay_head", forgetting if replay_head else [], REPLAY_HEAD),
    ):
        errors = evaluate(model, frames, head, settings.eval_batch_size, device).overall if frames else {}
        out[f"{name}_rmse_e_mev_per_atom"] = to_mev(errors.get("rmse_e_per_atom", float("nan")))
        out[f"{name}_rmse_f_mev_per_a"] = to_mev(errors.get("rmse_f", float("nan")))
    return out


def run_arm(
    arm: str,
    trainer: Trainer,
    settings: CompareSettings,
    upstream: Upstream,
    work_root: Path,
    launch: Launch,
    on_output: OnOutput,
) -> list[dict]:
    """Train (or, zero-shot, only evaluate) one arm at every size; one row per model."""
    device = resolve_device(settings.training.device)
    valid = read_frames(upstream.split.valid_path)
    heldout = upstream.replay.heldout_path if upstream.replay else None
    forgetting = read_frames(heldout) if heldout and heldout.is_file() else []
    if arm == ZERO_SHOT:
        model = load_model(upstream.foundation.model_path, device)
        return [{"arm": arm, "n_train": 0, "wall_s": 0.0, **_scores(model, valid, forgetting, settings, device)}]
    train_settings = arm_settings(arm, settings.training, upstream.foundation.info if upstream.foundation else None)
    plan = plan_training(trainer, train_settings, upstream, work_root, launch)
    train = read_frames(upstream.split.train_path)
    order = np.random.default_rng(train_settings.seed).permutation(len(train))  # nested subsets
    rows = []
    for n in subset_sizes(settings.sizes, len(train)):
        workdir = plan.workdir.with_name(f"{plan.workdir.name}-n{n}")
        on_output(f"{arm}: training on {n} of {len(train)} frames")
        with WorkdirLock(workdir):
            subset = workdir / "train_subset.xyz"
            write_frames(subset, [train[i] for i in sorted(order[:n])])
            inputs = dataclasses.replace(plan.inputs, train_file=subset)
            started = time.monotonic()
            result = trainer.train(train_settings, inputs, launch, workdir / "run", on_output, arm)
            wall_s = time.monotonic() - started
            model = load_model(result.model_path, device)
            rows.append(
                {
                    "arm": arm,
                    "n_train": n,
                    "wall_s": round(wall_s, 1),
                    "epochs_run": result.epochs_run,
                    **_scores(model, valid, forgetting, settings, device),
                    "argv": result.argv,
                    "effective": result.effective,
                }
            )
        shutil.rmtree(workdir, ignore_errors=True)  # scored: the checkpoints are not needed
    return rows


def arm_record(arm: str, rows: list[dict], settings: CompareSettings, upstream: Upstream) -> dict:
    """results.json of one arm: its rows and what they were made from, to check arms match."""
    return {
        "arm": arm,
        "rows": rows,
        "settings": json.loads(json.dumps(dataclasses.asdict(settings), default=str)),
        "data_versions": upstream.data_versions,
    }


TABLE_COLUMNS = (
    ("arm", "arm"),
    ("n_train", "train frames"),
    ("valid_rmse_e_mev_per_atom", "valid E (meV/atom)"),
    ("valid_rmse_f_mev_per_a", "valid F (meV/Å)"),
    ("forgetting_rmse_e_mev_per_atom", "forgetting E (meV/atom)"),
    ("forgetting_rmse_f_mev_per_a", "forgetting F (meV/Å)"),
    ("forgetting_replay_head_rmse_e_mev_per_atom", "replay head: forgetting E"),
    ("forgetting_replay_head_rmse_f_mev_per_a", "replay head: forgetting F"),
    ("wall_s", "wall (s)"),
)


def check_comparable(records: Sequence[dict]) -> None:
    """Arms compared side by side must share settings and input data; raise naming the odd ones."""
    if not records:
        raise ValueError("no arm has results yet; run the comparison's arms first (traincraft compare).")
    reference = records[-1]
    odd = [
        r["arm"]
        for r in records
        if (r["settings"], r["data_versions"]) != (reference["settings"], reference["data_versions"])
    ]
    if odd:
        raise ValueError(
            f"arms {odd} were run with other settings or input data than {reference['arm']!r}; "
            "a table mixing them would mislead. Rerun those arms with the same config "
            "(traincraft compare reruns every arm)."
        )


def comparison_rows(records: Sequence[dict]) -> list[dict]:
    """Every model's row, in arm order then size; without argv and effective settings."""
    order = {arm: i for i, arm in enumerate(ARM_NAMES)}
    rows = [
        {key: row.get(key, float("nan")) for key, _ in TABLE_COLUMNS}  # results.json from before a column: n/a
        for record in records
        for row in record["rows"]
    ]
    return sorted(rows, key=lambda r: (order.get(r["arm"], len(order)), r["n_train"]))


def markdown_table(rows: Sequence[dict]) -> str:
    def cell(value):
        if isinstance(value, float):
            return "n/a" if not np.isfinite(value) else f"{value:.1f}"
        return str(value)

    lines = [
        "| " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(row[key]) for key, _ in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def findings(rows: Sequence[dict]) -> dict:
    """The comparisons the field makes, computed from the rows (None where an arm is missing):
    fine-tuned vs zero-shot on valid forces, forgetting of multihead and naive relative to the
    foundation (and of multihead's replay head), fine-tuning vs scratch at the smallest size,
    foundation vs averaged E0s."""
    by = {(r["arm"], r["n_train"]): r for r in rows}
    sizes = sorted({r["n_train"] for r in rows if r["arm"] != ZERO_SHOT})
    zero = by.get((ZERO_SHOT, 0))

    def get(arm, n, key):
        row = by.get((arm, n))
        return None if row is None else row[key]

    def ratio(a, b):
        return None if a is None or b is None or not b else round(a / b, 3)

    out: dict = {}
    if not sizes:
        return out
    smallest, largest = sizes[0], sizes[-1]
    fine_tuned = [a for a in ARMS if a != "scratch"]
    best = min(
        (
            get(a, largest, "valid_rmse_f_mev_per_a")
            for a in fine_tuned
            if get(a, largest, "valid_rmse_f_mev_per_a") is not None
        ),
        default=None,
    )
    if zero:
        out["zero_shot_over_best_finetuned_valid_f"] = ratio(zero["valid_rmse_f_mev_per_a"], best)
        for arm in ("multihead", "naive"):
            out[f"{arm}_forgetting_f_ratio"] = ratio(
                get(arm, largest, "forgetting_rmse_f_mev_per_a"), zero["forgetting_rmse_f_mev_per_a"]
            )
            out[f"{arm}_forgetting_e_ratio"] = ratio(
                get(arm, largest, "forgetting_rmse_e_mev_per_atom"), zero["forgetting_rmse_e_mev_per_atom"]
            )
        for quantity, key in (("f", "rmse_f_mev_per_a"), ("e", "rmse_e_mev_per_atom")):
            out[f"multihead_replay_head_forgetting_{quantity}_ratio"] = ratio(
                get("multihead", largest, f"forgetting_replay_head_{key}"), zero[f"forgetting_{key}"]
            )
    for arm in ("multihead", "naive"):
        out[f"scratch_over_{arm}_valid_f_at_{smallest}"] = ratio(
            get("scratch", smallest, "valid_rmse_f_mev_per_a"), get(arm, smallest, "valid_rmse_f_mev_per_a")
        )
    out[f"average_over_foundation_e0s_valid_f_at_{largest}"] = ratio(
        get("naive_average_e0s", largest, "valid_rmse_f_mev_per_a"), get("naive", largest, "valid_rmse_f_mev_per_a")
    )
    out[f"average_over_foundation_e0s_valid_e_at_{largest}"] = ratio(
        get("naive_average_e0s", largest, "valid_rmse_e_mev_per_atom"),
        get("naive", largest, "valid_rmse_e_mev_per_atom"),
    )
    return out


def write_comparison(records: Sequence[dict], out: StrategyComparison) -> dict:
    """The table (JSON, Markdown) and both figures into `out`; returns comparison.json's content
    plus small thumbnails of the figures for metadata."""
    check_comparable(records)
    rows = comparison_rows(records)
    content = {
        "rows": rows,
        "findings": findings(rows),
        "arms": [record["arm"] for record in records],
        "settings": records[-1]["settings"],
        "data_versions": records[-1]["data_versions"],
        "units": "meV/atom (energy), meV/Å (forces), seconds (wall)",
    }
    out.table_path.write_text(json.dumps(content, indent=1))
    out.markdown_path.write_text(markdown_table(rows) + "\n")
    thumbnails = {}
    for name, make, path in (
        ("error_vs_frames", error_vs_frames_figure, out.error_plot_path),
        ("forgetting_vs_accuracy", forgetting_vs_accuracy_figure, out.forgetting_plot_path),
    ):
        fig = make(rows, ZERO_SHOT)
        thumbnails[name] = figure_thumbnail_base64(fig, dpi=60)
        save_figure(fig, path)
    return {**content, "thumbnails": thumbnails}
