"""Quality gates: what a fine-tuned model (the challenger) must show before it may serve.

Five gates, each a verdict with its reason and numbers:
- accuracy: on the valid set, force AND energy RMSE below the zero-shot foundation's;
- forgetting: on the held-out replay frames (the foundation's own distribution, labelled at its
  level of theory), force AND energy RMSE no worse than the foundation's times
  `forgetting_ratio`. Multihead replay can keep forces while energies drift tenfold; both are
  gated. A multihead model is judged on its replay head, which predicts the foundation's theory
  as those labels do: its target head has learned the target's theory, and its errors there
  hold that change too (docs: Known limits). Other models are judged on their one head;
- config types: no kind of frame (config_type) got worse than its baseline by more than a ratio
  (and an absolute tolerance), on the valid set and on the held-out replay frames: totals can
  improve while one kind degrades several times (see `config_types`);
- learning curve: no NaN or infinite loss or error in any epoch;
- MD stability: a short Langevin run (ASE) from a few valid structures with the deployable
  model: temperature bounded, no two atoms closer than a floor, no force above a ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms

from traincraft_assets.core.metrics import error_ratio

if TYPE_CHECKING:
    from traincraft_assets.core.artifacts import FinetunedModel


GATES = {
    "accuracy": "valid force and energy RMSE below the zero-shot foundation's",
    "forgetting": "held-out replay-set force and energy RMSE within a ratio of the foundation's",
    "config_types": "no config_type's force or energy RMSE worse than its baseline's by more than a ratio",
    "learning_curve": "no NaN or infinite value in the learning curve",
    "md_stability": "short Langevin MD from valid structures stays physical",
}


@dataclass(frozen=True)
class GateSettings:
    forgetting_ratio: float = field(
        default=1.5, metadata={"help": "held-out replay RMSE may be at most this times the foundation's"}
    )
    config_type_ratio: float = field(
        default=1.5,
        metadata={
            "help": "a config_type's energy or force RMSE may be at most this times its baseline's (valid set: "
            "the serving champion's, else the zero-shot foundation's; held-out replay frames: the foundation's)"
        },
    )
    config_type_tolerance_e_mev_per_atom: float = field(
        default=1.0,
        metadata={"help": "a config_type's energy RMSE may exceed its baseline's by this (meV/atom) at any ratio"},
    )
    config_type_tolerance_f_mev_per_a: float = field(
        default=5.0,
        metadata={"help": "a config_type's force RMSE may exceed its baseline's by this (meV/Å) at any ratio"},
    )
    md_structures: int = field(default=3, metadata={"help": "valid structures to start MD from, evenly spaced"})
    md_steps: int = field(default=200, metadata={"help": "Langevin steps from each structure"})
    md_timestep_fs: float = field(default=1.0, metadata={"help": "MD time step (fs)"})
    md_temperature_k: float = field(default=300.0, metadata={"help": "Langevin thermostat temperature (K)"})
    md_max_temperature_k: float = field(default=1500.0, metadata={"help": "above this the run is exploding (K)"})
    md_min_distance_a: float = field(
        default=0.6, metadata={"help": "two atoms closer than this (Å): the model let them collapse"}
    )
    md_max_force_ev_per_a: float = field(default=50.0, metadata={"help": "a force above this (eV/Å) fails the gate"})
    md_seed: int = field(default=0, metadata={"help": "initial velocities and thermostat noise"})


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    reason: str
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def accuracy(report: dict) -> Verdict:
    """From parity.json: the challenger beats the zero-shot foundation on the valid set."""
    numbers = {
        k: report[k]
        for k in (
            "rmse_e_mev_per_atom",
            "foundation_rmse_e_mev_per_atom",
            "rmse_f_mev_per_a",
            "foundation_rmse_f_mev_per_a",
        )
    }
    e, e0 = numbers["rmse_e_mev_per_atom"], numbers["foundation_rmse_e_mev_per_atom"]
    f, f0 = numbers["rmse_f_mev_per_a"], numbers["foundation_rmse_f_mev_per_a"]
    if not _finite(e, e0, f, f0):
        return Verdict("accuracy", False, f"valid-set errors are not all finite: {numbers}", numbers)
    worse = [name for name, mine, theirs in (("energy", e, e0), ("force", f, f0)) if not mine < theirs]
    reason = f"valid force RMSE {f:.1f} vs foundation {f0:.1f} meV/Å, energy RMSE {e:.2f} vs {e0:.2f} meV/atom" + (
        f": not better on {' and '.join(worse)}" if worse else ""
    )
    return Verdict("accuracy", not worse, reason, numbers)


def forgetting(report: dict, ratio: float) -> Verdict:
    """From parity.json's held-out replay rows: the challenger kept what the foundation knew."""
    held = report.get("replay_heldout") or {}
    if not held.get("n_frames"):
        return Verdict(
            "forgetting",
            True,
            "not measured: no held-out replay frames (replay_subset num_heldout is 0 or there is no "
            "replay set); nothing shows what the foundation knew.",
            {"measured": False},
        )
    replay_head = "replay_head_rmse_f_mev_per_a" in held
    judged = "replay_head_" if replay_head else ""
    where = f"{held['n_frames']} replay frames" + (", the multihead model's replay head" if replay_head else "")
    numbers = {k: held[k] for k in held if "rmse" in k} | {
        "n_frames": held["n_frames"],
        "ratio_allowed": ratio,
        "judged_on_replay_head": replay_head,
    }
    worse = []
    for quantity, mine, theirs, unit in (
        ("force", held[f"{judged}rmse_f_mev_per_a"], held["foundation_rmse_f_mev_per_a"], "meV/Å"),
        ("energy", held[f"{judged}rmse_e_mev_per_atom"], held["foundation_rmse_e_mev_per_atom"], "meV/atom"),
    ):
        if not _finite(mine, theirs) or mine > ratio * theirs:
            worse.append(f"{quantity} RMSE {mine:.2f} vs foundation {theirs:.2f} {unit}")
        numbers[f"{quantity}_ratio"] = error_ratio(mine, theirs)
    if worse:
        return Verdict("forgetting", False, f"forgot more than {ratio}x on {where}: " + "; ".join(worse), numbers)
    return Verdict(
        "forgetting",
        True,
        f"replay-set force and energy RMSE within {ratio}x the foundation's "
        f"({numbers['force_ratio']:.2f}x, {numbers['energy_ratio']:.2f}x) on {where}",
        numbers,
    )


