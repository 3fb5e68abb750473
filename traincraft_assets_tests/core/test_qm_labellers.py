"""The quantum-chemistry labellers for real: xtb (tblite) and pyscf on small molecules, against
direct calls of the same packages; the level of theory each frame records; and the input they
refuse, each naming the frame and the field."""

import importlib.metadata

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from traincraft_assets.core.frames import (
    CHARGES_KEY,
    LEVEL_KEY,
    FrameError,
    get_label,
    read_frames,
    write_frames,
)
from traincraft_assets.core.health import LABEL_ERROR_KEY, unlabelled_frames
from traincraft_assets.core.labelling import (
    LABELLERS,
    LabelOptions,
    label_batch,
    labeller_problems,
    level_of_theory,
)
from traincraft_assets.core.qm import QMOptions
from traincraft_assets_tests.core.helpers import python_command

TBLITE = importlib.metadata.version("tblite")
PYSCF = importlib.metadata.version("pyscf")
ASE = importlib.metadata.version("ase")


def _water_trimers(n: int) -> list[Atoms]:
    """`n` distinct, slightly rattled water trimers (9 atoms: about 0.1 s of GFN2-xTB each)."""
    rng = np.random.default_rng(7)
    frames = []
    for _ in range(n):
        trimer = Atoms()
        for shift in ((0, 0, 0), (2.9, 0, 0), (1.45, 2.5, 0)):
            water = molecule("H2O")
            water.positions += shift
            trimer += water
        trimer.positions += rng.normal(0, 0.05, trimer.positions.shape)
        frames.append(trimer)
    return frames


def _rattled(name: str, n: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = molecule(name)
        atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
        frames.append(atoms)
    return frames


def _batch(tmp_path, frames, labeller, options, name="batch.xyz"):
    """label_batch on `frames` written to a file; (summary, the labelled frames read back)."""
    path, out = tmp_path / name, tmp_path / f"labelled-{name}"
    write_frames(path, frames)
    summary = label_batch(path, path.stem, labeller, options, out)
    return summary, read_frames(out)


def _pyscf_mean_field(atoms: Atoms, xc: str, basis: str, charge: int = 0, spin: int = 0):
    """A converged PySCF SCF on `atoms`, written out here as a user would, not through core.qm."""
    from pyscf import dft, gto, scf

    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
        basis=basis,
        charge=charge,
        spin=spin,
        verbose=0,
    )
    if xc == "HF":
        mf = scf.RHF(mol)
    else:
        mf = dft.RKS(mol)
        mf.xc = xc
    mf.conv_tol = 1e-10
    mf.kernel()
    assert mf.converged
    return mf


HARTREE_EV, BOHR_A = 27.21138602, 0.52917721092  # PySCF's constants (pyscf.data.nist)


# --- xtb ---------------------------------------------------------------------------------------


def test_xtb_labels_water_for_real_as_tblite_itself_does(tmp_path):
    """GFN2-xTB through tblite, in this process and in two worker processes: energy, forces,
    dipole and partial charges are tblite's own numbers for each frame, in the batch's order,
    through the labelled file; no stress on molecules; every frame records the level."""
    from tblite.ase import TBLite

    frames = _water_trimers(3)
    for workers in (1, 2):
        summary, labelled = _batch(tmp_path, frames, "xtb", LabelOptions(workers=workers))
        level = f"xtb:GFN2-xTB (tblite {TBLITE})"
        assert summary["n_frames"] == 3 and summary["labels"] == ["energy", "forces", "dipole"]
        assert summary["levels_of_theory"] == {level: 3}
        for index, (given, atoms) in enumerate(zip(frames, labelled)):
            direct = given.copy()
            direct.calc = TBLite(method="GFN2-xTB", verbosity=0)
            assert atoms.info["batch_index"] == index and atoms.info[LEVEL_KEY] == level
            assert get_label(atoms, "energy") == pytest.approx(direct.get_potential_energy(), abs=1e-6)
            np.testing.assert_allclose(get_label(atoms, "forces"), direct.get_forces(), atol=1e-5)
            np.testing.assert_allclose(get_label(atoms, "dipole"), direct.get_dipole_moment(), atol=1e-6)
            np.testing.assert_allclose(atoms.arrays[CHARGES_KEY], direct.get_charges(), atol=1e-6)
            assert get_label(atoms, "stress") is None


