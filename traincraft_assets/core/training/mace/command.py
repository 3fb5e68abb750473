"""MACE training settings -> one `mace_run_train` command line, and the rules checked first.

Training itself is MACE's; this module decides the flags. The rules below come from the
fine-tuning strategies study (the defaults in settings.py) and from MACE 0.3.16 behaviour,
measured, that silently changes a strategy: multihead mode overrides lr/EMA unless `--force_mh_ft_lr True`, always
uses its universal loss (stress fitted wherever frames carry it), rejects `--E0s average`, and
uses a replay file whole. What MACE really used is read back from its log (results.py).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.data
import numpy as np

from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.frames import REF_KEYS, get_label
from traincraft_assets.core.models import REPLAY_HEAD, TARGET_HEAD
from traincraft_assets.core.training.base import Launch, TrainConfigError, TrainInputs
from traincraft_assets.core.training.mace.settings import TrainSettings

# Flags this module sets from typed config or needs to find MACE's outputs; `extra` may not
# replace them (e.g. force_mh_ft_lr False would silently restore MACE's lr/EMA overrides, and
# --lr would leave the typed `lr` saying one thing while MACE trained with another).
# The value says where the setting comes from ("-": from the run itself).
TYPED_FLAGS = (
    "lr",
    "batch_size",
    "valid_batch_size",
    "max_num_epochs",
    "ema_decay",
    "weight_decay",
    "energy_weight",
    "forces_weight",
    "stress_weight",
    "dipole_weight",
    "polarizability_weight",
    "lora_rank",
    "lora_alpha",
    "num_channels",
    "max_L",
    "r_max",
    "num_interactions",
    "correlation",
)
MANAGED_FLAGS = {
    **{flag: flag for flag in TYPED_FLAGS},
    "name": "-",
    "work_dir": "-",
    "model_dir": "-",
    "log_dir": "-",
    "checkpoints_dir": "-",
    "results_dir": "-",
    "downloads_dir": "-",
    "train_file": "the split",
    "valid_file": "the split",
    "test_file": "the split",
    "pt_train_file": "the replay subset",
    "foundation_model": "the foundation model",
    "multiheads_finetuning": "strategy",
    "force_mh_ft_lr": "lr / ema_decay",
    "E0s": "e0s",
    "energy_key": "heads",
    "forces_key": "heads",
    "stress_key": "heads",
    "dipole_key": "heads",
    "polarizability_key": "heads",
    "pseudolabel_replay": "replay_labels",
    "freeze": "freeze",
    "lora": "lora",
    "seed": "seed",
    "device": "device",
    "default_dtype": "dtype",
    "restart_latest": "-",
    "keep_checkpoints": "-",
    "distributed": "TRAINCRAFT_TRAINING_PROCESSES",
    "launcher": "TRAINCRAFT_TRAINING_PROCESSES",
    "heads": "strategy 'multifidelity' (one head per level of theory)",
    "config": "-",
    "charges_key": "-",
}

# MACE's dipole models add the dipole of the frames' own atomic charges (read under its charges
# key, REF_charges by default, where the xtb labeller keeps its partial charges) to the dipole
# they predict. A model trained so needs those charges again to predict, and MD has none: one
# trained on xTB water was right in MACE's log (0.8 me·Å) and off by 0.9 e·Å, sign flipped, in
# MD. So no frame's charges are an input: the key points at nothing.
UNREAD_CHARGES_KEY = "traincraft_charges_are_not_an_input"


@dataclass(frozen=True)
class HeadPlan:
    model: str | None  # --model; None keeps the foundation's
    loss: str
    error_table: str


def plan_heads(heads: Sequence[str]) -> HeadPlan:
    """Map a head set to MACE's model type, loss and error table."""
    h = set(heads)
    energy = {"energy", "forces"} <= h
    if "polarizability" in h:
        return HeadPlan("AtomicDielectricMACE", "dipole_polar", "DipolePolarRMSE")
    if "dipole" in h:
        if energy:
            return HeadPlan("EnergyDipolesMACE", "energy_forces_dipole", "EnergyDipoleRMSE")
        return HeadPlan("AtomicDipolesMACE", "dipole", "DipoleRMSE")
    if "stress" in h:
        # MACE's default `weighted` loss ignores stress; `stress` is the weighted E/F/S loss.
        return HeadPlan(None, "stress", "PerAtomRMSEstressvirials")
    return HeadPlan(None, "weighted", "PerAtomRMSE")