@dataclass
class _KindsJudged:
    worse: list[str] = field(default_factory=list)  # each kind and quantity worse than allowed, with its numbers
    unjudged: list[str] = field(default_factory=list)  # the model has a number, its baseline none
    ratios: list[tuple[float, str]] = field(default_factory=list)  # (model over baseline, kind) of each judged


def _judge_kinds(
    judged: _KindsJudged, where: str, rows: Sequence[dict], mine: str, baseline: str, settings: GateSettings
) -> None:
    """One set's per-config_type rows into `judged`. `mine`, `baseline`: the column prefixes of
    the judged model ("" for the fine-tuned head, "replay_head_") and of its baseline."""
    for row in rows:
        if row["config_type"] == "all":  # the totals: gate_accuracy and gate_forgetting judge them
            continue
        for quantity, column, unit, tolerance in (
            ("energy", "rmse_e_mev_per_atom", "meV/atom", settings.config_type_tolerance_e_mev_per_atom),
            ("force", "rmse_f_mev_per_a", "meV/Å", settings.config_type_tolerance_f_mev_per_a),
        ):
            value, base = row.get(mine + column), row.get(baseline + column)
            frames = f"{row['n_frames']} frame{'s' if row['n_frames'] != 1 else ''}"
            kind = f"{where} {row['config_type']} ({frames}) {quantity}"
            if not _finite(base):
                if _finite(value):  # the kind carries the label, but the baseline has no number
                    judged.unjudged.append(kind)
                continue  # neither has a number: no frame of the kind carries the label
            ratio = error_ratio(value, base)
            if not _finite(value) or (value > settings.config_type_ratio * base and value - base > tolerance):
                judged.worse.append(
                    f"{kind} RMSE {value:.2f} vs {baseline.rstrip('_')} {base:.2f} {unit} ({ratio:.1f}x)"
                )
            judged.ratios.append((ratio, kind))