def test_xtb_charge_and_spin_are_tblites_charge_and_multiplicity():
    """An OH radical (9 electrons, spin 1: a doublet, multiplicity 2) and the hydroxide anion
    (charge -1, closed shell), as tblite computes them when told directly."""
    from tblite.ase import TBLite

    hydroxyl = Atoms("OH", positions=[(0, 0, 0), (0, 0, 0.97)])
    for charge, spin in ((0, 1), (-1, 0)):
        options = LabelOptions(qm=QMOptions(charge=charge, spin=spin))
        (atoms,) = LABELLERS["xtb"]([hydroxyl], options)
        direct = hydroxyl.copy()
        direct.calc = TBLite(method="GFN2-xTB", charge=charge, multiplicity=spin + 1, verbosity=0)
        assert get_label(atoms, "energy") == pytest.approx(direct.get_potential_energy(), abs=1e-6)
        assert atoms.arrays[CHARGES_KEY].sum() == pytest.approx(charge, abs=1e-6)
        assert level_of_theory("xtb", options) == f"xtb:GFN2-xTB,charge={charge},spin={spin} (tblite {TBLITE})"


def test_xtb_refuses_a_spin_that_does_not_fit_the_electrons(tmp_path):
    """tblite computes an odd-electron molecule as a closed shell without a word; we refuse it."""
    frames = [molecule("H2O"), Atoms("OH", positions=[(0, 0, 0), (0, 0, 0.97)])]
    with pytest.raises(FrameError) as info:
        _batch(tmp_path, frames, "xtb", LabelOptions())
    message = str(info.value)
    assert "batch.xyz, frame 1 (HO)" in message and "charge/spin" in message and "9 electrons" in message


# --- pyscf: labels against PySCF itself ---------------------------------------------------------


def test_pyscf_labels_equal_a_direct_pyscf_run(tmp_path):
    """PBE/sto-3g on three rattled waters (each SCF after the first starts from the previous
    density) and an ammonia: energy, forces and dipole are PySCF's own, converted to eV, eV/Å,
    e·Å; no charges or stress; the level on every frame."""
    frames = [*_rattled("H2O", 3), molecule("NH3")]
    options = LabelOptions(qm=QMOptions(method="pbe", basis="sto-3g"))
    summary, labelled = _batch(tmp_path, frames, "pyscf", options)
    level = f"pyscf:PBE/sto-3g (pyscf {PYSCF})"
    assert summary["labels"] == ["energy", "forces", "dipole"] and summary["levels_of_theory"] == {level: 4}
    for given, atoms in zip(frames, labelled):
        mf = _pyscf_mean_field(given, "PBE", "sto-3g")
        assert atoms.info[LEVEL_KEY] == level
        assert get_label(atoms, "energy") == pytest.approx(mf.e_tot * HARTREE_EV, abs=1e-5)
        forces = -mf.nuc_grad_method().kernel() * HARTREE_EV / BOHR_A
        np.testing.assert_allclose(get_label(atoms, "forces"), forces, atol=2e-4)
        dipole = mf.dip_moment(unit="AU", verbose=0) * BOHR_A
        np.testing.assert_allclose(get_label(atoms, "dipole"), dipole, atol=1e-5)
        assert CHARGES_KEY not in atoms.arrays and get_label(atoms, "stress") is None


def test_pyscf_forces_are_minus_the_energys_gradient():
    """HF/sto-3g water: each force component against a central difference of the labelled
    energies (±0.002 Å), in eV/Å: a wrong unit or sign would be off by far more than 1e-3."""
    (water,) = _rattled("H2O", 1, seed=3)
    options = LabelOptions(qm=QMOptions(method="HF", basis="sto-3g", scf_conv_tol=1e-11))
    label = LABELLERS["pyscf"]
    forces = get_label(label([water], options)[0], "forces")
    step = 0.002
    displaced = []
    for atom in range(len(water)):
        for axis in range(3):
            for sign in (1, -1):
                moved = water.copy()
                moved.positions[atom, axis] += sign * step
                displaced.append(moved)
    energies = np.array([get_label(a, "energy") for a in label(displaced, options)]).reshape(len(water), 3, 2)
    numeric = -(energies[..., 0] - energies[..., 1]) / (2 * step)
    np.testing.assert_allclose(forces, numeric, atol=1e-3)
    assert np.abs(forces).max() > 0.1  # rattled: real forces to compare