def validate(settings: TrainSettings, inputs: TrainInputs, launch: Launch) -> None:
    """Reject impossible combinations before MACE starts, naming every problem at once."""
    s, errors = settings, []
    heads = set(s.heads)
    uses_foundation = s.fine_tunes
    new_model = not s.fine_tunes
    plan = plan_heads(s.heads)

    unknown = heads - set(REF_KEYS)
    if unknown:
        errors.append(f"unknown heads {sorted(unknown)}; expected a subset of {list(REF_KEYS)}")
    if len({"energy", "forces"} & heads) == 1:
        errors.append("heads must include energy and forces together (MACE fits forces as -dE/dx)")
    if not heads or heads <= {"stress"}:
        errors.append("heads must include energy and forces, or dipole")
    if "polarizability" in heads and "dipole" not in heads:
        errors.append("polarizability is fitted together with dipole: add 'dipole' to heads")
    if "polarizability" in heads and heads & {"energy", "forces", "stress"}:
        errors.append(
            "AtomicDielectricMACE (polarizability) fits dipoles and polarizabilities only; MACE "
            "would silently drop energy/forces/stress: remove them from heads"
        )
    if "dipole" in heads and "stress" in heads:
        errors.append("EnergyDipolesMACE does not fit stress (MACE ignores it): remove 'stress'")
    for head in sorted(heads & set(REF_KEYS)):
        if head not in inputs.data_labels:
            errors.append(
                f"head {head!r} needs {REF_KEYS[head]} labels, but no training frame carries "
                f"them (labels present: {list(inputs.data_labels)})"
            )

    if uses_foundation and inputs.foundation_model is None:
        errors.append(f"strategy {s.strategy!r} fine-tunes a foundation model, but none was given")
    if s.replays and inputs.replay_file is None:
        errors.append(f"{_named(s)} needs a replay subset (pt_train_file)")
    if s.strategy == "multihead":
        if s.e0s == "average":
            errors.append(
                "e0s 'average' is rejected by MACE in multihead mode (and averaging was 2-3x "
                "worse on forces in the fine-tuning study); use 'foundation', 'dict' or 'file'"
            )
        if plan.model is not None:
            errors.append(
                f"multihead replay fits energy/forces replay labels; heads {sorted(heads)} need "
                f"{plan.model}: use strategy 'scratch' (or 'naive' from a {plan.model} foundation)"
            )
    if (
        s.strategy == "naive"
        and plan.model is not None
        and inputs.foundation
        and inputs.foundation.get("model_class") != plan.model
    ):
        errors.append(
            f"heads {sorted(heads)} need a {plan.model} model, but the foundation is a "
            f"{inputs.foundation.get('model_class')}; use strategy 'scratch' or a "
            f"{plan.model} foundation"
        )
    if new_model and (s.freeze is not None or s.lora):
        errors.append(f"freeze and lora modify a foundation model; strategy {s.strategy!r} has none")
    if new_model:
        if plan.model == "AtomicDielectricMACE" and s.shape.max_L < 2:
            errors.append("polarizability needs max_L >= 2 (hidden irreps with 2e)")
        elif plan.model is not None and s.shape.max_L < 1:
            errors.append("dipole heads need max_L >= 1 (vector hidden irreps)")
    if s.strategy == "scratch":
        if s.e0s == "foundation" and not inputs.foundation:
            errors.append("e0s 'foundation' with strategy 'scratch' needs a foundation to read E0s from")
        elif s.e0s == "foundation":
            known = {ase.data.chemical_symbols[int(z)] for z in inputs.foundation["e0s"]}
            missing = [e for e in inputs.data_elements if e not in known]
            if missing:
                errors.append(
                    f"e0s 'foundation': the foundation has no E0s for {missing}; give them with e0s 'dict' or 'file'"
                )
    if s.replay_head and s.strategy != "multifidelity":
        errors.append(
            "replay_head adds the replay head to strategy 'multifidelity'; strategy 'multihead' always has one"
        )
    if s.replay_head and plan.model is not None:
        errors.append(f"a replay head fits energy/forces replay labels; heads {sorted(heads)} need {plan.model}")
    if s.replay_labels == "pseudo" and not s.replays:
        errors.append(
            "replay_labels 'pseudo' relabels replay frames, so it needs strategy 'multihead' (or 'multifidelity' "
            "with replay_head)"
        )
    if s.freeze is not None and s.lora:
        errors.append("choose freeze or lora, not both (LoRA already freezes the base weights)")
    if s.freeze is not None and not 1 <= s.freeze <= 6:
        errors.append(
            f"freeze must be 1-6 (1-4: embedding; 5: + interaction blocks; 6: + products, "
            f"readouts train; 7 and above would freeze every parameter); got {s.freeze}"
        )
    if s.e0s == "average" and inputs.n_frames_without_energy:
        errors.append(
            f"e0s 'average' with {inputs.n_frames_without_energy} training frame(s) lacking "
            "REF_energy gives NaN losses in MACE, silently; label them or use 'foundation'/'dict'"
        )
    if s.e0s == "dict":
        unknown = [sym for sym in (s.e0s_dict or {}) if sym not in ase.data.atomic_numbers]
        if unknown:
            errors.append(f"e0s_dict keys must be element symbols; {unknown} are not")
        missing = [e for e in inputs.data_elements if e not in (s.e0s_dict or {})]
        if missing:
            errors.append(f"e0s 'dict' needs e0s_dict entries for {missing}")
    if s.e0s == "file":
        try:
            e0s = _read_e0s_file(s.e0s_file)
        except (OSError, TypeError, ValueError, AttributeError) as exc:
            errors.append(
                f"e0s 'file' needs e0s_file pointing at a JSON object of atomic number -> eV; {s.e0s_file!r}: {exc}"
            )
        else:
            missing = [e for e in inputs.data_elements if ase.data.atomic_numbers[e] not in e0s]
            if missing:
                errors.append(f"e0s_file {s.e0s_file} has no E0s for {missing}")
    errors += level_problems(s, inputs) + batch_size_problems(s, inputs)
    for flag in sorted(k.removeprefix("--") for k in s.extra if k.removeprefix("--") in MANAGED_FLAGS):
        field = MANAGED_FLAGS[flag]
        errors.append(
            f"extra may not set --{flag}: it is managed here" + ("" if field == "-" else f" (set through {field})")
        )

    processes = launch.processes
    if processes > 1 and resolve_device(s.device) != "cuda":
        errors.append(
            f"{processes} training processes (one per GPU) need device 'cuda' (MACE's distributed "
            f"training has no CPU process group); the device here is {resolve_device(s.device)!r}"
        )

    if inputs.foundation and uses_foundation:
        covered = set(inputs.foundation["elements"])
        missing = [e for e in inputs.data_elements if e not in covered]
        if missing:
            errors.append(
                f"elements {missing} are in the data but not in the foundation model "
                f"(it covers {sorted(covered)}); use a foundation that covers them or strategy 'scratch'"
            )

    if errors:
        raise TrainConfigError("these training settings cannot train:\n" + "\n".join(f"  - {e}" for e in errors))