def config_types(report: dict, settings: GateSettings) -> Verdict:
    """From parity.json's per-config_type rows: no kind of frame got worse than its baseline by
    more than `config_type_ratio`, unless by no more than the absolute tolerance (a kind at 0.3
    meV/atom may go to 0.5). Totals can improve while one kind degrades: fine-tuned with the
    demo's settings to Ni and Al data at the foundation's own level of theory, a model improved
    its valid totals and passed accuracy and forgetting while its held-out Ni 111 surfaces went
    from 3.1 to 15.1 meV/atom (docs: Retraining, quality gates).

    Baselines, each evaluated on the same frames by parity_report:
    - valid set: the serving champion (the report's `champion_*` columns, there when another
      model served as the report was made), else the zero-shot foundation. parity_report finds
      the champion through the instance rather than a declared read, and the gates read the
      report: a check on finetuned_model that read champion_model (downstream of it) would make
      Dagster run the gates after the champion decision that needs their verdicts;
    - held-out replay frames (the foundation's own distribution and level of theory): the
      foundation, as `forgetting`, so that no generation drifts a little further from what the
      foundation knew than the last. A multihead model is judged there on its replay head.
    A kind whose baseline has no number is named as not judged and does not fail the gate.
    """
    valid_rows = report.get("rows") or []
    valid_baseline = "champion" if any("champion_rmse_f_mev_per_a" in row for row in valid_rows) else "foundation"
    held = report.get("replay_heldout") or {}
    held_rows = (held.get("rows") or []) if held.get("n_frames") else []
    replay_head = any("replay_head_rmse_f_mev_per_a" in row for row in held_rows)
    judged = _KindsJudged()
    _judge_kinds(judged, "valid", valid_rows, "", f"{valid_baseline}_", settings)
    if replay_head:
        _judge_kinds(judged, "held-out replay, replay head,", held_rows, "replay_head_", "foundation_", settings)
    else:
        _judge_kinds(judged, "held-out replay", held_rows, "", "foundation_", settings)
    finite = [(ratio, kind) for ratio, kind in judged.ratios if math.isfinite(ratio)]
    worst_ratio, worst = max(finite) if finite else (None, None)
    numbers = {
        "valid_baseline": valid_baseline,
        "judged_on_replay_head": replay_head,
        "n_judged": len(judged.ratios),
        "n_worse": len(judged.worse),
        "n_unjudged": len(judged.unjudged),
        "worst_ratio": worst_ratio,
        "worst": worst,
        "ratio_allowed": settings.config_type_ratio,
    }
    allowed = (
        f"{settings.config_type_ratio}x the baseline's and more than {settings.config_type_tolerance_e_mev_per_atom} "
        f"meV/atom (energy) or {settings.config_type_tolerance_f_mev_per_a} meV/Å (force) above it"
    )
    unjudged = f"; not judged, the baseline has no number: {', '.join(judged.unjudged)}" if judged.unjudged else ""
    if not judged.ratios:
        return Verdict(
            "config_types",
            True,
            "not measured: parity.json has no per-config_type rows with numbers for both the model and its "
            "baseline; materialize parity_report again to record them" + unjudged,
            numbers,
        )
    against = f"{len(judged.ratios)} judged: valid set against the {valid_baseline}" + (
        f", held-out replay frames{' on the replay head' if replay_head else ''} against the foundation"
        if held_rows
        else ""
    )
    if judged.worse:
        return Verdict(
            "config_types", False, f"worse than {allowed} ({against}): " + "; ".join(judged.worse) + unjudged, numbers
        )
    largest = f"; the largest ratio: {worst} at {worst_ratio:.2f}x" if finite else ""
    return Verdict(
        "config_types", True, f"no config_type worse than {allowed} ({against}){largest}" + unjudged, numbers
    )


def learning_curve(curve: Sequence[dict]) -> Verdict:
    """No NaN or infinity anywhere in the curve: a diverged training can still write a model."""
    bad = sorted(
        {
            row.get("epoch")
            for row in curve
            for value in row.values()
            if isinstance(value, float) and not math.isfinite(value)
        }
    )
    if not curve:
        return Verdict("learning_curve", False, "the training wrote no learning curve", {"n_rows": 0})
    if bad:
        return Verdict("learning_curve", False, f"NaN or infinite values in epochs {bad}", {"bad_epochs": bad})
    return Verdict("learning_curve", True, f"{len(curve)} curve rows, all finite", {"n_rows": len(curve)})


