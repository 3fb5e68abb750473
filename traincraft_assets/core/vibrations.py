"""Harmonic vibrations of a molecule: the reference an MD spectrum is compared with, from any ASE
calculator (a labeller's: xTB, PySCF) or from a MACE model; stick spectra, their broadening onto
an MD spectrum's grid, and a table pairing the peaks of two spectra.

Units: positions in Å, masses in amu, Hessians in eV/Å², dipole derivatives in e (e·Å per Å),
wavenumbers in cm⁻¹, IR intensities in km/mol.

Every route ends in `normal_modes`, so the labeller's modes and the model's are analysed alike:
the Hessian is mass-weighted, the three translations and three rotations (two for a linear
molecule, none for a periodic cell) are projected out exactly (rather than hoping that six eigenvalues come out near
zero: ASE's own analysis of xTB water gives rotations of up to 50i cm⁻¹ with 357 km/mol), and
the internal block is diagonalised.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.data import chemical_symbols
from ase.units import _amu, _c, _e, _eps0, _Nav

from traincraft_assets.core.models import (
    CALCULATOR_MODEL_TYPES,
    load_model,
    model_elements,
    model_head,
    model_heads,
)
from traincraft_assets.core.spectra import Peak

# wavenumber = WAVENUMBER_PER_ROOT_EIGENVALUE · √λ for an eigenvalue λ of the mass-weighted Hessian in
# eV/(Å²·amu): ω = √(λ·e/(amu·10⁻²⁰ m²)) rad/s, wavenumber = ω/(2π·c), in cm⁻¹: 521.47.
WAVENUMBER_PER_ROOT_EIGENVALUE = math.sqrt(_e / (_amu * 1e-20)) / (2 * math.pi * _c * 100)
# The integrated absorption A = N_A/(12·ε₀·c²)·|∂μ/∂Q|², in km/mol for |∂μ/∂Q|² in e²/amu: 974.9.
KM_PER_MOL_PER_E2_AMU = _Nav * _e**2 / (12 * _eps0 * _c**2 * _amu) / 1000
# Rotation vectors shorter than this, relative to the longest external one, are absent: a linear molecule.
LINEAR_TOLERANCE = 1e-5
# Finite-difference displacement (Å): ASE's default.
DELTA = 0.01


@dataclass(frozen=True)
class HarmonicModes:
    """The real internal modes, ascending, with their IR intensities (None without dipoles);
    the imaginary ones' magnitudes (a saddle point, or a structure not relaxed); which external
    modes were projected out; and where the Hessian and the dipole derivatives came from."""

    wavenumbers_cm: np.ndarray
    intensities_km_mol: np.ndarray | None
    imaginary_cm: np.ndarray
    dropped: str
    source: str


class PeakMatch(NamedTuple):
    """A reference peak, the other spectrum's peak paired with it (None: none within the
    tolerance) and the shift other - reference (cm⁻¹)."""

    reference_cm: float
    other_cm: float | None
    shift_cm: float | None


def normal_modes(atoms: Atoms, hessian, dipole_derivatives=None, source: str = "") -> HarmonicModes:
    """The harmonic modes of `atoms` from its Hessian ([3N, 3N], eV/Å², row 3a + i for atom a
    along axis i) and, for IR intensities, the dipole derivatives ∂μ/∂r ([3N, 3], e, the
    same rows). Intensities are A = N_A/(12·ε₀·c²)·|∂μ/∂Q|² with Q the mass-weighted normal
    coordinate."""
    n = 3 * len(atoms)
    hessian = np.asarray(hessian, dtype=float)
    if hessian.shape != (n, n):
        raise ValueError(f"expected a Hessian of shape ({n}, {n}) for {len(atoms)} atoms (eV/Å²); got {hessian.shape}.")
    root_masses = np.repeat(np.sqrt(atoms.get_masses()), 3)
    weighted = hessian / np.outer(root_masses, root_masses)
    internal, dropped = _internal_basis(atoms)
    eigenvalues, vectors = np.linalg.eigh(internal.T @ (0.5 * (weighted + weighted.T)) @ internal)
    real = eigenvalues > 0
    modes = internal @ vectors[:, real]  # mass-weighted displacements, one column per mode
    intensities = None
    if dipole_derivatives is not None:
        derivatives = np.asarray(dipole_derivatives, dtype=float)
        if derivatives.shape != (n, 3):
            raise ValueError(
                f"expected dipole derivatives ∂μ/∂r of shape ({n}, 3) for {len(atoms)} atoms (e); got {derivatives.shape}."
            )
        per_mode = (derivatives / root_masses[:, None]).T @ modes  # ∂μ/∂Q, e/√amu
        intensities = KM_PER_MOL_PER_E2_AMU * (per_mode**2).sum(axis=0)
    return HarmonicModes(
        wavenumbers_cm=WAVENUMBER_PER_ROOT_EIGENVALUE * np.sqrt(eigenvalues[real]),
        intensities_km_mol=intensities,
        imaginary_cm=WAVENUMBER_PER_ROOT_EIGENVALUE * np.sqrt(-eigenvalues[eigenvalues < 0]),
        dropped=dropped,
        source=source,
    )


def harmonic_modes(atoms: Atoms, calculator, delta: float = DELTA) -> HarmonicModes:
    """The harmonic modes of `atoms` with `calculator`, by ASE's finite differences (central,
    ±`delta` Å): `Infrared` where the calculator gives the dipole (then with intensities),
    `Vibrations` where it does not. ASE's cache files go to a scratch directory, removed after.
    The structure should be relaxed with the same calculator first."""
    from ase.vibrations import Infrared, Vibrations

    atoms = atoms.copy()
    atoms.calc = calculator
    dipoles = _gives_dipole(atoms)
    name = f"{type(calculator).__name__} by ASE {'Infrared' if dipoles else 'Vibrations'}, ±{delta:g} Å"
    with tempfile.TemporaryDirectory(prefix="vibrations-") as scratch:
        finite = (Infrared if dipoles else Vibrations)(atoms, name=str(Path(scratch) / "cache"), delta=delta)
        finite.run()
        hessian = finite.get_vibrations().get_hessian_2d()
        derivatives = _dipole_derivatives(finite, len(atoms), delta) if dipoles else None
    source = f"Hessian and dipole derivatives: {name}" if dipoles else f"Hessian: {name}; no dipole, so no intensities"
    return normal_modes(atoms, hessian, derivatives, source)


def mace_harmonic_modes(
    atoms: Atoms, model_path: str | Path, dipole_model_path: str | Path | None = None, device: str = "cpu"
) -> HarmonicModes:
    """The harmonic modes of `atoms` with a MACE model, in float64.

    The Hessian of an energy model is MACE's analytic one (`MACECalculator.get_hessian`). MACE
    0.3.16 computes neither the Hessian nor ∂μ/∂r for EnergyDipolesMACE, so that model's modes
    come from ASE's finite differences of its forces and dipoles (`harmonic_modes`). Intensities
    of an energy-only model come from `dipole_model_path`, an AtomicDielectricMACE (its analytic
    ∂μ/∂r, `get_dielectric_derivatives`); without one they are None, and `source` says so."""
    model = _load(model_path, atoms, device)
    model_class = type(model).__name__
    if model_class in ("AtomicDipolesMACE", "AtomicDielectricMACE"):
        raise ValueError(
            f"{model_path} is an {model_class}: it predicts dipoles, not energies, so it has no Hessian. Pass an "
            "energy model as model_path and this one as dipole_model_path."
        )
    if model_class == "EnergyDipolesMACE":
        if dipole_model_path is not None:
            raise ValueError(
                f"{model_path} is an EnergyDipolesMACE, with a dipole head of its own: leave dipole_model_path out."
            )
        modes = harmonic_modes(atoms, _calculator(model, device))
        return replace(modes, source=f"{modes.source} (MACE 0.3.16 has no analytic Hessian for {model_class})")
    n = 3 * len(atoms)
    hessian = _calculator(model, device).get_hessian(atoms).reshape(n, n)  # [3N, N, 3]
    if dipole_model_path is None:
        return normal_modes(
            atoms, hessian, None, f"Hessian: MACE get_hessian; {model_class} has no dipole head, so no intensities"
        )
    dipole_model = _load(dipole_model_path, atoms, device)
    if type(dipole_model).__name__ != "AtomicDielectricMACE":
        raise ValueError(
            f"{dipole_model_path} is an {type(dipole_model).__name__}; MACE 0.3.16 gives the dipole "
            "derivatives of an AtomicDielectricMACE only (get_dielectric_derivatives): train the dipole with the "
            "polarizability (heads dipole and polarizability), or with energy and forces (EnergyDipolesMACE, "
            "passed as model_path alone)."
        )
    # ∂μ/∂r and ∂A/∂r of the polarizability A, [3, N, 3] and [9, N, 3]: component, atom, axis
    dmu_dr, _ = _calculator(dipole_model, device).get_dielectric_derivatives(atoms)
    derivatives = np.transpose(dmu_dr, (1, 2, 0)).reshape(n, 3)
    return normal_modes(
        atoms, hessian, derivatives, "Hessian: MACE get_hessian; dipole derivatives: MACE get_dielectric_derivatives"
    )


def stick_spectrum(modes: HarmonicModes) -> list[Peak]:
    """Each real mode as a peak at its wavenumber, its height the IR intensity relative to the
    strongest; without intensities every height is 1 (positions only)."""
    if modes.intensities_km_mol is None:
        heights = np.ones(len(modes.wavenumbers_cm))
    else:
        strongest = modes.intensities_km_mol.max(initial=0.0)
        heights = modes.intensities_km_mol / strongest if strongest > 0 else np.zeros(len(modes.wavenumbers_cm))
    return [Peak(float(w), float(h)) for w, h in zip(modes.wavenumbers_cm, heights)]


def broaden(sticks: Sequence[Peak], wavenumbers_cm, width_cm: float) -> np.ndarray:
    """Sticks as Lorentzians of full width at half maximum `width_cm` on a wavenumber grid (an MD
    spectrum's), normalised to a maximum of 1 like the MD spectra, to plot beside them."""
    if not width_cm > 0:
        raise ValueError(
            f"width_cm (the Lorentzian's full width at half maximum, cm⁻¹) must be positive; got {width_cm}."
        )
    grid = np.asarray(wavenumbers_cm, dtype=float)
    half = width_cm / 2
    curve = sum((p.height * half**2 / ((grid - p.position_cm) ** 2 + half**2) for p in sticks), np.zeros_like(grid))
    top = curve.max(initial=0.0)
    return curve / top if top > 0 else curve


def match_peaks(reference_cm: Sequence[float], other_cm: Sequence[float], tolerance_cm: float) -> list[PeakMatch]:
    """Each reference peak paired with the nearest other peak within `tolerance_cm`, one to one
    (the closest pairs first), in the reference's order."""
    pairs = sorted(
        (abs(o - r), i, j)
        for i, r in enumerate(reference_cm)
        for j, o in enumerate(other_cm)
        if abs(o - r) <= tolerance_cm
    )
    partner: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in partner and j not in partner.values():
            partner[i] = j
    return [
        PeakMatch(float(r), float(other_cm[partner[i]]), float(other_cm[partner[i]] - r))
        if i in partner
        else PeakMatch(float(r), None, None)
        for i, r in enumerate(reference_cm)
    ]


def _internal_basis(atoms: Atoms) -> tuple[np.ndarray, str]:
    """An orthonormal basis [3N, 3N - 6 (5)] of mass-weighted displacements that neither
    translate nor rotate the molecule (its Eckart frame), and what was removed. A periodic cell
    does not rotate freely: only its translations are removed."""
    root_masses = np.sqrt(atoms.get_masses())[:, None]
    centred = atoms.positions - atoms.get_center_of_mass()
    external = [(root_masses * axis).ravel() for axis in np.eye(3)]
    if not atoms.pbc.any():
        external += [(root_masses * np.cross(axis, centred)).ravel() for axis in np.eye(3)]
    basis, lengths, _ = np.linalg.svd(np.array(external).T)
    n_external = int((lengths > LINEAR_TOLERANCE * lengths[0]).sum())
    if atoms.pbc.any():
        dropped = "3 translations (a periodic cell: no free rotations)"
    else:
        linear = " (a linear molecule)" if n_external == 5 else ""
        dropped = f"3 translations and {n_external - 3} rotations{linear}"
    return basis[:, n_external:], dropped


def _gives_dipole(atoms: Atoms) -> bool:
    """Whether the attached calculator gives this structure's dipole (asked, since a calculator's
    implemented_properties can claim more: MACE 0.3.16 extends the class-wide list)."""
    if atoms.pbc.any():
        return False  # the dipole of a periodic cell is not defined
    try:
        atoms.get_dipole_moment()
    except PropertyNotImplementedError:
        return False
    return True


def _dipole_derivatives(finite, n_atoms: int, delta: float) -> np.ndarray:
    """∂μ/∂r ([3N, 3]) by central differences from the dipoles ASE's Infrared cached."""
    dipoles = {(d.a, d.i, d.sign): d.dipole() for d in finite.displacements() if d.sign != 0}
    return np.array(
        [(dipoles[(a, i, 1)] - dipoles[(a, i, -1)]) / (2 * delta) for a in range(n_atoms) for i in range(3)]
    )


def _load(model_path: str | Path, atoms: Atoms, device: str):
    """The model in `model_path`, refused when `atoms` holds elements it has no embedding for."""
    model = load_model(model_path, device)
    known = model_elements(model)
    if lacking := sorted({int(z) for z in atoms.numbers} - known):
        raise ValueError(
            f"{atoms.get_chemical_formula()} holds {[chemical_symbols[z] for z in lacking]}, which {model_path} has no "
            f"embedding for (it knows {[chemical_symbols[z] for z in sorted(known)]}): use a model trained on those "
            "elements."
        )
    return model


def _calculator(model, device: str):
    """MACE's calculator for `model` (converted to float64: finite differences and Hessians need
    it), on its deployed head."""
    from mace.calculators import MACECalculator

    return MACECalculator(
        models=model,
        device=device,
        default_dtype="float64",
        model_type=CALCULATOR_MODEL_TYPES.get(type(model).__name__, "MACE"),
        head=model_head(model_heads(model)),
    )
