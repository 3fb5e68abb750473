"""Quantum chemistry for the labellers: the options they share, the electron count a charge and
spin must fit, and the `pyscf` labeller (HF, DFT, MP2 on molecules; core/labelling.py registers it).

Units out are ASE's: eV, eV/Å, dipoles in e·Å, polarizabilities in e·Å²/V (a dipole in e·Å per
field in V/Å). PySCF works in Hartree and Bohr; it is converted with PySCF's own constants, so
that a force is the derivative of the energy in the positions as PySCF read them.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ase import Atoms

from traincraft_assets.core.device import Device, resolve_device
from traincraft_assets.core.frames import BATCH_INDEX_KEY, FrameError, set_label
from traincraft_assets.core.health import LABEL_ERROR_KEY

Dispersion = Literal["none", "d3bj", "d4"]
NO_DISPERSION = "none"
# Methods that are not a libxc functional: PySCF's own wave-function methods.
HF, MP2 = "HF", "MP2"
INSTALL = "pip install 'traincraft_assets[qm]'"


@dataclass
class QMOptions:
    """The quantum-chemistry labellers' options (`charge` and `spin` are shared by xtb and pyscf)."""

    charge: int = field(default=0, metadata={"help": "xtb/pyscf: the molecule's total charge (e)"})
    spin: int = field(
        default=0,
        metadata={"help": "xtb/pyscf: unpaired electrons, 2S (PySCF's convention; 0: closed shell, 1: doublet)"},
    )
    method: str = field(
        default="PBE",
        metadata={"help": "pyscf: HF, MP2, or a functional PySCF's libxc knows (PBE, B3LYP, r2SCAN, wB97X-V, ...)"},
    )
    basis: str = field(default="def2-SVP", metadata={"help": "pyscf: basis set name (sto-3g, 6-31g*, def2-SVP, ...)"})
    dispersion: Dispersion = field(
        default=NO_DISPERSION,
        metadata={"help": "pyscf: dispersion correction added to energy and forces (pyscf-dispersion)"},
    )
    scf_conv_tol: float = field(default=1e-9, metadata={"help": "pyscf: SCF energy convergence (Hartree)"})
    scf_max_cycle: int = field(
        default=100, metadata={"help": "pyscf/xtb: SCF iterations before a frame is left unlabelled, with the reason"}
    )
    polarizability: bool = field(
        default=False,
        metadata={"help": "pyscf: also label the polarizability (e·Å²/V) by finite field: 6 more SCFs a frame"},
    )
    polarizability_field: float = field(
        default=1e-3, metadata={"help": "pyscf: the finite field for the polarizability (atomic units, 51.4 V/Å)"}
    )
    device: Device = field(
        default="auto", metadata={"help": "pyscf: auto uses gpu4pyscf on a GPU when it is installed; cpu; cuda"}
    )


def frame_name(atoms: Atoms, index: int) -> str:
    """'frame i (formula)' for messages: the batch's index when stamped, else the chunk's."""
    return f"frame {atoms.info.get(BATCH_INDEX_KEY, index)} ({atoms.get_chemical_formula()})"


def electron_problem(atoms: Atoms, charge: int, spin: int) -> str | None:
    """Why `charge` and `spin` (2S) cannot describe this frame, or None. The valence electrons'
    parity is the total's (core shells are full), so this holds for xTB too."""
    electrons = int(atoms.numbers.sum()) - charge
    if electrons < 0 or spin > electrons or (electrons - spin) % 2:
        return (
            f"fields charge/spin: charge {charge} leaves {electrons} electrons, which spin {spin} (2S, "
            f"unpaired electrons) cannot fit: {'even' if electrons % 2 == 0 else 'odd'} counts need "
            f"{'an even' if electrons % 2 == 0 else 'an odd'} spin no larger than the count. Set charge "
            "and spin for these molecules (a radical: spin 1), or label them in a batch of their own"
        )
    return None


def level_suffix(options: QMOptions) -> str:
    """',charge=q,spin=s' for a level of theory, only off the neutral closed shell: a model
    without a charge embedding cannot tell the two apart, so they are kept apart by default."""
    return "" if options.charge == 0 and options.spin == 0 else f",charge={options.charge},spin={options.spin}"


def pyscf_method(options: QMOptions) -> str:
    """The method as the level of theory spells it: upper case (PBE, B3LYP, R2SCAN, HF, MP2)."""
    return options.method.strip().upper()


