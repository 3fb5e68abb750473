"""Evaluating a model on frames, and comparing two models on the same frames.

This is where "which model, which head, which frames" is decided once: the parity report uses
it now, and a champion gate, a strategy comparison or a benchmark call the same functions.
Evaluation loads the model once and runs MACE's own data pipeline in batches (as
`mace_eval_configs` does) instead of a per-frame ASE calculator loop: 1.6x faster on the demo's
23-atom frames on 2 CPU cores (`python -m bench --rows 2`), ~5x on 8-atom frames (measured
with mace_eval_configs: 361 against 70 frames/s).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import Debye

from traincraft_assets.core.artifacts import ParityReport
from traincraft_assets.core.device import Device, resolve_device
from traincraft_assets.core.frames import frames_at_level, level_of, read_frames, symbols
from traincraft_assets.core.metrics import Prediction, error_ratio, errors, errors_by_config_type, to_mev
from traincraft_assets.core.models import (
    REPLAY_HEAD,
    known_frames,
    load_model,
    model_elements,
    model_head,
    model_heads,
)
from traincraft_assets.core.plots import figure_thumbnail_base64, learning_curve_figure, parity_figure, save_figure

# MACE model classes that predict dipoles/polarizabilities but no energy or forces.
MODELS_WITHOUT_ENERGY = {"AtomicDipolesMACE", "AtomicDielectricMACE"}

# A contract with the project's users: parity_report's metadata and parity.json carry these keys.
PARITY_CONTRACT_KEYS = (
    "rmse_e_mev_per_atom",
    "rmse_f_mev_per_a",
    "rmse_s_mev_per_a3",
    "foundation_rmse_e_mev_per_atom",
    "foundation_rmse_f_mev_per_a",
    "replay_rmse_f_mev_per_a",
    "n_valid",
    "report_path",
)


@dataclass
class EvalSettings:
    batch_size: int = field(default=32, metadata={"help": "frames per evaluation batch"})
    device: Device = field(default="auto", metadata={"help": "auto: cuda when the step's machine has one"})


def predict(
    model, frames: Sequence[Atoms], head: str | None = None, batch_size: int = 32, device: str = "cpu"
) -> list[Prediction]:
    """Energies, forces and stresses for `frames`, and dipoles and polarizabilities from a model
    with those heads, in batches, in the model's own dtype. (MACE's own `mace_eval_configs`
    reads the energy of every model, so it cannot evaluate a dipole-only one.)

    `head` defaults to the model's target head (core.models.model_head), never the replay head.
    """
    from mace import data
    from mace.tools import torch_geometric, torch_tools, utils

    if not frames:
        return []
    torch_tools.set_default_dtype(str(next(model.parameters()).dtype).replace("torch.", ""))
    heads = model_heads(model)
    head = head or model_head(heads)
    if head not in heads:
        raise ValueError(f"model has heads {heads}; asked for head {head!r}.")
    if unknown := {int(z) for atoms in frames for z in atoms.numbers} - model_elements(model):
        raise ValueError(
            f"the model has no embedding for {symbols(unknown)}, which these frames hold (it covers "
            f"{symbols(model_elements(model))}): evaluate it on frames of its elements, or train one that covers them."
        )
    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    # Labels are not needed to predict: an empty key specification keeps MACE from reading any.
    keyspec = data.KeySpecification(info_keys={}, arrays_keys={})
    dataset = [
        data.AtomicData.from_config(
            data.config_from_atoms(atoms, key_specification=keyspec, head_name=head),
            z_table=z_table,
            cutoff=float(model.r_max),
            heads=heads,
        )
        for atoms in frames
    ]
    loader = torch_geometric.dataloader.DataLoader(
        dataset=dataset, batch_size=batch_size, shuffle=False, drop_last=False
    )
    model = model.to(device)
    out: list[Prediction] = []
    periodic = [bool(a.pbc.all()) for a in frames]
    with_energy = type(model).__name__ not in MODELS_WITHOUT_ENERGY
    # the dipole-only models refuse to compute forces (they assert it is off)
    options = {"compute_stress": any(periodic)} if with_energy else {"compute_force": False}

    def numpy(result, key):
        value = result.get(key)
        return None if value is None else value.detach().cpu().numpy()

    for batch in loader:
        batch = batch.to(device)
        result = model(batch.to_dict(), training=False, **options)
        energies, stresses = numpy(result, "energy"), numpy(result, "stress")
        dipoles, polarizabilities = numpy(result, "dipole"), numpy(result, "polarizability")
        forces = numpy(result, "forces")
        forces = None if forces is None else np.split(forces, batch.ptr[1:-1].cpu().numpy())
        for k in range(batch.num_graphs):
            i = len(out)
            out.append(
                Prediction(
                    float(energies[k]) if energies is not None else None,
                    forces[k] if forces is not None else None,
                    stresses[k] if stresses is not None and periodic[i] else None,
                    dipoles[k] if dipoles is not None else None,
                    polarizabilities[k] if polarizabilities is not None else None,
                )
            )
    return out


@dataclass
class Evaluation:
    """One model's predictions on frames, and its errors per config_type ("all": every frame)."""

    frames: list[Atoms]
    predictions: list[Prediction]
    by_config_type: dict[str, dict[str, float]]

    @property
    def overall(self) -> dict[str, float]:
        return self.by_config_type["all"]

    def of(self, config_type: str) -> dict[str, float]:
        """The errors of one config_type; NaN where this evaluation has no frame of it (a
        foundation that could not evaluate these frames)."""
        return self.by_config_type.get(config_type) or errors([], [])