def _named(settings: TrainSettings) -> str:
    return f"strategy {settings.strategy!r}" + (" with replay_head" if settings.replay_head else "")


def level_problems(settings: TrainSettings, inputs: TrainInputs) -> list[str]:
    """Levels of theory: one head trains on one level unless merging is asked for, a chosen
    level must be in the data, and multifidelity needs two levels, a head to deploy and E0s
    fitted per head. Nothing to check when the data's levels are not known yet (preflight)."""
    s, levels = settings, inputs.data_levels
    if not levels:
        return []
    listed = ", ".join(f"{level!r} ({n} frames)" for level, n in levels.items())
    if s.level is not None and s.level not in levels:
        return [f"level {s.level!r} is not in the training data; its levels of theory: {listed}"]
    if s.strategy == "multifidelity":
        errors = []
        if len(levels) < 2:
            errors.append(
                f"strategy 'multifidelity' trains one head per level of theory, but the training data has one: "
                f"{listed}; use strategy 'scratch'"
            )
        elif s.level is None:
            errors.append(
                f"strategy 'multifidelity': set `level` to the level whose head is deployed, one of: {listed}"
            )
        if s.merge_levels:
            errors.append("merge_levels trains one head on every level; strategy 'multifidelity' gives each its own")
        if s.e0s != "average":
            errors.append(
                "strategy 'multifidelity' fits each head's isolated-atom energies from its own level's frames "
                f"(levels differ in them); set e0s: average (got {s.e0s!r})"
            )
        return errors
    if len(levels) > 1 and s.level is None and not s.merge_levels:
        return [
            f"the training data is at {len(levels)} levels of theory: {listed}; one head fitting both learns "
            "neither. Train on one with `level`, give each its own head with strategy 'multifidelity', or "
            "set merge_levels: true if they really are one level"
        ]
    return []


def batch_size_problems(settings: TrainSettings, inputs: TrainInputs) -> list[str]:
    """A batch larger than the training frames: MACE drops the last incomplete batch, so it would
    train on nothing and fail with a message that says nothing of why. Multihead replay adds the
    replay frames to every epoch, so it is left to MACE there."""
    s, levels = settings, inputs.data_levels
    if not levels or s.replays or (s.level is not None and s.level not in levels):
        return []
    training = levels[s.level] if s.level is not None and s.strategy != "multifidelity" else sum(levels.values())
    if s.batch_size <= training:
        return []
    return [
        f"batch_size {s.batch_size} is larger than the {training} training frames: MACE drops the last "
        "incomplete batch, so it would train on nothing and fail with 'torch.cat(): expected a non-empty "
        f"list'. Lower batch_size to at most {training}, or add frames"
    ]