def _start_structures(frames: Sequence[Atoms], n: int) -> list[Atoms]:
    picks = np.unique(np.linspace(0, len(frames) - 1, num=min(n, len(frames))).round().astype(int))
    return [frames[i].copy() for i in picks]


def _min_distance(atoms: Atoms) -> float:
    if len(atoms) < 2:
        return float("inf")
    d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    return float(d[np.triu_indices(len(atoms), k=1)].min())


def md_stability(calculator, frames: Sequence[Atoms], settings: GateSettings) -> Verdict:
    """Langevin MD from a few structures with `calculator` (an ASE calculator of the deployable
    model); stops at the first sign of an explosion and says which structure, step and why."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    starts = _start_structures(frames, settings.md_structures)
    if not starts:
        return Verdict("md_stability", False, "no valid structures to run MD from", {})
    worst = {"max_temperature_k": 0.0, "min_distance_a": float("inf"), "max_force_ev_per_a": 0.0}
    for i, atoms in enumerate(starts):
        atoms.calc = calculator
        MaxwellBoltzmannDistribution(
            atoms, temperature_K=settings.md_temperature_k, rng=np.random.default_rng(settings.md_seed + i)
        )
        dyn = Langevin(
            atoms,
            timestep=settings.md_timestep_fs * units.fs,
            temperature_K=settings.md_temperature_k,
            friction=0.01 / units.fs,
            fixcm=False,  # a stability check, not sampling: the centre of mass may drift
            rng=np.random.default_rng(settings.md_seed + i),
        )
        for step in range(settings.md_steps + 1):
            if step:
                dyn.run(1)
            forces = atoms.get_forces()
            force = float(np.linalg.norm(forces, axis=1).max()) if np.all(np.isfinite(forces)) else float("inf")
            temperature = float(atoms.get_temperature())
            distance = _min_distance(atoms)
            worst = {
                "max_temperature_k": max(worst["max_temperature_k"], temperature),
                "min_distance_a": min(worst["min_distance_a"], distance),
                "max_force_ev_per_a": max(worst["max_force_ev_per_a"], force),
            }
            problem = (
                f"temperature {temperature:.0f} K above {settings.md_max_temperature_k:.0f} K"
                if not temperature <= settings.md_max_temperature_k
                else f"two atoms {distance:.2f} Å apart, closer than {settings.md_min_distance_a} Å"
                if not distance >= settings.md_min_distance_a
                else f"a force of {force:.1f} eV/Å, above {settings.md_max_force_ev_per_a} eV/Å"
                if not force <= settings.md_max_force_ev_per_a
                else None
            )
            if problem:
                return Verdict(
                    "md_stability",
                    False,
                    f"MD from valid structure {i} ({atoms.get_chemical_formula()}) exploded at step {step} "
                    f"of {settings.md_steps}: {problem}",
                    {**worst, "structure": i, "step": step},
                )
    return Verdict(
        "md_stability",
        True,
        f"{len(starts)} structures x {settings.md_steps} steps of Langevin MD at {settings.md_temperature_k:.0f} K: "
        f"max {worst['max_temperature_k']:.0f} K, closest pair {worst['min_distance_a']:.2f} Å, "
        f"largest force {worst['max_force_ev_per_a']:.1f} eV/Å",
        worst,
    )


def judge(
    model: FinetunedModel, report: dict | None, valid_frames: Sequence[Atoms], settings: GateSettings, device: str
) -> list[Verdict]:
    """Every gate on one fine-tuned model; `report` is parity.json of this model (None when it
    has not been evaluated: the gates that read it then fail and say so)."""
    from mace.calculators import MACECalculator

    from traincraft_assets.core.training import get_trainer

    if report is None:
        missing = "no parity_report of this model yet: materialize parity_report, then the gates"
        verdicts = [Verdict(gate, False, missing) for gate in ("accuracy", "forgetting", "config_types")]
    else:
        verdicts = [accuracy(report), forgetting(report, settings.forgetting_ratio), config_types(report, settings)]
    verdicts.append(learning_curve(get_trainer(model.manifest["trainer"]).learning_curve(model.path)))
    calculator = MACECalculator(model_paths=str(model.deploy_model_path), device=device, default_dtype="float64")
    verdicts.append(md_stability(calculator, valid_frames, settings))
    return verdicts