def evaluate(
    model, frames: Sequence[Atoms], head: str | None = None, batch_size: int = 32, device: str = "cpu"
) -> Evaluation:
    """Predict `frames` with `model` (its target head unless `head` is given) and score them."""
    frames = list(frames)
    predictions = predict(model, frames, head, batch_size, device)
    return Evaluation(frames, predictions, errors_by_config_type(frames, predictions))


# Dipole and polarizability errors as reported: dipoles in mD (as MACE's own error tables),
# polarizabilities in milli of the labels' e·Å²/V. Metric key -> (column, factor).
PROPERTY_COLUMNS = {
    "rmse_mu": ("rmse_mu_mdebye", 1000 / Debye),
    "mae_mu": ("mae_mu_mdebye", 1000 / Debye),
    "rmse_mu_norm": ("rmse_mu_norm_mdebye", 1000 / Debye),
    "rmse_alpha": ("rmse_alpha_me_a2_per_v", 1000),
    "mae_alpha": ("mae_alpha_me_a2_per_v", 1000),
    "rmse_alpha_iso": ("rmse_alpha_iso_me_a2_per_v", 1000),
    "rmse_alpha_aniso": ("rmse_alpha_aniso_me_a2_per_v", 1000),
}


def property_errors(evaluation: Evaluation, config_type: str = "all", prefix: str = "") -> dict[str, float]:
    """The dipole and polarizability columns (PROPERTY_COLUMNS) of the properties `evaluation`'s
    model predicts and its frames are labelled with; none for an energy-only model."""
    measured = evaluation.overall
    row = evaluation.of(config_type)
    return {
        f"{prefix}{column}": row[key] * factor
        for key, (column, factor) in PROPERTY_COLUMNS.items()
        if np.isfinite(measured[key])
    }


