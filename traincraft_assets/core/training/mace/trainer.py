"""The `mace` backend: MACE's own `mace_run_train`, wrapped, never reimplemented."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from traincraft_assets.core.frames import (
    LEVEL_KEY,
    UNKNOWN_LEVEL,
    FrameTally,
    iter_frames,
    level_of,
    read_frames,
    set_label,
    write_frames,
)
from traincraft_assets.core.training.base import Launch, OnOutput, TrainConfigError, Trainer, TrainInputs, Uses
from traincraft_assets.core.training.mace.command import (
    command_prefix,
    foundation_keeps_e0s,
    level_heads,
    render_args,
    requested_e0s,
    validate,
)
from traincraft_assets.core.training.mace.export import deployable_model, import_export_modules
from traincraft_assets.core.training.mace.process import EpochProgress, run_training
from traincraft_assets.core.training.mace.results import (
    best_epoch,
    effective_settings,
    final_model,
    latest_checkpoint_epoch,
    parse_results,
    prune_checkpoints,
)
from traincraft_assets.core.training.mace.settings import TrainSettings

# What MACE leaves in its work directory that is not part of a published model.
SCRATCH = ("checkpoints", "downloads")


def pseudolabel_placeholders(src: Path, dst: Path) -> Path:
    """Replay frames with zero labels: MACE's pseudolabelling replaces existing labels but leaves
    frames without any at loss weight 0 (measured with mace-torch 0.3.16), so every frame gets
    placeholders."""
    frames = read_frames(src)
    for atoms in frames:
        set_label(atoms, "energy", 0.0)
        set_label(atoms, "forces", [[0.0, 0.0, 0.0]] * len(atoms))
        atoms.info.pop("REF_stress", None)
    write_frames(dst, frames)
    return dst


def files_by_level(inputs: TrainInputs, scratch: Path) -> dict[str, dict[str, Path]]:
    """The split's sides cut by level of theory into `scratch`: level -> side -> file. A side
    with no frame of a level has no file for it."""
    sides = {"train": inputs.train_file, "valid": inputs.valid_file, "test": inputs.test_file}
    out: dict[str, dict[str, Path]] = {}
    for side, path in sides.items():
        if path is None:
            continue
        by_level: dict[str, list] = {}
        for atoms in read_frames(path):
            by_level.setdefault(level_of(atoms), []).append(atoms)
        for level, frames in by_level.items():
            target = scratch / f"level-{hashlib.sha256(level.encode()).hexdigest()[:12]}_{side}.xyz"
            write_frames(target, frames)
            out.setdefault(level, {})[side] = target
    return out


def foundation_with_e0s(model_path: Path, e0s: dict[int, float], out: Path) -> Path:
    """A copy of the foundation with `e0s` (atomic number -> eV) in its E0 table, for a naive
    fine-tuning that MACE would otherwise start from the foundation's own (command.py,
    foundation_keeps_e0s)."""
    import torch

    from traincraft_assets.core.models import load_model

    model = load_model(model_path, inference=False)
    table = model.atomic_energies_fn.atomic_energies
    values = table.detach().clone().reshape(-1, len(model.atomic_numbers))
    for column, z in enumerate(int(z) for z in model.atomic_numbers):
        if z in e0s:
            values[:, column] = e0s[z]
    table.copy_(values.reshape(table.shape))
    torch.save(model, out)
    return out


def describe_levels(settings: TrainSettings, inputs: TrainInputs, argv: list[str]) -> dict:
    """The manifest's record of levels of theory: the one the deployed model predicts
    (`level_of_theory`; several joined with " + " when merged), for multifidelity each MACE
    head's level and the heads config MACE was given, and the replay head's levels (its frames')."""
    deployed = settings.level or " + ".join(inputs.data_levels) or UNKNOWN_LEVEL
    record: dict = {LEVEL_KEY: deployed, "data_levels_of_theory": dict(inputs.data_levels)}
    if settings.strategy == "multifidelity":
        record["head_levels"] = level_heads(settings, inputs.data_levels)
        record["heads_config"] = ast.literal_eval(argv[argv.index("--heads") + 1])
    if settings.replays and inputs.replay_file is not None:
        replay = FrameTally().add(iter_frames(inputs.replay_file)).summary()
        record["replay_levels_of_theory"] = replay["levels_of_theory"]
    return record


class MaceTrainer(Trainer):
    name = "mace"
    settings_type = TrainSettings

    def uses(self, settings: TrainSettings) -> Uses:
        return Uses(
            foundation=settings.fine_tunes or (settings.strategy == "scratch" and settings.e0s == "foundation"),
            replay=settings.replays,
        )

    def validate(self, settings: TrainSettings, inputs: TrainInputs, launch: Launch) -> None:
        validate(settings, inputs, launch)

    def prepare(self, settings: TrainSettings, inputs: TrainInputs, scratch: Path) -> TrainInputs:
        if inputs.replay_file is not None and settings.replay_labels == "pseudo":
            placeholders = pseudolabel_placeholders(inputs.replay_file, scratch / "replay_pseudo.xyz")
            inputs = replace(inputs, replay_file=placeholders)
        if settings.strategy == "multifidelity" or (settings.level is not None and len(inputs.data_levels) > 1):
            inputs = replace(inputs, level_files=files_by_level(inputs, scratch))
        if settings.level is not None and "valid" not in inputs.level_files.get(settings.level, {"valid": None}):
            raise TrainConfigError(
                f"level {settings.level!r} has no frame on the split's valid side, and the kept epoch is chosen "
                "on it: add frames at that level, or raise split's valid_fraction"
            )
        if settings.strategy != "multifidelity" and settings.level in inputs.level_files:
            files = inputs.level_files[settings.level]
            inputs = replace(inputs, train_file=files["train"], valid_file=files["valid"], test_file=files.get("test"))
        if foundation_keeps_e0s(settings, inputs):
            e0s = requested_e0s(settings, read_frames(inputs.train_file))
            copy = foundation_with_e0s(inputs.foundation_model, e0s, scratch / "foundation-e0s.model")
            inputs = replace(inputs, foundation_model=copy)
        return inputs

    def render(
        self, settings: TrainSettings, inputs: TrainInputs, launch: Launch, workdir: Path, run_name: str, resume: bool
    ) -> list[str]:
        return command_prefix(launch) + render_args(settings, inputs, launch, workdir, run_name, resume)

    def resume_epoch(self, workdir: Path, run_name: str) -> int | None:
        return latest_checkpoint_epoch(workdir, run_name)

    def run(self, argv: Sequence[str], workdir: Path, on_output: OnOutput) -> None:
        progress = EpochProgress(int(argv[argv.index("--max_num_epochs") + 1]))

        def on_line(line: str) -> None:
            prune_checkpoints(workdir)
            on_output(line)
            if summary := progress(line):
                on_output(summary)

        import_export_modules()  # while MACE trains, not after
        run_training(argv, workdir, on_line)

    def effective_settings(self, workdir: Path) -> dict:
        return effective_settings(Path(workdir) / "logs")

    def learning_curve(self, workdir: Path) -> list[dict]:
        return parse_results(Path(workdir) / "results")

    def best(self, curve: Sequence[dict]) -> dict:
        return best_epoch(curve)

    def trained_model(self, workdir: Path, run_name: str) -> Path:
        return final_model(workdir, run_name)

    def outputs(self, workdir: Path, run_name: str) -> list[Path]:
        # The final model is MACE's best checkpoint; the checkpoints themselves are not kept.
        return sorted(p for p in Path(workdir).iterdir() if p.name not in SCRATCH and not p.name.startswith("."))

    def export(self, model_path: Path, deploy_path: Path) -> Path:
        return deployable_model(model_path, deploy_path)

    def describe(self, settings: TrainSettings, inputs: TrainInputs, argv: Sequence[str]) -> dict:
        argv = list(argv)
        return {
            "strategy": {
                "strategy": settings.strategy,
                "freeze": settings.freeze,
                "lora": settings.lora,
                "replay_labels": settings.replay_labels if settings.replays else None,
                "replay_head": settings.replays,
            },
            "heads": list(settings.heads),
            **describe_levels(settings, inputs, argv),
            "e0s": {
                "mode": settings.e0s,
                "argument": argv[argv.index("--E0s") + 1],
                "foundation_e0s_ev": inputs.foundation["e0s"] if inputs.foundation else None,
                # MACE would have kept the foundation's: the E0s asked for were set on its copy
                "set_on_foundation_copy": foundation_keeps_e0s(settings, inputs),
            },
        }
