"""The harmonic reference against what is known: a diatomic's frequency from its force constant,
xTB water's three modes, a MACE model's analytic Hessian against ASE's finite differences with
the same model (and against EMT, the theory it was trained on), its dipole derivatives against
finite differences of its dipoles; stick spectra, broadening and peak matching as pure functions."""

import tempfile

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.morse import MorsePotential
from ase.optimize import BFGS

from traincraft_assets.core.demo import SHIPPED_FOUNDATION_DIR
from traincraft_assets.core.spectra import Peak
from traincraft_assets.core.vibrations import (
    WAVENUMBER_PER_ROOT_EIGENVALUE,
    broaden,
    harmonic_modes,
    mace_harmonic_modes,
    match_peaks,
    normal_modes,
    stick_spectrum,
)

FOUNDATION = SHIPPED_FOUNDATION_DIR / "foundation.model"  # trained on EMT: Cu, Ag, Au, Ni, Pd, Pt, Al


def diatomic(bond: float = 1.0) -> Atoms:
    return Atoms("N2", positions=[[0, 0, 0], [0, 0, bond]])


def spring_wavenumber(atoms: Atoms, k: float) -> float:
    """ω = √(k/μ) in cm⁻¹, for k in eV/Å² and the reduced mass in amu."""
    m1, m2 = atoms.get_masses()
    return WAVENUMBER_PER_ROOT_EIGENVALUE * np.sqrt(k * (m1 + m2) / (m1 * m2))


def test_a_diatomic_spring_has_one_mode_at_the_root_of_k_over_mu():
    atoms = diatomic()
    k = 50.0
    axis = np.outer([0, 0, 1], [0, 0, 1])
    hessian = k * np.block([[axis, -axis], [-axis, axis]])
    modes = normal_modes(atoms, hessian, source="a spring")
    assert modes.wavenumbers_cm == pytest.approx([spring_wavenumber(atoms, k)], rel=1e-9)
    assert modes.dropped == "3 translations and 2 rotations (a linear molecule)"
    assert modes.intensities_km_mol is None and len(modes.imaginary_cm) == 0


def test_a_morse_diatomic_by_ase_finite_differences_matches_its_force_constant(tmp_path, monkeypatch):
    # ASE's Morse: E = epsilon·(exp(-2·rho0·(r/r0 - 1)) - 2·exp(-rho0·(r/r0 - 1))), so k = 2·epsilon·rho0²/r0² at r0
    epsilon, rho0, r0 = 1.0, 6.0, 1.0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    modes = harmonic_modes(diatomic(r0), MorsePotential(epsilon=epsilon, rho0=rho0, r0=r0, rcut1=5.0, rcut2=6.0))
    assert modes.wavenumbers_cm == pytest.approx(
        [spring_wavenumber(diatomic(), 2 * epsilon * rho0**2 / r0**2)], rel=0.01
    )
    assert "ASE Vibrations" in modes.source and "no intensities" in modes.source
    assert list(tmp_path.iterdir()) == []  # ASE's cache files went to a scratch directory, removed


def test_xtb_water_has_a_bend_and_two_stretches_with_ir_intensities():
    from tblite.ase import TBLite

    water = molecule("H2O")
    water.calc = TBLite(method="GFN2-xTB", verbosity=0)
    BFGS(water, logfile=None).run(fmax=1e-4)
    modes = harmonic_modes(water, water.calc)
    bend, symmetric, antisymmetric = modes.wavenumbers_cm
    assert 1500 < bend < 1700 and 3500 < symmetric < antisymmetric < 3800
    assert np.all(modes.intensities_km_mol > 1.0)
    assert modes.dropped == "3 translations and 3 rotations" and len(modes.imaginary_cm) == 0
    assert "ASE Infrared" in modes.source
    sticks = stick_spectrum(modes)
    assert [s.position_cm for s in sticks] == list(modes.wavenumbers_cm)
    assert max(s.height for s in sticks) == 1.0  # the bend is the strongest in GFN2-xTB
    assert sticks[0].height == 1.0