def compare_rows(candidate: Evaluation, baselines: dict[str, Evaluation]) -> list[dict]:
    """Per-config_type rows in meV units (dipoles and polarizabilities where predicted),
    candidate beside each named baseline, on the same frames (a baseline's columns are
    prefixed with its name)."""
    rows = []
    for name, ft in candidate.by_config_type.items():
        row = {
            "config_type": name,
            "n_frames": ft["n_frames"],
            "rmse_e_mev_per_atom": to_mev(ft["rmse_e_per_atom"]),
            "mae_e_mev_per_atom": to_mev(ft["mae_e_per_atom"]),
            "rmse_f_mev_per_a": to_mev(ft["rmse_f"]),
            "mae_f_mev_per_a": to_mev(ft["mae_f"]),
            "rmse_s_mev_per_a3": to_mev(ft["rmse_s"]),
            **property_errors(candidate, name),
        }
        for baseline_name, baseline in baselines.items():
            base = baseline.of(name)
            row |= {
                f"{baseline_name}_rmse_e_mev_per_atom": to_mev(base["rmse_e_per_atom"]),
                f"{baseline_name}_rmse_f_mev_per_a": to_mev(base["rmse_f"]),
                f"{baseline_name}_rmse_s_mev_per_a3": to_mev(base["rmse_s"]),
                **property_errors(baseline, name, f"{baseline_name}_"),
            }
        rows.append(row)
    return rows