def level_heads(settings: TrainSettings, levels) -> dict[str, str]:
    """MACE head name -> level of theory for a multifidelity training, the deployed level last
    and named TARGET_HEAD: MACE keeps the epoch with the best validation loss of its last head,
    and the rest of the project evaluates and deploys TARGET_HEAD."""
    heads: dict[str, str] = {}
    for level in levels:
        if level == settings.level:
            continue
        name = re.sub(r"[^A-Za-z0-9]+", "_", level).strip("_") or "level"
        while name in heads or name in (TARGET_HEAD, REPLAY_HEAD):
            name += "_"
        heads[name] = level
    heads[TARGET_HEAD] = settings.level
    return heads


def _read_e0s_file(path) -> dict[int, float]:
    return {int(z): float(e) for z, e in json.loads(Path(path).read_text()).items()}


def foundation_keeps_e0s(settings: TrainSettings, inputs: TrainInputs) -> bool:
    """Whether MACE would silently keep the foundation's E0s: its naive fine-tuning (0.3.16,
    measured) copies the foundation's E0 table over `--E0s average`, a dict or a file when the
    foundation has exactly the data's elements. The E0s asked for are then set on a copy of the
    foundation too (trainer.prepare), so the table MACE copies holds them; `--E0s` still says what
    was asked (`--E0s foundation` would fail in MACE on a one-element foundation)."""
    return (
        settings.strategy == "naive"
        and settings.e0s != "foundation"
        and inputs.foundation is not None
        and set(inputs.foundation["elements"]) == set(inputs.data_elements)
    )


def requested_e0s(settings: TrainSettings, frames) -> dict[int, float]:
    """The E0s (atomic number -> eV) that e0s 'dict', 'file' or 'average' ask for; 'average' is
    MACE's: a least-squares fit of the frames' energies to their compositions."""
    if settings.e0s == "dict":
        return {ase.data.atomic_numbers[sym]: float(e) for sym, e in settings.e0s_dict.items()}
    if settings.e0s == "file":
        return _read_e0s_file(settings.e0s_file)
    labelled = [a for a in frames if get_label(a, "energy") is not None]
    numbers = sorted({int(z) for a in labelled for z in a.numbers})
    counts = np.array([[np.count_nonzero(a.numbers == z) for z in numbers] for a in labelled], dtype=float)
    energies = np.array([float(get_label(a, "energy")) for a in labelled])
    return dict(zip(numbers, np.linalg.lstsq(counts, energies, rcond=None)[0].tolist()))


def _e0s_argument(settings: TrainSettings, inputs: TrainInputs) -> str:
    """The --E0s value. Explicit E0s are passed as a dict restricted to the data's elements:
    MACE sizes its E0 table by the elements of the train/valid/test files, and a wider dict or
    file gives a shape mismatch after the data is loaded. Inlining a file's numbers also puts
    them in the manifest's argv, so the model records the E0s it was trained with."""
    wanted = {ase.data.atomic_numbers[sym] for sym in inputs.data_elements}
    if settings.strategy == "multifidelity" and settings.replays:  # per head in --heads (render_args)
        return "foundation"
    if settings.e0s == "foundation" and settings.strategy != "scratch":
        return "foundation"
    if settings.e0s == "foundation":  # scratch has no --foundation_model: pass its numbers
        e0s = {int(z): e for z, e in inputs.foundation["e0s"].items()}
    elif settings.e0s == "dict":
        e0s = {ase.data.atomic_numbers[sym]: float(e) for sym, e in settings.e0s_dict.items()}
    elif settings.e0s == "file":
        e0s = _read_e0s_file(settings.e0s_file)
    else:
        return "average"
    return str({z: e for z, e in sorted(e0s.items()) if z in wanted})