def test_mp2_labels_energy_and_forces_as_pyscf_does():
    """MP2/sto-3g: PySCF's MP2 energy and analytic gradient; no dipole (its relaxed density is
    not computed, and the HF dipole would be another level)."""
    from pyscf import mp

    (water,) = _rattled("H2O", 1, seed=5)
    options = LabelOptions(qm=QMOptions(method="mp2", basis="sto-3g"))
    (atoms,) = LABELLERS["pyscf"]([water], options)
    gradients = mp.MP2(_pyscf_mean_field(water, "HF", "sto-3g")).nuc_grad_method()
    gradient = gradients.kernel()
    assert get_label(atoms, "energy") == pytest.approx(gradients.base.e_tot * HARTREE_EV, abs=1e-5)
    np.testing.assert_allclose(get_label(atoms, "forces"), -gradient * HARTREE_EV / BOHR_A, atol=2e-4)
    assert get_label(atoms, "dipole") is None
    assert level_of_theory("pyscf", options) == f"pyscf:MP2/sto-3g (pyscf {PYSCF})"


def test_polarizability_by_finite_field_is_the_energys_second_derivative():
    """HF/sto-3g water: the labelled polarizability (dipole differences, e·Å²/V) is symmetric,
    positive on the diagonal, and its diagonal matches -d²E/dF² from energies in a field applied
    here by hand (a separate route to the same number, in atomic units then converted)."""
    from pyscf import scf

    water = molecule("H2O")
    options = LabelOptions(qm=QMOptions(method="HF", basis="sto-3g", polarizability=True, scf_conv_tol=1e-11))
    (atoms,) = LABELLERS["pyscf"]([water], options)
    alpha = get_label(atoms, "polarizability").reshape(3, 3)
    np.testing.assert_allclose(alpha, alpha.T, atol=1e-5)
    assert (np.diag(alpha) > 0).all()

    mf = _pyscf_mean_field(water, "HF", "sto-3g")
    mol, field = mf.mol, 2e-3
    with mol.with_common_orig((0, 0, 0)):
        r = mol.intor_symmetric("int1e_r")
    hcore = mf.get_hcore()

    def energy(vector) -> float:
        perturbed = scf.RHF(mol)
        perturbed.conv_tol = 1e-11
        perturbed.get_hcore = lambda *_: hcore + np.einsum("x,xij->ij", vector, r)
        perturbed.kernel(dm0=mf.make_rdm1())
        return perturbed.e_tot  # includes the nuclei's dipole only through a constant: cancels below

    e0 = energy(np.zeros(3))
    for axis in range(3):
        unit = np.eye(3)[axis] * field
        second = (energy(unit) + energy(-unit) - 2 * e0) / field**2
        by_energy = -second * BOHR_A**2 / HARTREE_EV  # a.u. -> e·Å²/V
        assert alpha[axis, axis] == pytest.approx(by_energy, rel=2e-3, abs=1e-5)


def test_dispersion_adds_the_dispersion_packages_energy_and_forces():
    """PBE+D3(BJ) minus PBE on one water dimer is what pyscf-dispersion's D3 gives on its own."""
    from pyscf.dispersion import dftd3

    dimer = Atoms()
    for shift in ((0, 0, 0), (2.9, 0.3, 0.2)):
        water = molecule("H2O")
        water.positions += shift
        dimer += water
    plain, with_d3 = (
        LABELLERS["pyscf"]([dimer], LabelOptions(qm=QMOptions(method="PBE", basis="sto-3g", dispersion=d)))[0]
        for d in ("none", "d3bj")
    )
    mol = _pyscf_mean_field(dimer, "PBE", "sto-3g").mol
    d3 = dftd3.DFTD3Dispersion(mol, xc="PBE", version="d3bj").get_dispersion(grad=True)
    added = get_label(with_d3, "energy") - get_label(plain, "energy")
    assert added == pytest.approx(float(d3["energy"]) * HARTREE_EV, abs=1e-5)
    assert added < 0  # dispersion binds
    np.testing.assert_allclose(
        get_label(with_d3, "forces") - get_label(plain, "forces"), -d3["gradient"] * HARTREE_EV / BOHR_A, atol=2e-4
    )
    options = LabelOptions(qm=QMOptions(method="PBE", basis="def2-SVP", dispersion="d3bj"))
    assert level_of_theory("pyscf", options) == f"pyscf:PBE/def2-svp+D3BJ (pyscf {PYSCF})"