@dataclass
class Parity:
    """A fine-tuned model against its zero-shot foundation: on valid (and test) frames, and on
    held-out replay frames (forgetting); and against the serving champion on the valid frames,
    when there is one."""

    head: str  # the fine-tuned model's head that was evaluated (never the replay head)
    valid: Evaluation
    valid_foundation: Evaluation
    replay: Evaluation
    replay_foundation: Evaluation
    test_rows: list[dict]
    valid_champion: Evaluation | None = None
    # A multihead model's replay head on the held-out replay frames. It predicts the foundation's
    # level of theory, as their labels are, so it shows what the shared layers kept; the target
    # head's errors there also hold the change of theory the model was fine-tuned to learn.
    replay_head: Evaluation | None = None
    # A multifidelity model's other heads, each on the valid frames of its own level of theory
    # (None: the split has no valid frame at that level; MACE validated it on part of its train).
    level_heads: dict[str, tuple[str, Evaluation | None]] = field(default_factory=dict)
    level: str | None = None  # the level of theory of the valid frames judged (None: not recorded)

    @property
    def metrics(self) -> dict:
        """The CONTRACT numbers (all but report_path)."""
        ft, fnd = self.valid.overall, self.valid_foundation.overall
        return {
            "rmse_e_mev_per_atom": to_mev(ft["rmse_e_per_atom"]),
            "rmse_f_mev_per_a": to_mev(ft["rmse_f"]),
            "rmse_s_mev_per_a3": to_mev(ft["rmse_s"]),
            "foundation_rmse_e_mev_per_atom": to_mev(fnd["rmse_e_per_atom"]),
            "foundation_rmse_f_mev_per_a": to_mev(fnd["rmse_f"]),
            "replay_rmse_f_mev_per_a": to_mev(self.replay.overall["rmse_f"]),
            "n_valid": len(self.valid.frames),
        }

    @property
    def property_metrics(self) -> dict:
        """Valid-set dipole and polarizability errors of the fine-tuned model and, where it
        predicts them too, the foundation's (empty for energy-only models)."""
        return {**property_errors(self.valid), **property_errors(self.valid_foundation, prefix="foundation_")}

    @property
    def champion_metrics(self) -> dict:
        """The champion's valid-set errors on this model's valid frames (empty: no champion)."""
        if self.valid_champion is None:
            return {}
        overall = self.valid_champion.overall
        return {
            "champion_rmse_e_mev_per_atom": to_mev(overall["rmse_e_per_atom"]),
            "champion_rmse_f_mev_per_a": to_mev(overall["rmse_f"]),
        }

    @property
    def rows(self) -> list[dict]:
        champion = {"champion": self.valid_champion} if self.valid_champion is not None else {}
        return compare_rows(self.valid, {"foundation": self.valid_foundation, **champion})

    @property
    def forgetting(self) -> dict:
        """Held-out replay RMSE of the fine-tuned model over the foundation's (1: nothing
        forgotten). Energies are reported beside forces: multihead replay can keep forces
        while replay energies drift."""
        ft, fnd = self.replay.overall, self.replay_foundation.overall
        return {
            "forgetting_e_ratio": error_ratio(ft["rmse_e_per_atom"], fnd["rmse_e_per_atom"]),
            "forgetting_f_ratio": error_ratio(ft["rmse_f"], fnd["rmse_f"]),
        }

    @property
    def replay_head_errors(self) -> dict:
        """The replay head's held-out replay RMSE in meV, and over the foundation's (empty: no
        replay head)."""
        if self.replay_head is None:
            return {}
        kept, fnd = self.replay_head.overall, self.replay_foundation.overall
        return {
            "replay_head_rmse_e_mev_per_atom": to_mev(kept["rmse_e_per_atom"]),
            "replay_head_rmse_f_mev_per_a": to_mev(kept["rmse_f"]),
            "replay_head_forgetting_e_ratio": error_ratio(kept["rmse_e_per_atom"], fnd["rmse_e_per_atom"]),
            "replay_head_forgetting_f_ratio": error_ratio(kept["rmse_f"], fnd["rmse_f"]),
        }

    @property
    def replay_rows(self) -> list[dict]:
        """Per-config_type rows of the held-out replay frames: the fine-tuned head beside the
        foundation and, for a multihead model, its replay head (`replay_head_*` columns)."""
        replay_head = {"replay_head": self.replay_head} if self.replay_head is not None else {}
        return compare_rows(self.replay, {"foundation": self.replay_foundation, **replay_head})

    @property
    def head_rows(self) -> list[dict]:
        """One row per head a multifidelity model has, on its own level's valid frames (empty
        for other models): the deployed head first."""
        if not self.level_heads:
            return []
        heads = {self.head: (self.level, self.valid), **self.level_heads}
        nan = float("nan")
        return [
            {
                "head": head,
                "level_of_theory": level,
                "n_frames": len(evaluation.frames) if evaluation else 0,
                "rmse_e_mev_per_atom": to_mev(evaluation.overall["rmse_e_per_atom"]) if evaluation else nan,
                "rmse_f_mev_per_a": to_mev(evaluation.overall["rmse_f"]) if evaluation else nan,
            }
            for head, (level, evaluation) in heads.items()
        ]

    @property
    def beats_foundation_on_forces(self) -> bool:
        metrics = self.metrics
        return metrics["rmse_f_mev_per_a"] < metrics["foundation_rmse_f_mev_per_a"]

    def report(self, data_versions: dict, trained: dict) -> dict:
        """parity.json's content."""
        ft, fnd = self.replay.overall, self.replay_foundation.overall
        return {
            **self.metrics,
            **self.property_metrics,
            **self.champion_metrics,
            "units": "meV/atom (energy), meV/Å (forces), meV/Å³ (stress), mD (dipoles), me·Å²/V (polarizabilities)",
            "rows": self.rows,
            "test_rows": self.test_rows,
            "replay_heldout": {
                "n_frames": len(self.replay.frames),
                "rmse_e_mev_per_atom": to_mev(ft["rmse_e_per_atom"]),
                "rmse_f_mev_per_a": to_mev(ft["rmse_f"]),
                "foundation_rmse_e_mev_per_atom": to_mev(fnd["rmse_e_per_atom"]),
                "foundation_rmse_f_mev_per_a": to_mev(fnd["rmse_f"]),
                **self.forgetting,
                **self.replay_head_errors,
                "rows": self.replay_rows,
            },
            "finetuned_head": self.head,
            "level_of_theory": self.level,
            "heads": self.head_rows,
            "trained_properties": trained,
            "data_versions": data_versions,
        }


