"""Error metrics of predictions against REF_* labels: numbers only, no policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import CONFIG_TYPE_KEY, get_label


@dataclass
class Prediction:
    energy: float | None  # None: a model that predicts dipoles/polarizabilities only
    forces: np.ndarray | None
    stress: np.ndarray | None  # 3x3, eV/Å^3, only for fully periodic frames
    dipole: np.ndarray | None = None  # (3,), e·Å, for models with a dipole head
    polarizability: np.ndarray | None = None  # 3x3, e·Å²/V, for models with a polarizability head


# The six unique components of a symmetric 3x3 tensor, in Voigt order (xx, yy, zz, yz, xz, xy).
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def polarizability_parts(alpha) -> tuple[np.ndarray, float, float]:
    """The six unique components of a polarizability a (symmetrised), its isotropic part
    tr(a)/3, and its anisotropy sqrt(((axx-ayy)^2 + (ayy-azz)^2 + (azz-axx)^2 + 6(axy^2 + axz^2 + ayz^2))/2):
    the two invariants Raman intensities are made of."""
    a = np.asarray(alpha, dtype=float).reshape(3, 3)
    a = (a + a.T) / 2
    unique = np.array([a[i, j] for i, j in VOIGT])
    xx, yy, zz, yz, xz, xy = unique
    aniso = np.sqrt(((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2 + 6 * (xy**2 + xz**2 + yz**2)) / 2)
    return unique, float(np.trace(a) / 3), float(aniso)


def errors(frames: Sequence[Atoms], predictions: Sequence[Prediction]) -> dict[str, float]:
    """RMSE/MAE of per-atom energy (eV/atom), force components (eV/Å), stress (eV/Å^3), dipole
    components and magnitude (e·Å), polarizability's six unique components, isotropic part and
    anisotropy (e·Å²/V).

    A metric with no reference label in `frames`, or no prediction of it, is NaN, not zero.
    """
    de, df, ds, dmu, dmu_norm, dalpha, diso, daniso = ([] for _ in range(8))
    for atoms, pred in zip(frames, predictions):
        e = get_label(atoms, "energy")
        if e is not None and pred.energy is not None:
            de.append((pred.energy - float(e)) / len(atoms))
        f = get_label(atoms, "forces")
        if f is not None and pred.forces is not None:
            df.append((pred.forces - f).ravel())
        s = get_label(atoms, "stress")
        if s is not None and pred.stress is not None:
            ds.append(pred.stress.reshape(-1) - s.reshape(-1))
        mu = get_label(atoms, "dipole")
        if mu is not None and pred.dipole is not None:
            dmu.append(pred.dipole - mu)
            dmu_norm.append(np.linalg.norm(pred.dipole) - np.linalg.norm(mu))
        alpha = get_label(atoms, "polarizability")
        if alpha is not None and pred.polarizability is not None:
            (ref, ref_iso, ref_aniso), (got, iso, aniso) = map(polarizability_parts, (alpha, pred.polarizability))
            dalpha.append(got - ref)
            diso.append(iso - ref_iso)
            daniso.append(aniso - ref_aniso)

    def rmse_mae(parts):
        if not parts:
            return float("nan"), float("nan")
        x = np.concatenate([np.atleast_1d(p) for p in parts])
        return float(np.sqrt(np.mean(x**2))), float(np.mean(np.abs(x)))

    (re, me), (rf, mf), (rs, ms) = rmse_mae(de), rmse_mae(df), rmse_mae(ds)
    (rmu, mmu), (ra, ma) = rmse_mae(dmu), rmse_mae(dalpha)
    return {
        "n_frames": len(frames),
        "rmse_e_per_atom": re,
        "mae_e_per_atom": me,
        "rmse_f": rf,
        "mae_f": mf,
        "rmse_s": rs,
        "mae_s": ms,
        "rmse_mu": rmu,
        "mae_mu": mmu,
        "rmse_mu_norm": rmse_mae(dmu_norm)[0],
        "rmse_alpha": ra,
        "mae_alpha": ma,
        "rmse_alpha_iso": rmse_mae(diso)[0],
        "rmse_alpha_aniso": rmse_mae(daniso)[0],
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