def render_args(
    settings: TrainSettings,
    inputs: TrainInputs,
    launch: Launch,
    workdir: Path,
    run_name: str,
    resume: bool = False,
) -> list[str]:
    """The arguments after the `mace_run_train` program, in a stable order; with `resume`, MACE
    continues from the latest checkpoint in `workdir` (`--restart_latest`)."""
    validate(settings, inputs, launch)
    s, plan, w = settings, plan_heads(settings.heads), Path(workdir)
    args: dict[str, str | None] = {
        "name": run_name,
        "seed": str(s.seed),
        "work_dir": str(w),
        "model_dir": str(w),
        "log_dir": str(w / "logs"),
        "checkpoints_dir": str(w / "checkpoints"),
        "results_dir": str(w / "results"),
        "downloads_dir": str(w / "downloads"),
    }
    if s.strategy == "multifidelity":
        # With a replay head MACE refuses a global `--E0s average` (multihead fine-tuning), so
        # each level's head asks for its own; the replay head keeps the foundation's.
        own_e0s = {"E0s": "average"} if s.replays else {}
        args["heads"] = str(
            {
                head: {**{f"{side}_file": str(path) for side, path in inputs.level_files[level].items()}, **own_e0s}
                for head, level in level_heads(s, inputs.data_levels).items()
            }
        )
    else:
        args["train_file"] = str(inputs.train_file)
        args["valid_file"] = str(inputs.valid_file)
        if inputs.test_file is not None:
            args["test_file"] = str(inputs.test_file)
    for head in ("energy", "forces", "stress", "dipole", "polarizability"):
        if head in ("energy", "forces") or head in s.heads:
            args[f"{head}_key"] = REF_KEYS[head]
    args["charges_key"] = UNREAD_CHARGES_KEY
    args["E0s"] = _e0s_argument(s, inputs)
    if not s.fine_tunes:
        args["model"] = plan.model or "MACE"
        args.update(
            num_channels=str(s.shape.num_channels),
            max_L=str(s.shape.max_L),
            r_max=str(s.shape.r_max),
            num_interactions=str(s.shape.num_interactions),
            correlation=str(s.shape.correlation),
        )
    elif plan.model is not None:
        args["model"] = plan.model
    if not s.replays:  # multihead fine-tuning: MACE uses its universal loss whatever --loss says
        args["loss"] = plan.loss
    args["error_table"] = plan.error_table
    if {"energy", "forces"} <= set(s.heads):
        args["energy_weight"] = str(s.energy_weight)
        args["forces_weight"] = str(s.forces_weight)
    if "stress" in s.heads:
        args["stress_weight"] = str(s.stress_weight)
        args["compute_stress"] = "True"
    if "dipole" in s.heads:
        args["dipole_weight"] = str(s.dipole_weight)
    if "polarizability" in s.heads:
        args["polarizability_weight"] = str(s.polarizability_weight)
    args.update(
        weight_decay=str(s.weight_decay),
        ema=None,
        ema_decay=str(s.ema_decay),
        lr=str(s.learning_rate),
        batch_size=str(s.batch_size),
        valid_batch_size=str(s.valid_batch_size or s.batch_size),
        max_num_epochs=str(s.max_num_epochs),
        device=resolve_device(s.device),
        default_dtype=s.dtype,
        eval_interval="1",
        plot="False",
        keep_checkpoints=None,  # never delete one before the next is written (results.prune_checkpoints)
    )
    if s.fine_tunes:
        args["foundation_model"] = str(inputs.foundation_model)
        args["multiheads_finetuning"] = str(s.replays)
    if s.replays:
        args["pt_train_file"] = str(inputs.replay_file)
        args["force_mh_ft_lr"] = "True"  # otherwise MACE replaces our lr and EMA decay
        if s.replay_labels == "pseudo":
            args["pseudolabel_replay"] = "True"
            if "stress" in s.heads:
                args["pseudolabel_replay_compute_stress"] = "True"
    if s.freeze is not None:
        args["freeze"] = str(s.freeze)
    if s.lora:
        args.update(lora="True", lora_rank=str(s.lora_rank), lora_alpha=str(s.lora_alpha))
    if resume:
        args["restart_latest"] = None
    if launch.processes > 1:  # one rank per GPU, started by torchrun
        args.update(distributed=None, launcher="torchrun")
    for key, value in s.extra.items():  # validate() refused MANAGED_FLAGS
        args[key.removeprefix("--")] = None if value in ("", None) else str(value)

    argv = []
    for key, value in args.items():
        argv.append(f"--{key}")
        if value is not None:
            argv.append(value)
    return argv


def command_prefix(launch: Launch) -> list[str]:
    """How to start MACE: the launch's own command (a container, a wrapper) if it has one; else
    this interpreter's `mace.cli.run_train`, which works even when the venv's bin/ is not on
    PATH, under torchrun with one process per GPU when there are several."""
    if launch.command:
        return list(launch.command)
    if launch.processes > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(launch.processes),
            "-m",
            "mace.cli.run_train",
        ]
    return [sys.executable, "-m", "mace.cli.run_train"]