def pyscf_problems(options: QMOptions) -> list[str]:
    """What stops the pyscf labeller before any frame: not installed, an unknown method, basis,
    device, or settings that do not go together."""
    if importlib.util.find_spec("pyscf") is None:
        return [f"labeller 'pyscf' needs PySCF, not installed here: {INSTALL}."]
    from pyscf import dft, gto
    from pyscf.lib.exceptions import BasisNotFoundError

    problems, method = [], pyscf_method(options)
    if method not in (HF, MP2):
        try:
            dft.libxc.parse_xc(method)
        except KeyError:
            problems.append(
                f"field method: {options.method!r} is not HF, MP2 or a functional PySCF's libxc knows; "
                "expected e.g. PBE, B3LYP, r2SCAN, wB97X-V."
            )
    with warnings.catch_warnings():  # PySCF's hint to install basis-set-exchange; the message says what to do
        warnings.simplefilter("ignore")
        try:
            gto.basis.load(options.basis, "H")
        except BasisNotFoundError as exc:
            if "Unknown basis" in str(exc):  # not "no H in this basis": the name itself is unknown
                problems.append(
                    f"field basis: PySCF knows no basis named {options.basis!r}; expected e.g. sto-3g, "
                    "6-31g*, def2-SVP, cc-pVDZ."
                )
    if options.dispersion != NO_DISPERSION and method == MP2:
        problems.append("field dispersion: MP2 describes dispersion itself; set dispersion to none for MP2.")
    if options.dispersion != NO_DISPERSION and importlib.util.find_spec("pyscf.dispersion") is None:
        problems.append(f"field dispersion: {options.dispersion!r} needs pyscf-dispersion, not installed: {INSTALL}.")
    if options.polarizability and method == MP2:
        problems.append("field polarizability: finite-field polarizabilities are for HF and DFT, not MP2.")
    if options.device == "cuda" and importlib.util.find_spec("gpu4pyscf") is None:
        problems.append("field device: cuda needs gpu4pyscf, not installed here (GPU images only); or use auto.")
    if options.scf_max_cycle < 1 or options.scf_conv_tol <= 0 or options.polarizability_field <= 0:
        problems.append(
            f"scf_max_cycle {options.scf_max_cycle}, scf_conv_tol {options.scf_conv_tol:g}, polarizability_field "
            f"{options.polarizability_field:g}: expected at least 1 cycle, a positive tolerance and field."
        )
    return problems + spin_problems(options)


def spin_problems(options: QMOptions) -> list[str]:
    return [] if options.spin >= 0 else [f"field spin: {options.spin}; expected 2S >= 0 (unpaired electrons)."]


def _on_gpu(options: QMOptions) -> bool:
    """gpu4pyscf for HF/DFT when asked (cuda), or on a GPU machine that has it (auto); MP2 stays
    on the CPU (gpu4pyscf has no MP2 gradients)."""
    if pyscf_method(options) == MP2 or options.device == "cpu":
        return False
    if options.device == "cuda":
        return True
    return importlib.util.find_spec("gpu4pyscf") is not None and resolve_device("auto") == "cuda"


def _numpy(value) -> np.ndarray:
    return np.asarray(value.get() if hasattr(value, "get") else value, dtype=float)  # cupy arrays: .get()


def _molecule(atoms: Atoms, options: QMOptions, name: str):
    from pyscf import gto
    from pyscf.lib.exceptions import BasisNotFoundError

    try:
        with warnings.catch_warnings():  # PySCF's hint to install basis-set-exchange; the error says what to do
            warnings.simplefilter("ignore")
            return gto.M(
                atom=list(zip(atoms.get_chemical_symbols(), atoms.positions.tolist())),
                unit="Angstrom",
                basis=options.basis,
                charge=options.charge,
                spin=options.spin,
                verbose=0,
            )
    except BasisNotFoundError as exc:
        raise FrameError(f"{name}, field basis: {exc}. Pick a basis that covers every element of the batch.") from exc


def _mean_field(mol, options: QMOptions, gpu: bool):
    """A fresh SCF object for `mol`: RHF/RKS for a closed shell, UHF/UKS otherwise."""
    from pyscf import dft, scf

    method = pyscf_method(options)
    closed = options.spin == 0
    if method in (HF, MP2):
        mf = scf.RHF(mol) if closed else scf.UHF(mol)
    else:
        mf = dft.RKS(mol) if closed else dft.UKS(mol)
        mf.xc = method
    if options.dispersion != NO_DISPERSION:
        mf.disp = options.dispersion
    mf.conv_tol, mf.max_cycle = options.scf_conv_tol, options.scf_max_cycle
    return mf.to_gpu() if gpu else mf


