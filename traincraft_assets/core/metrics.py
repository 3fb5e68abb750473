"""Error metrics of predictions against REF_* labels: numbers only, no policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import CONFIG_TYPE_KEY, get_label


@dataclass
class Prediction:
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None  # 3x3, eV/Å^3, only for fully periodic frames


def errors(frames: Sequence[Atoms], predictions: Sequence[Prediction]) -> dict[str, float]:
    """RMSE/MAE of per-atom energy (eV/atom), force components (eV/Å), stress (eV/Å^3).

    A metric with no reference label in `frames` is NaN, not zero.
    """
    de, df, ds = [], [], []
    for atoms, pred in zip(frames, predictions):
        e = get_label(atoms, "energy")
        if e is not None:
            de.append((pred.energy - float(e)) / len(atoms))
        f = get_label(atoms, "forces")
        if f is not None:
            df.append((pred.forces - f).ravel())
        s = get_label(atoms, "stress")
        if s is not None and pred.stress is not None:
            ds.append(pred.stress.reshape(-1) - s.reshape(-1))

    def rmse_mae(parts):
        if not parts:
            return float("nan"), float("nan")
        x = np.concatenate([np.atleast_1d(p) for p in parts])
        return float(np.sqrt(np.mean(x**2))), float(np.mean(np.abs(x)))

    (re, me), (rf, mf), (rs, ms) = rmse_mae(de), rmse_mae(df), rmse_mae(ds)
    return {
        "n_frames": len(frames),
        "rmse_e_per_atom": re,
        "mae_e_per_atom": me,
        "rmse_f": rf,
        "mae_f": mf,
        "rmse_s": rs,
        "mae_s": ms,
    }


def errors_by_config_type(frames: Sequence[Atoms], predictions: Sequence[Prediction]) -> dict[str, dict[str, float]]:
    """`errors` for all frames ("all") and for each config_type."""
    groups: dict[str, list[int]] = {}
    for i, atoms in enumerate(frames):
        groups.setdefault(str(atoms.info.get(CONFIG_TYPE_KEY, "Default")), []).append(i)
    table = {"all": errors(frames, predictions)}
    for name in sorted(groups):
        idx = groups[name]
        table[name] = errors([frames[i] for i in idx], [predictions[i] for i in idx])
    return table


def to_mev(value: float) -> float:
    return float(value) * 1000.0


def error_ratio(candidate: float | None, baseline: float | None) -> float:
    """candidate / baseline error (e.g. fine-tuned over foundation on held-out replay frames);
    NaN when either is missing or not finite, or the baseline is 0."""
    if candidate is None or baseline is None or not (np.isfinite(candidate) and np.isfinite(baseline)) or baseline <= 0:
        return float("nan")
    return candidate / baseline