def parity(
    finetuned_model: Path,
    foundation_model: Path,
    valid: Path,
    test: Path | None,
    heldout: Path | None,
    settings: EvalSettings,
    champion_model: Path | None = None,
    level: str | None = None,
    head_levels: dict[str, str] | None = None,
) -> Parity:
    """Evaluate both models on the same files, and the champion (if given) on the valid frames;
    the held-out replay frames are restricted to the elements the fine-tuned model kept (naive
    fine-tuning drops the foundation's others). Valid and test frames are those at `level`, the
    one the model deploys; each other head in `head_levels` (a multifidelity model's) is
    evaluated on the valid frames of its own level."""
    device = resolve_device(settings.device)
    ft_model = load_model(finetuned_model, device)
    fnd_model = load_model(foundation_model, device)
    head = model_head(model_heads(ft_model))

    def both(frames):
        # a foundation without an element of the frames (a model trained from scratch on new
        # elements) has nothing to say about them: its columns stay NaN
        known = len(known_frames(frames, fnd_model)) == len(frames)
        return (
            evaluate(ft_model, frames, head, settings.batch_size, device),
            evaluate(fnd_model, frames if known else [], None, settings.batch_size, device),
        )

    every_valid = read_frames(valid)
    valid_frames = frames_at_level(every_valid, level)
    valid_ft, valid_fnd = both(valid_frames)
    test_frames = frames_at_level(read_frames(test), level) if test is not None and test.is_file() else []
    test_rows = []
    if test_frames:
        test_ft, test_fnd = both(test_frames)
        test_rows = compare_rows(test_ft, {"foundation": test_fnd})
    held = read_frames(heldout) if heldout is not None and heldout.is_file() else []
    held = known_frames(held, ft_model)
    replay_ft, replay_fnd = both(held)
    replay_head = None
    if REPLAY_HEAD in model_heads(ft_model) and held:
        replay_head = evaluate(ft_model, held, REPLAY_HEAD, settings.batch_size, device)
    valid_champion = None
    if champion_model is not None:
        valid_champion = evaluate(load_model(champion_model, device), valid_frames, None, settings.batch_size, device)
    others = {}
    for other, other_level in (head_levels or {}).items():
        if other != head:
            frames = [a for a in every_valid if level_of(a) == other_level]
            others[other] = (
                other_level,
                evaluate(ft_model, frames, other, settings.batch_size, device) if frames else None,
            )
    return Parity(
        head, valid_ft, valid_fnd, replay_ft, replay_fnd, test_rows, valid_champion, replay_head, others, level
    )


def write_parity_report(
    result: Parity, out: ParityReport, data_versions: dict, trained: dict, curve: Sequence[dict]
) -> dict[str, str]:
    """parity.json, the two parity plots and the learning curve (`curve`: the trainer's, per
    epoch and head) into `out`; return each figure as a base64 PNG for embedding in metadata.
    `trained`: the properties each head fitted (core.manifest.trained_properties)."""
    figures = {
        out.valid_plot_path: parity_figure(
            [
                ("foundation (zero-shot)", result.valid_foundation.frames, result.valid_foundation.predictions),
                ("fine-tuned", result.valid.frames, result.valid.predictions),
            ],
            f"valid set ({len(result.valid.frames)} frames)",
        ),
        out.replay_plot_path: parity_figure(
            [
                ("foundation", result.replay_foundation.frames, result.replay_foundation.predictions),
                ("fine-tuned", result.replay.frames, result.replay.predictions),
            ],
            f"held-out replay frames ({len(result.replay.frames)}): forgetting",
        ),
        out.learning_curve_path: learning_curve_figure(curve, "fine-tuning: learning curve"),
    }
    embedded = {}
    for path, fig in figures.items():
        embedded[path.stem] = figure_thumbnail_base64(fig)
        save_figure(fig, path)
    out.report_path.write_text(json.dumps(result.report(data_versions, trained), indent=1))
    return embedded