# --- pyscf: what it refuses, and a frame it cannot label ----------------------------------------


def test_an_scf_that_does_not_converge_leaves_that_frame_unlabelled_with_the_reason(tmp_path):
    """Two SCF cycles converge H2 at HF/sto-3g (its orbital is fixed by symmetry) but not water:
    the water frame is returned unlabelled with the reason, the H2 frames around it are
    labelled, and the health check names the frame and the reason."""
    h2 = molecule("H2")
    frames = [h2, molecule("H2O"), h2.copy()]
    for workers in (1, 2):  # a worker process returns the reason too
        options = LabelOptions(qm=QMOptions(method="HF", basis="sto-3g", scf_max_cycle=2), workers=workers)
        summary, labelled = _batch(tmp_path, frames, "pyscf", options, name="scf.xyz")
        assert summary["n_frames"] == 3 and summary["labels"] == ["energy", "forces", "dipole"]
        assert get_label(labelled[0], "energy") is not None and get_label(labelled[2], "energy") is not None
        assert get_label(labelled[1], "energy") is None and get_label(labelled[1], "forces") is None
        assert "did not converge in scf_max_cycle 2" in labelled[1].info[LABEL_ERROR_KEY]
        [problem] = unlabelled_frames(labelled)
        assert (problem.batch, problem.frame) == ("scf", 1)
        assert "not labelled (the SCF did not converge" in problem.message


def test_an_xtb_scf_that_does_not_converge_leaves_that_frame_unlabelled_with_the_reason(tmp_path):
    """Three tblite iterations converge H2 but not water: as with PySCF, the water frame is
    returned unlabelled with tblite's reason and the H2 frames around it are labelled."""
    h2 = molecule("H2")
    frames = [h2, molecule("H2O"), h2.copy()]
    options = LabelOptions(qm=QMOptions(scf_max_cycle=3))
    summary, labelled = _batch(tmp_path, frames, "xtb", options, name="xtb_scf.xyz")
    assert summary["n_frames"] == 3
    assert get_label(labelled[0], "energy") is not None and get_label(labelled[2], "energy") is not None
    assert get_label(labelled[1], "energy") is None and get_label(labelled[1], "forces") is None
    assert (
        "did not converge in scf_max_cycle 3 cycles (SCF not converged in 3 cycles)"
        in labelled[1].info[LABEL_ERROR_KEY]
    )
    [problem] = unlabelled_frames(labelled)
    assert (problem.batch, problem.frame) == ("xtb_scf", 1)


def test_pyscf_settings_it_cannot_use_are_found_before_any_frame():
    """Each problem names the field: an unknown functional and basis, dispersion with MP2, a
    negative spin; good settings have none."""
    assert labeller_problems("pyscf", LabelOptions(qm=QMOptions(method="B3LYP", basis="6-31g*")), []) == []
    bad = LabelOptions(qm=QMOptions(method="PBEX", basis="def2-nonsense"))
    method, basis = labeller_problems("pyscf", bad, [])
    assert "field method: 'PBEX'" in method and "libxc" in method
    assert "field basis" in basis and "'def2-nonsense'" in basis
    [mp2] = labeller_problems("pyscf", LabelOptions(qm=QMOptions(method="MP2", dispersion="d4")), [])
    assert "field dispersion" in mp2
    [spin] = labeller_problems("xtb", LabelOptions(qm=QMOptions(spin=-1)), [])
    assert "field spin" in spin


def test_pyscf_refuses_a_spin_that_does_not_fit_before_any_scf(tmp_path, monkeypatch):
    """An odd-electron molecule in a closed-shell batch: refused naming the file, the frame and
    charge/spin, before any SCF runs (none is started)."""
    from pyscf import dft

    started = []
    monkeypatch.setattr(dft.rks.RKS, "kernel", lambda *args, **kw: started.append(1))
    frames = [molecule("H2O"), molecule("H2O"), Atoms("OH", positions=[(0, 0, 0), (0, 0, 0.97)])]
    with pytest.raises(FrameError) as info:
        _batch(tmp_path, frames, "pyscf", LabelOptions(qm=QMOptions(basis="sto-3g")), name="radicals.xyz")
    message = str(info.value)
    assert "radicals.xyz, frame 2 (HO), fields charge/spin" in message and "spin 0" in message
    assert started == []