def test_a_mace_models_analytic_hessian_agrees_with_ase_finite_differences_and_its_theory():
    """The shipped demo foundation on a cubic Cu cell (4 atoms: zone-boundary phonons at Γ)."""
    from mace.calculators import MACECalculator

    copper = bulk("Cu", "fcc", cubic=True)
    analytic = mace_harmonic_modes(copper, FOUNDATION)
    calculator = MACECalculator(model_paths=str(FOUNDATION), default_dtype="float64")
    finite = harmonic_modes(copper, calculator)
    emt = harmonic_modes(copper, EMT())

    assert len(analytic.wavenumbers_cm) == 9  # 12 - 3 translations; a cell does not rotate
    assert analytic.dropped == "3 translations (a periodic cell: no free rotations)"
    np.testing.assert_allclose(analytic.wavenumbers_cm, finite.wavenumbers_cm, rtol=1e-3)
    np.testing.assert_allclose(analytic.wavenumbers_cm, emt.wavenumbers_cm, rtol=0.02)
    assert analytic.intensities_km_mol is None
    assert analytic.source == "Hessian: MACE get_hessian; ScaleShiftMACE has no dipole head, so no intensities"


@pytest.fixture(scope="module")
def water_models(tmp_path_factory):
    """Untrained (random) MACE models of H and O, saved as .model files: an energy model, an
    energy-and-dipole one, a dipole-only one and a dipole-and-polarizability one. Random weights
    are enough to check that derivatives and shapes are read right."""
    import mace  # noqa: F401  (torch.load defaults e3nn needs)
    import torch
    from e3nn import o3
    from mace import modules

    common = {
        "r_max": 4.0,
        "num_bessel": 4,
        "num_polynomial_cutoff": 5,
        "max_ell": 2,
        "interaction_cls": modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        "interaction_cls_first": modules.interaction_classes["RealAgnosticInteractionBlock"],
        "num_interactions": 2,
        "num_elements": 2,
        "hidden_irreps": o3.Irreps("4x0e+4x1o+4x2e"),
        "MLP_irreps": o3.Irreps("4x0e"),
        "avg_num_neighbors": 2.0,
        "atomic_numbers": [1, 8],
        "correlation": 2,
        "gate": torch.nn.functional.silu,
    }
    torch.manual_seed(0)
    e0s = np.array([-1.0, -2.0])
    models = {
        "energy": modules.ScaleShiftMACE(**common, atomic_energies=e0s, atomic_inter_scale=1.0, atomic_inter_shift=0.0),
        "energy_dipole": modules.EnergyDipolesMACE(**common, atomic_energies=e0s),
        "dipole": modules.AtomicDipolesMACE(**common, atomic_energies=None),
        "dielectric": modules.AtomicDielectricMACE(**common, atomic_energies=None, use_polarizability=True),
    }
    folder = tmp_path_factory.mktemp("water_models")
    for name, model in models.items():
        torch.save(model, folder / f"{name}.model")
    return {name: folder / f"{name}.model" for name in models}


def test_mace_dipole_derivatives_give_the_intensities_finite_differences_of_its_dipoles_give(water_models):
    from mace.calculators import MACECalculator

    water = molecule("H2O")
    modes = mace_harmonic_modes(water, water_models["energy"], dipole_model_path=water_models["dielectric"])
    assert modes.source == "Hessian: MACE get_hessian; dipole derivatives: MACE get_dielectric_derivatives"

    dielectric = MACECalculator(
        model_paths=str(water_models["dielectric"]), model_type="DipolePolarizabilityMACE", default_dtype="float64"
    )
    delta = 1e-4
    derivatives = []
    for a in range(len(water)):
        for i in range(3):
            dipoles = []
            for sign in (1, -1):
                displaced = water.copy()
                displaced.positions[a, i] += sign * delta
                dipoles.append(dielectric.get_property("dipole", displaced))
            derivatives.append((dipoles[0] - dipoles[1]) / (2 * delta))
    energy = MACECalculator(model_paths=str(water_models["energy"]), default_dtype="float64")
    hessian = energy.get_hessian(water).reshape(9, 9)
    expected = normal_modes(water, hessian, np.array(derivatives))
    assert len(modes.wavenumbers_cm) > 0 and modes.intensities_km_mol.max() > 0
    np.testing.assert_allclose(modes.wavenumbers_cm, expected.wavenumbers_cm, rtol=1e-9)
    np.testing.assert_allclose(modes.intensities_km_mol, expected.intensities_km_mol, rtol=1e-5)