def _not_converged(options: QMOptions, what: str) -> str:
    return (
        f"{what} did not converge in scf_max_cycle {options.scf_max_cycle} cycles to scf_conv_tol "
        f"{options.scf_conv_tol:g} Hartree; raise scf_max_cycle, check charge/spin, or drop the frame"
    )


def _polarizability(mf, options: QMOptions, gpu: bool):
    """d(dipole)/d(field) by central differences of SCFs in ±field along x, y, z (atomic units),
    each started from the field-free density; a string saying why when one does not converge."""
    from pyscf.data import nist

    mol, strength = mf.mol, options.polarizability_field
    hcore, guess = mf.get_hcore(), mf.make_rdm1()
    with mol.with_common_orig((0, 0, 0)):  # the dipole's origin, as dip_moment uses
        positions = mol.intor_symmetric("int1e_r")
    if gpu:
        import cupy

        positions = cupy.asarray(positions)
    columns = []
    for axis in range(3):
        dipoles = []
        for sign in (1, -1):
            perturbed = _mean_field(mol, options, gpu)
            # an electron (charge -1) in field F has energy +F·r
            perturbed.get_hcore = lambda *_, h=hcore + sign * strength * positions[axis]: h
            perturbed.kernel(dm0=guess)
            if not perturbed.converged:
                return _not_converged(options, f"the polarizability's SCF in a field along {'xyz'[axis]}")
            dipoles.append(_numpy(perturbed.dip_moment(unit="AU", verbose=0)))
        columns.append((dipoles[0] - dipoles[1]) / (2 * strength))
    alpha_au = np.array(columns).T  # [i, j]: d(dipole_i)/d(field_j)
    # e·Bohr per (Hartree/e/Bohr) -> e·Å per V/Å
    return alpha_au * nist.BOHR**2 / nist.HARTREE2EV


def label_pyscf(frames: list[Atoms], options: QMOptions) -> list[Atoms]:
    """Copies of `frames` labelled with PySCF: energy, forces, dipole (not for MP2: its relaxed
    density is not computed) and, when asked, the polarizability. Periodic frames and a charge
    or spin that does not fit are refused before any SCF. A frame whose SCF does not converge is
    returned unlabelled with the reason under `label_error`, and the rest are labelled."""
    from pyscf import mp
    from pyscf.data import nist

    for index, atoms in enumerate(frames):
        name = frame_name(atoms, index)
        if atoms.pbc.any():
            raise FrameError(
                f"{name}: pyscf labels molecules; this frame is periodic (pbc {atoms.pbc.tolist()}). Label "
                "periodic frames with xtb or a periodic DFT code through `command`; for a molecule in a box, "
                "set pbc to false in the file."
            )
        if problem := electron_problem(atoms, options.charge, options.spin):
            raise FrameError(f"{name}, {problem}.")
    gpu, method = _on_gpu(options), pyscf_method(options)
    out, guess = [], None  # guess: (species, density) of the last frame, the next SCF's start when alike
    for index, atoms in enumerate(frames):
        mf = _mean_field(_molecule(atoms, options, frame_name(atoms, index)), options, gpu)
        alike = guess is not None and guess[0] == atoms.get_chemical_symbols()
        energy = mf.kernel(dm0=guess[1] if alike else None)
        labelled = atoms.copy()
        out.append(labelled)
        if not mf.converged:
            labelled.info[LABEL_ERROR_KEY] = _not_converged(options, "the SCF")
            continue
        guess = (atoms.get_chemical_symbols(), mf.make_rdm1())
        if method == MP2:
            gradients = mp.MP2(mf).nuc_grad_method()
            gradient = gradients.kernel()
            energy = gradients.base.e_tot
        else:
            gradient = mf.nuc_grad_method().kernel()
            dipole = _numpy(mf.dip_moment(unit="AU", verbose=0)) * nist.BOHR
        if options.polarizability:
            alpha = _polarizability(mf, options, gpu)
            if isinstance(alpha, str):
                labelled.info[LABEL_ERROR_KEY] = alpha
                continue
            set_label(labelled, "polarizability", alpha)
        set_label(labelled, "energy", float(energy) * nist.HARTREE2EV)
        set_label(labelled, "forces", -_numpy(gradient) * nist.HARTREE2EV / nist.BOHR)
        if method != MP2:
            set_label(labelled, "dipole", dipole)
    return out