def test_pyscf_refuses_a_periodic_frame_naming_it(tmp_path):
    water = molecule("H2O", vacuum=4.0)
    boxed = water.copy()
    boxed.pbc = True
    with pytest.raises(FrameError) as info:
        _batch(tmp_path, [water, boxed], "pyscf", LabelOptions(qm=QMOptions(basis="sto-3g")), name="box.xyz")
    message = str(info.value)
    assert "box.xyz, frame 1 (H2O): pyscf labels molecules; this frame is periodic" in message


def test_a_basis_without_an_element_names_the_frame_and_the_basis():
    gold_hydride = Atoms("AuH", positions=[(0, 0, 0), (0, 0, 1.5)])
    with pytest.raises(FrameError) as info:
        LABELLERS["pyscf"]([gold_hydride], LabelOptions(qm=QMOptions(basis="6-31g")))
    assert "frame 0 (HAu), field basis: Basis set not found for Au in 6-31g" in str(info.value)


# --- levels of theory ---------------------------------------------------------------------------


def test_levels_of_theory_are_canonical_and_stable():
    def level(labeller, **qm):
        return level_of_theory(labeller, LabelOptions(qm=QMOptions(**qm)))

    assert level("pyscf", method="b3lyp", basis="DEF2-svp", dispersion="d4") == level(
        "pyscf", method=" B3LYP", basis="def2-SVP", dispersion="d4"
    )
    assert (
        level("pyscf", method="b3lyp", basis="def2-svp", dispersion="d4") == f"pyscf:B3LYP/def2-svp+D4 (pyscf {PYSCF})"
    )
    assert level("pyscf", method="HF", basis="sto-3g", charge=1, spin=1) == (
        f"pyscf:HF/sto-3g,charge=1,spin=1 (pyscf {PYSCF})"
    )
    assert level("xtb") == f"xtb:GFN2-xTB (tblite {TBLITE})"
    assert level("emt") == f"emt:EMT (ase {ASE})"
    assert level("emt_morse") == f"emt_morse:EMT+Morse(epsilon=0.05,r0=2.6,rho0=4,rcut1=4,rcut2=5) (ase {ASE})"
    assert level("prelabelled") == "unknown"
    assert level_of_theory("command", LabelOptions(level_of_theory="PBE/PAW (VASP 6.4)")) == "PBE/PAW (VASP 6.4)"


def test_prelabelled_and_command_record_the_level_the_user_names(tmp_path):
    """prelabelled: the option wins when set; unset, a frame keeps the level its file carries,
    and one without is "unknown". command: the option, on every frame the program returns."""
    carried, bare = molecule("H2O"), molecule("NH3")
    for atoms, energy in ((carried, -1.0), (bare, -2.0)):
        atoms.info["energy"] = energy
        atoms.arrays["forces"] = np.zeros((len(atoms), 3))
    carried.info[LEVEL_KEY] = "CCSD(T)/cc-pVTZ (ORCA 6)"
    summary, kept = _batch(tmp_path, [carried, bare], "prelabelled", LabelOptions())
    assert [a.info[LEVEL_KEY] for a in kept] == ["CCSD(T)/cc-pVTZ (ORCA 6)", "unknown"]
    assert summary["levels_of_theory"] == {"CCSD(T)/cc-pVTZ (ORCA 6)": 1, "unknown": 1}
    named = LabelOptions(level_of_theory="PBE/PAW (VASP 6.4)")
    _, overridden = _batch(tmp_path, [carried, bare], "prelabelled", named)
    assert [a.info[LEVEL_KEY] for a in overridden] == ["PBE/PAW (VASP 6.4)"] * 2

    script = tmp_path / "label.py"
    script.write_text(
        "import os, ase.io\n"
        "frames = ase.io.read(os.environ['TRAINCRAFT_INPUT'], ':')\n"
        "for a in frames:\n"
        "    a.info['REF_energy'] = -1.0\n"
        "    a.arrays['REF_forces'] = a.positions * 0\n"
        "ase.io.write(os.environ['TRAINCRAFT_OUTPUT'], frames, format='extxyz')\n"
    )
    options = LabelOptions(command=python_command(script), level_of_theory="r2SCAN/PAW (VASP 6.4)")
    _, labelled = _batch(tmp_path, [molecule("H2O")] * 2, "command", options, name="cmd.xyz")
    assert [a.info[LEVEL_KEY] for a in labelled] == ["r2SCAN/PAW (VASP 6.4)"] * 2