def test_an_energy_and_dipole_model_gets_its_modes_by_finite_differences(water_models):
    modes = mace_harmonic_modes(molecule("H2O"), water_models["energy_dipole"])
    assert modes.intensities_km_mol is not None and len(modes.intensities_km_mol) == len(modes.wavenumbers_cm)
    assert "ASE Infrared" in modes.source and "no analytic Hessian for EnergyDipolesMACE" in modes.source


def test_models_that_cannot_give_the_modes_are_refused_saying_what_to_pass(water_models):
    water = molecule("H2O")
    cases = [
        (
            lambda: mace_harmonic_modes(water, FOUNDATION),
            r"H2O holds \['H', 'O'\], which .*foundation.model has no embedding for \(it knows \['Al', 'Ni', 'Cu', "
            r"'Pd', 'Ag', 'Pt', 'Au'\]\): use a model trained on those elements",
        ),
        (
            lambda: mace_harmonic_modes(water, water_models["dipole"]),
            "is an AtomicDipolesMACE: it predicts dipoles, not energies, so it has no Hessian. Pass an energy model",
        ),
        (
            lambda: mace_harmonic_modes(water, water_models["energy"], dipole_model_path=water_models["dipole"]),
            "is an AtomicDipolesMACE; MACE 0.3.16 gives the dipole derivatives of an AtomicDielectricMACE only",
        ),
        (
            lambda: mace_harmonic_modes(
                water, water_models["energy_dipole"], dipole_model_path=water_models["dielectric"]
            ),
            "is an EnergyDipolesMACE, with a dipole head of its own: leave dipole_model_path out",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_sticks_broaden_into_lorentzians_of_the_given_width_normalised_to_one():
    grid = np.arange(0.0, 4000.0, 0.5)
    curve = broaden([Peak(1000.0, 0.5), Peak(3000.0, 1.0)], grid, width_cm=20.0)
    at = {w: int(np.argmin(abs(grid - w))) for w in (1000, 3000, 3010, 3500)}
    assert curve[at[3000]] == pytest.approx(1.0)
    assert curve[at[1000]] == pytest.approx(0.5, rel=1e-3)
    assert curve[at[3010]] == pytest.approx(0.5, rel=1e-3)  # half height at half the width
    assert curve[at[3500]] < 1e-3
    with pytest.raises(ValueError, match=r"width_cm .* must be positive; got 0"):
        broaden([], grid, width_cm=0)


def test_a_model_without_intensities_has_sticks_of_height_one():
    k = 50.0
    axis = np.outer([0, 0, 1], [0, 0, 1])
    modes = normal_modes(diatomic(), k * np.block([[axis, -axis], [-axis, axis]]))
    assert stick_spectrum(modes) == [Peak(float(modes.wavenumbers_cm[0]), 1.0)]


def test_peaks_are_matched_one_to_one_to_the_nearest_within_the_tolerance():
    reference = [1595.0, 3657.0, 3756.0, 500.0]
    model = [3700.0, 1580.0, 3745.0, 2000.0]
    matches = match_peaks(reference, model, tolerance_cm=60.0)
    assert [(m.reference_cm, m.other_cm, m.shift_cm) for m in matches] == [
        (1595.0, 1580.0, -15.0),
        (3657.0, 3700.0, 43.0),  # 3745 is nearer to 3756, which takes it
        (3756.0, 3745.0, -11.0),
        (500.0, None, None),
    ]
    assert match_peaks([], model, 10.0) == []
    assert [m.other_cm for m in match_peaks(reference, [], 10.0)] == [None] * 4
