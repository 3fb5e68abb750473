"""Labellers: turn a batch file into frames carrying REF_* labels.

A labeller is a function `(frames, options) -> frames` registered under a name, with a function
giving its level of theory from the options: one canonical string stamped on every frame it
labels (`level_of_theory`). `prelabelled` keeps the labels the file already carries; `emt`,
`emt_morse`, `xtb` and `pyscf` (core/qm.py) compute them in-process; `command` hands the frames
to an external program (a DFT code wrapper) through files.

A batch is labelled in one call (`label_batch`), or as several chunk steps: `plan_chunks`
splits it into contiguous frame ranges, `label_chunk` labels one range into a scratch folder
(any process, any pod, any number of times), and `merge_chunks` writes the ranges, in order,
into exactly the file `label_batch` would have written.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import math
import multiprocessing
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from traincraft_assets.core.frames import (
    BATCH_INDEX_KEY,
    BATCH_KEY,
    CHARGES_KEY,
    CHUNK_FRAMES,
    CONFIG_TYPE_KEY,
    LABEL_ALIASES,
    LEVEL_KEY,
    REF_KEYS,
    UNKNOWN_LEVEL,
    FrameError,
    FrameTally,
    chunks,
    count_frames,
    frame_writer,
    iter_frames,
    read_frames,
    set_label,
    write_frames,
)
from traincraft_assets.core.health import LABEL_ERROR_KEY, BatchError, Problem, batch_problems, refuse_batch
from traincraft_assets.core.paths import path_problem
from traincraft_assets.core.qm import (
    INSTALL,
    NO_DISPERSION,
    QMOptions,
    electron_problem,
    frame_name,
    label_pyscf,
    level_suffix,
    pyscf_method,
    pyscf_problems,
    spin_problems,
)


@dataclass
class LabelOptions:
    """Options shared by labellers; each labeller reads the ones it needs."""

    command: str | None = field(
        default=None, metadata={"help": "labeller 'command': program reading input.xyz, writing output.xyz"}
    )
    timeout_s: float | None = field(
        default=None, metadata={"help": "labeller 'command': limit per run of the program, up to 500 frames (s)"}
    )
    level_of_theory: str = field(
        default=UNKNOWN_LEVEL,
        metadata={
            "help": "prelabelled/command: the level of theory the labels are at, e.g. 'PBE/PAW (VASP 6.4)'; "
            "recorded on every frame (unknown: a frame keeps the level its file gives)"
        },
    )
    xtb_method: str = field(default="GFN2-xTB", metadata={"help": "labeller 'xtb': GFN2-xTB, GFN1-xTB or IPEA1-xTB"})
    qm: QMOptions = field(default_factory=QMOptions)  # xtb/pyscf: flattened into the step's config
    compute_stress: bool = field(default=True, metadata={"help": "emt/xtb: label stress on fully periodic frames"})
    check_plausibility: bool = field(
        default=True,
        metadata={
            "help": "refuse forces above 100 eV/Å and stresses above 5 eV/Å³ (a likely unit mix-up); false if real"
        },
    )
    max_file_gib: float = field(
        default=10.0,
        metadata={
            "help": "refuse batch files larger than this (GiB): a batch is labelled, versioned and retired whole"
        },
    )
    workers: int = field(
        default=1,
        metadata={
            "help": "processes labelling chunks of 500 frames side by side (emt/xtb/pyscf/command; prelabelled "
            "only reads, so it stays at 1); each starts a fresh Python (seconds), worth it for slow labellers"
        },
    )
    chunk_steps: int = field(
        default=1,
        metadata={
            "help": "Dagster steps the batch is labelled in, each a contiguous share of its frames (on Kubernetes "
            "a pod each, retried alone; merged into the same file); 1: one step, with `workers` processes"
        },
    )
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the `command` labeller


Labeller = Callable[[list[Atoms], LabelOptions], list[Atoms]]
Level = Callable[[LabelOptions], str]
LABELLERS: dict[str, Labeller] = {}
LEVELS: dict[str, Level] = {}
DEFAULT_LABELLER = "prelabelled"


def declared_level(options: LabelOptions) -> str:
    """The level the user names (`level_of_theory`): labels made elsewhere say nothing of theirs."""
    return options.level_of_theory


def register_labeller(name: str, level: Level = declared_level) -> Callable[[Labeller], Labeller]:
    """Register a labeller under `name`; `level` gives its level of theory from the options
    (default: the `level_of_theory` option, for labels computed outside this project)."""

    def add(fn: Labeller) -> Labeller:
        LABELLERS[name], LEVELS[name] = fn, level
        return fn

    return add


def package_version(package: str) -> str:
    """The installed version of `package`, for a level of theory."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(f"{package} is not installed here, so nothing can be labelled with it: {INSTALL}.") from exc


def level_of_theory(labeller: str, options: LabelOptions) -> str:
    """The canonical level of theory of `labeller` with these options, stamped on every frame
    under LEVEL_KEY: `labeller:METHOD[/basis][+DISPERSION][,charge=q,spin=s] (package version)`.
    The same options give the same string: PySCF's methods and dispersions upper case (PBE,
    B3LYP, D3BJ; xTB's as tblite names them, GFN2-xTB), basis names lower case (PySCF's names are case-blind), charge and spin only off the neutral
    closed shell. `prelabelled`, `command` and labellers registered without a level give the
    `level_of_theory` option as it is written."""
    return LEVELS[labeller](options)


def _find(atoms: Atoms, name: str):
    per_atom = name == "forces"
    store = atoms.arrays if per_atom else atoms.info
    for key in LABEL_ALIASES[name]:
        if key in store:
            return store[key]
    results = getattr(atoms.calc, "results", None) or {}
    if name == "energy":
        return results.get("energy", results.get("free_energy"))
    return results.get(name)


# The shape each label must have, for messages (n: the frame's atom count).
LABEL_SHAPES = {
    "energy": "one number",
    "forces": "n x 3",
    "stress": "6 (Voigt) or 9 (3 x 3)",
    "dipole": "3",
    "polarizability": "9 (3 x 3)",
}
EXPECTED_SIZES = {
    "energy": lambda n: (1,),
    "forces": lambda n: (3 * n,),
    "stress": lambda n: (6, 9),
    "dipole": lambda n: (3,),
    "polarizability": lambda n: (9,),
}


def _to_ref_keys(frames: Sequence[Atoms]) -> list[Atoms]:
    """Copy each frame with its labels moved to REF_* keys, dropping the originals. A label of
    the wrong size is a FrameError naming the frame, the key and both shapes."""
    out = []
    for index, atoms in enumerate(frames):
        labelled = atoms.copy()
        for name in REF_KEYS:
            value = _find(atoms, name)
            for key in LABEL_ALIASES[name]:
                labelled.info.pop(key, None)
                if key in labelled.arrays and key not in ("numbers", "positions"):
                    del labelled.arrays[key]
            if value is not None:
                value = np.asarray(value, dtype=float)
                if value.size not in EXPECTED_SIZES[name](len(atoms)):
                    key = next((k for k in LABEL_ALIASES[name] if k in atoms.info or k in atoms.arrays), name)
                    frame = atoms.info.get(BATCH_INDEX_KEY, index)  # the batch's index, not the chunk's
                    raise FrameError(
                        f"frame {frame}, field {key}: shape {value.shape}, expected {LABEL_SHAPES[name]} "
                        f"for this {len(atoms)}-atom frame. Check the file's Properties line (forces are "
                        f"R:3 per atom)."
                    )
                if name == "stress" and value.shape == (6,):
                    value = voigt_6_to_full_3x3_stress(value)
                set_label(labelled, name, value)
        out.append(labelled)
    return out


@register_labeller("prelabelled")
def prelabelled(frames: list[Atoms], options: LabelOptions) -> list[Atoms]:
    """Keep the labels the file carries (energy/forces/stress/... or REF_*), as REF_*."""
    return _to_ref_keys(frames)


def label_with_calculator(
    frames: list[Atoms],
    make_calc,
    options: LabelOptions,
    unlabelled: Callable[[Exception], str | None] = lambda exc: None,
) -> list[Atoms]:
    """Copies of `frames` labelled by a fresh `make_calc()` each: energy and forces; stress on
    fully periodic cells; the dipole of molecules (no periodic direction) and per-atom partial
    charges where the calculator computes them (xTB). A failure `unlabelled` gives a reason
    for (an SCF that did not converge) leaves that frame unlabelled with the reason; any other
    refuses the batch, naming the frame."""
    out = []
    for index, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.calc = calc = make_calc()
        try:
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces()
            stress = dipole = charges = None
            if options.compute_stress and atoms.pbc.all():
                stress = atoms.get_stress(voigt=False).reshape(-1)
            if "dipole" in calc.implemented_properties and not atoms.pbc.any():
                dipole = atoms.get_dipole_moment()
            if "charges" in calc.implemented_properties:
                charges = atoms.get_charges()
        except Exception as exc:  # the calculator's own words, with the frame they are about
            if reason := unlabelled(exc):
                atoms.calc = None
                atoms.info[LABEL_ERROR_KEY] = reason
                out.append(atoms)
                continue
            raise FrameError(
                f"{frame_name(atoms, index)}: the labeller failed: {type(exc).__name__}: {exc}. Check that the "
                "labeller supports these elements and this geometry, or label the frame elsewhere and add it as "
                "a prelabelled batch."
            ) from exc
        atoms.calc = None
        set_label(atoms, "energy", energy)
        set_label(atoms, "forces", forces)
        if stress is not None:
            set_label(atoms, "stress", stress)
        if dipole is not None:
            set_label(atoms, "dipole", dipole)
        if charges is not None:
            atoms.arrays[CHARGES_KEY] = np.asarray(charges, dtype=float)
        out.append(atoms)
    return out


@register_labeller("emt", level=lambda options: f"emt:EMT (ase {package_version('ase')})")
def emt(frames: list[Atoms], options: LabelOptions) -> list[Atoms]:
    """ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O roughly)."""
    from ase.calculators.emt import EMT

    return label_with_calculator(frames, EMT, options)


# The demo target's pair term (eV, Å), declared once: the calculator and its level of theory.
DEMO_MORSE = {"epsilon": 0.05, "r0": 2.6, "rho0": 4.0, "rcut1": 4.0, "rcut2": 5.0}
EMT_MORSE = "EMT+Morse(" + ",".join(f"{key}={value:g}" for key, value in DEMO_MORSE.items()) + ")"


def emt_morse_calculator():
    """EMT plus a weak Morse pair term: the demo's target level of theory (core/demo.py says
    how it differs from EMT), a labeller so the active-learning loop can label what it picks."""
    from ase.calculators.emt import EMT
    from ase.calculators.mixing import SumCalculator
    from ase.calculators.morse import MorsePotential

    return SumCalculator([EMT(), MorsePotential(**DEMO_MORSE)])


@register_labeller("emt_morse", level=lambda options: f"emt_morse:{EMT_MORSE} (ase {package_version('ase')})")
def emt_morse(frames: list[Atoms], options: LabelOptions) -> list[Atoms]:
    """The demo's target theory (emt_morse_calculator)."""
    return label_with_calculator(frames, emt_morse_calculator, options)


def xtb_level(options: LabelOptions) -> str:
    """tblite's method names are case-sensitive, so the method is written as given."""
    return f"xtb:{options.xtb_method}{level_suffix(options.qm)} (tblite {package_version('tblite')})"


@register_labeller("xtb", level=xtb_level)
def xtb(frames: list[Atoms], options: LabelOptions) -> list[Atoms]:
    """GFN-xTB through tblite (the `qm` extra): energy, forces, stress on fully periodic frames,
    the dipole of molecules, per-atom partial charges. A charge or spin that does not fit a
    frame's electrons is refused (tblite would compute something for it); a frame whose SCF
    does not converge in `scf_max_cycle` iterations is left unlabelled with the reason, as
    with pyscf."""
    try:
        from tblite.ase import TBLite
    except ImportError as exc:
        raise RuntimeError(f"labeller 'xtb' needs tblite, which is not installed. Install it with: {INSTALL}.") from exc
    charge, spin = options.qm.charge, options.qm.spin
    for index, atoms in enumerate(frames):
        if problem := electron_problem(atoms, charge, spin):
            raise FrameError(f"{frame_name(atoms, index)}, {problem}.")
    multiplicity = spin + 1  # tblite's convention; ours is PySCF's 2S
    cycles = options.qm.scf_max_cycle

    def not_converged(exc: Exception) -> str | None:  # tblite: CalculationFailed "SCF not converged in N cycles"
        if "not converged" not in str(exc):
            return None
        return (
            f"the xTB SCF did not converge in scf_max_cycle {cycles} cycles ({exc}); raise scf_max_cycle, "
            "check charge/spin, or drop the frame"
        )

    return label_with_calculator(
        frames,
        lambda: TBLite(
            method=options.xtb_method, charge=charge, multiplicity=multiplicity, max_iterations=cycles, verbosity=0
        ),
        options,
        not_converged,
    )


def pyscf_level(options: LabelOptions) -> str:
    qm = options.qm
    basis = qm.basis.strip().lower()
    dispersion = "" if qm.dispersion == NO_DISPERSION else f"+{qm.dispersion.upper()}"
    return f"pyscf:{pyscf_method(qm)}/{basis}{dispersion}{level_suffix(qm)} (pyscf {package_version('pyscf')})"


@register_labeller("pyscf", level=pyscf_level)
def pyscf(frames: list[Atoms], options: LabelOptions) -> list[Atoms]:
    """HF, DFT or MP2 on molecules through PySCF (the `qm` extra; core/qm.py)."""
    return label_pyscf(frames, options.qm)


@register_labeller("command")
def command(frames: list[Atoms], options: LabelOptions) -> list[Atoms]:
    """Run an external program once per chunk of a batch (core.frames.CHUNK_FRAMES frames).

    I/O contract: the program runs in an empty working directory holding `input.xyz` (extxyz,
    the batch's frames) and must write `output.xyz` there with the same frames in the same
    order, labelled with any keys `prelabelled` understands (energy, forces, stress, REF_*,
    ...). The paths are also given as $TRAINCRAFT_INPUT and $TRAINCRAFT_OUTPUT.
    """
    if not options.command:
        raise ValueError(
            "labeller 'command' needs a command to run; set the `command` option, e.g. "
            "command: 'python run_dft.py' (docs: Bring your own data, the `command` labeller)."
        )
    with tempfile.TemporaryDirectory(prefix="traincraft-label-") as tmp:
        workdir = Path(tmp)
        input_path, output_path = workdir / "input.xyz", workdir / "output.xyz"
        write_frames(input_path, frames)
        env = {
            **os.environ,
            **options.env,
            "TRAINCRAFT_INPUT": str(input_path),
            "TRAINCRAFT_OUTPUT": str(output_path),
        }
        try:
            proc = subprocess.run(
                shlex.split(options.command),
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=options.timeout_s,
            )
        except FileNotFoundError as exc:
            raise RuntimeError(
                f"labeller command {options.command!r} could not start: {exc}. "
                "Check the program is installed and on PATH in this environment."
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"labeller command {options.command!r} ran past its {options.timeout_s} s "
                "limit; raise timeout_s or make the batch smaller."
            ) from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise RuntimeError(
                f"labeller command {options.command!r} exited with {proc.returncode}. Last output:\n{tail}"
            )
        if not output_path.is_file():
            raise FrameError(
                f"labeller command {options.command!r} finished but wrote no output.xyz; "
                "it must write the labelled frames to $TRAINCRAFT_OUTPUT."
            )
        labelled = read_frames(output_path)
    if len(labelled) != len(frames):
        raise FrameError(
            f"labeller command {options.command!r} returned {len(labelled)} frames for "
            f"{len(frames)} inputs; output.xyz must hold every input frame, in order."
        )
    for index, (given, back) in enumerate(zip(frames, labelled)):
        same = (
            list(given.numbers) == list(back.numbers)
            and np.allclose(given.positions, back.positions, atol=1e-4)
            and np.allclose(given.cell[:], back.cell[:], atol=1e-4)
        )
        if not same:
            raise FrameError(
                f"labeller command {options.command!r}: output.xyz frame {index} is not input "
                f"frame {index} (species, positions or cell differ). Labels must be for the given "
                "structures, in order; do not relax or reorder them."
            )
    return _to_ref_keys(labelled)


def computing_labellers() -> tuple[str, ...]:
    """The labellers that compute labels (all but prelabelled): what labels frames the project
    made itself, such as the active-learning loop's picks."""
    return tuple(name for name in LABELLERS if name != DEFAULT_LABELLER)


def _count_problem(options: LabelOptions) -> str | None:
    """`workers` or `chunk_steps` below 1, said with what each means."""
    if options.workers < 1:
        return f"workers is {options.workers}; expected 1 (label in this process) or more."
    if options.chunk_steps < 1:
        return (
            f"chunk_steps is {options.chunk_steps}; expected 1 (the batch labelled in one step) or more "
            "(that many steps, each labelling a share of the frames)."
        )
    return None


def labeller_problems(labeller: str, options: LabelOptions, roots: Sequence[Path]) -> list[str]:
    """What would stop `labeller` before it reads a frame: an unknown name, `xtb` or `pyscf`
    not installed, a method, basis or setting PySCF cannot use, a `command` that is missing,
    cannot be found, or runs a script from outside the project's roots."""
    if labeller not in LABELLERS:
        return [f"unknown labeller {labeller!r}; expected one of {sorted(LABELLERS)}."]
    if problem := _count_problem(options):
        return [problem]
    if labeller == "xtb" and importlib.util.find_spec("tblite") is None:
        return [f"labeller 'xtb' needs tblite, not installed here: {INSTALL}."]
    if labeller == "xtb":
        return spin_problems(options.qm)
    if labeller == "pyscf":
        return pyscf_problems(options.qm)
    if labeller != "command":
        return []
    if not options.command:
        return [
            "labeller 'command' needs `command`, the program to run (docs: Bring your own data, the `command` labeller)."
        ]
    words = shlex.split(options.command)
    if shutil.which(words[0]) is None:
        return [f"labeller command {options.command!r}: program {words[0]!r} not found on PATH here."]
    # a script given by path (python my_dft.py) is code this run executes: it must lie in the roots
    scripts = [w for w in words[1:] if os.sep in w or Path(w).suffix in (".py", ".sh")]
    return [p for w in scripts if Path(w).exists() and (p := path_problem("command argument", w, roots))]


def _label_chunk(label: Labeller, options: LabelOptions, level: str, chunk: list[Atoms]) -> list[Atoms]:
    """`chunk` labelled, keeping the batch stamps a labeller program may drop, each frame stamped
    with `level`; an "unknown" level keeps a level the frame already carries (from its file).
    A module-level function taking the labeller itself, so a worker process can run it (a
    labeller registered by the user's module is imported there by reference)."""
    labelled = label(chunk, options)
    for original, atoms in zip(chunk, labelled):
        atoms.info[BATCH_KEY], atoms.info[BATCH_INDEX_KEY] = original.info[BATCH_KEY], original.info[BATCH_INDEX_KEY]
        atoms.info.setdefault(CONFIG_TYPE_KEY, original.info[CONFIG_TYPE_KEY])
        if level != UNKNOWN_LEVEL or LEVEL_KEY not in atoms.info:
            atoms.info[LEVEL_KEY] = level
    return labelled


def _share_cores(threads: int) -> None:
    """A worker's start: its share of the threads, for labellers that thread with OpenMP
    (tblite). Without it each worker's library starts a thread per core and the workers' threads
    contend: 2 xTB workers took 3-15x longer than one process."""
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _thread_budget() -> int:
    """The threads this process may use: OMP_NUM_THREADS where set (a Kubernetes pod gets its CPU
    quota there, defs/k8s/profiles.py; os.cpu_count() would count the whole node), else the cores."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else os.cpu_count() or 1


def _labelled_chunks(stamped: Iterator[list[Atoms]], labeller: str, options: LabelOptions) -> Iterator[list[Atoms]]:
    """The chunks labelled, in file order. With `workers` > 1 they are labelled in that many
    fresh processes (spawned: the caller may hold threads, e.g. torch's, that fork would copy
    half-way). At most `workers` + 1 chunks are in flight, so memory stays bounded: the extra one
    waits queued, so a worker that finishes starts on it while this process checks and writes
    the chunk before (with only `workers` in flight, each worker idled through that)."""
    label, level = LABELLERS[labeller], level_of_theory(labeller, options)
    if options.workers <= 1 or labeller == "prelabelled":
        for chunk in stamped:
            yield _label_chunk(label, options, level, chunk)
        return
    context = multiprocessing.get_context("spawn")
    threads = max(1, _thread_budget() // options.workers)
    with ProcessPoolExecutor(
        options.workers, mp_context=context, initializer=_share_cores, initargs=(threads,)
    ) as pool:
        pending = deque()
        try:
            for chunk in stamped:
                pending.append(pool.submit(_label_chunk, label, options, level, chunk))
                if len(pending) > options.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def chunk_size(path: Path, options: LabelOptions, start: int = 0, stop: int | None = None) -> int:
    """Frames per labelling chunk of frames [start, stop) of `path`: CHUNK_FRAMES, or with
    several workers an equal share of a smaller batch, so 40 DFT frames on 4 workers take 4
    chunks of 10 instead of one of 40."""
    if options.workers <= 1:
        return CHUNK_FRAMES
    n_frames = (count_frames(path) if stop is None else stop) - start
    return max(1, min(CHUNK_FRAMES, math.ceil(n_frames / options.workers)))


def _stamped_chunks(
    path: Path, batch: str, size: int, start: int = 0, stop: int | None = None
) -> Iterator[list[Atoms]]:
    """Frames [start, stop) of the batch file in chunks of `size`, each stamped with its batch
    and index in the file."""
    for chunk in chunks(itertools.islice(iter_frames(path), start, stop), size):
        for index, atoms in enumerate(chunk, start):
            atoms.info[BATCH_KEY], atoms.info[BATCH_INDEX_KEY] = batch, index
            atoms.info.setdefault(CONFIG_TYPE_KEY, batch)
        start += len(chunk)
        yield chunk


def _check_request(path: Path, labeller: str, options: LabelOptions) -> None:
    """Refuse, before a frame is read, what cannot be labelled: an unknown labeller, a count
    below 1, a file larger than max_file_gib."""
    if labeller not in LABELLERS:
        raise ValueError(f"unknown labeller {labeller!r}; expected one of {sorted(LABELLERS)}.")
    if problem := _count_problem(options):
        raise ValueError(problem)
    size_gib = Path(path).stat().st_size / 2**30
    if size_gib > options.max_file_gib:
        raise BatchError(
            f"{path} is {size_gib:.3g} GiB, more than max_file_gib ({options.max_file_gib:g} GiB). A batch is "
            "labelled, versioned and retired as a whole, so one this large is usually a whole trajectory or "
            "database by mistake. Split it into several batch files and ingest those, or raise max_file_gib."
        )


def _label_frames(
    path: Path, batch: str, labeller: str, options: LabelOptions, out: Path, start: int = 0, stop: int | None = None
) -> tuple[FrameTally, list[Problem]]:
    """Label frames [start, stop) of `path` into `out`, chunk by chunk (`options.workers`
    chunks at once); return their tally and every problem found in them."""
    stamped = _stamped_chunks(path, batch, chunk_size(path, options, start, stop), start, stop)
    tally, problems = FrameTally(), []
    with frame_writer(out) as write:
        try:
            for labelled in _labelled_chunks(stamped, labeller, options):
                problems += batch_problems(
                    labelled, options.check_plausibility, require_labels=labeller == "prelabelled"
                )
                tally.add(labelled)
                write(labelled)
        except FrameError as exc:  # a labeller's message names the frame; add the file
            raise FrameError(f"{path}, {exc}" if str(exc).startswith("frame ") else str(exc)) from exc
    return tally, problems


def label_batch(path: Path, batch: str, labeller: str, options: LabelOptions, out: Path) -> dict:
    """Label batch file `path` into `out`, chunk by chunk (`options.workers` chunks at once),
    each frame stamped with its batch, index and level of theory; return the frames' summary. Broken frames
    refuse the whole batch (health.BatchError, listing them all). A `prelabelled` file must
    label every frame; a labeller that computes labels may leave some unlabelled (the batch is
    then partial)."""
    _check_request(path, labeller, options)
    tally, problems = _label_frames(path, batch, labeller, options, out)
    if problems:
        raise refuse_batch(str(path), problems, tally.n_frames)
    return tally.summary()


# A batch labelled as several steps: its plan and each finished chunk, in a scratch folder
# (core/store.py: ArtifactStore.scratch) until merge_chunks has written the artifact.
PLAN_FILE = "plan.json"
SCRATCH_RETENTION_S = 7 * 24 * 3600.0  # a scratch folder untouched this long belongs to a run given up


@dataclass(frozen=True)
class ChunkPlan:
    """How a batch is labelled as chunk steps: its file (and sha256), the labeller, and each
    step's frames as [start, stop) (stop None: to the end of the file)."""

    batch: str
    source: str
    source_sha256: str
    labeller: str
    bounds: tuple[tuple[int, int | None], ...]

    @classmethod
    def read(cls, scratch: Path) -> ChunkPlan:
        path = Path(scratch) / PLAN_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the plan of this labelling is missing, so its chunks cannot be labelled or merged "
                "(the scratch folder was removed while the run ran?). Materialize labelled_frames for the batch again."
            )
        data = json.loads(path.read_text())
        return cls(**{**data, "bounds": tuple((start, stop) for start, stop in data["bounds"])})


def _chunk_paths(scratch: Path, index: int) -> tuple[Path, Path]:
    """Chunk `index`'s labelled frames and its record (tally, problems), written last."""
    return Path(scratch) / f"chunk-{index:05d}.xyz", Path(scratch) / f"chunk-{index:05d}.json"


def _replace_atomically(path: Path, fill) -> None:
    """`fill(temporary)` then one rename onto `path`: a reader sees the old file or the whole
    new one, and a writer killed half-way leaves only its own temporary file behind (named by
    host and pid: a lost pod may still be writing on the shared volume when its retry starts)."""
    temporary = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.partial")
    try:
        fill(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_scratch(parent: Path, now: float | None = None) -> list[Path]:
    """Scratch folders under `parent` with nothing written for SCRATCH_RETENTION_S: runs that
    failed and were never re-executed."""
    now, stale = now or time.time(), []
    for folder in sorted(Path(parent).iterdir()) if Path(parent).is_dir() else []:
        if now - max(p.stat().st_mtime for p in [folder, *folder.rglob("*")]) > SCRATCH_RETENTION_S:
            shutil.rmtree(folder, ignore_errors=True)
            stale.append(folder)
    return stale


def plan_chunks(
    path: Path, batch: str, labeller: str, options: LabelOptions, source_sha256: str, scratch: Path
) -> ChunkPlan:
    """Split batch file `path` into `options.chunk_steps` contiguous ranges of frames (equal
    shares, at least one frame each) and write the plan into `scratch`. Everything `label_batch`
    refuses before reading a frame is refused here. With one step the file is not counted."""
    _check_request(path, labeller, options)
    remove_stale_scratch(Path(scratch).parent)
    if options.chunk_steps == 1:
        bounds: tuple[tuple[int, int | None], ...] = ((0, None),)
    else:
        n_frames = count_frames(path)
        size = math.ceil(n_frames / min(options.chunk_steps, n_frames))
        bounds = tuple((start, min(start + size, n_frames)) for start in range(0, n_frames, size))
    plan = ChunkPlan(batch, str(path), source_sha256, labeller, bounds)
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    _replace_atomically(scratch / PLAN_FILE, lambda tmp: tmp.write_text(json.dumps(asdict(plan))))
    return plan


def label_chunk(scratch: Path, index: int, options: LabelOptions) -> dict:
    """Label chunk `index` of the plan in `scratch` into its chunk file, with the same code as
    `label_batch`; return its frames' summary. Idempotent: labelling it again replaces the
    file with the same bytes (for a deterministic labeller), so a retried step is safe."""
    plan = ChunkPlan.read(scratch)
    if not 0 <= index < len(plan.bounds):
        raise ValueError(f"chunk {index} of batch {plan.batch!r}: the plan has chunks 0-{len(plan.bounds) - 1}.")
    start, stop = plan.bounds[index]
    frames_path, record_path = _chunk_paths(scratch, index)
    found: list = []

    def label(tmp: Path) -> None:
        found.extend(_label_frames(Path(plan.source), plan.batch, plan.labeller, options, tmp, start, stop))

    _replace_atomically(frames_path, label)
    tally, problems = found
    record = {"summary": tally.summary(), "problems": [p.as_row() for p in problems]}
    _replace_atomically(record_path, lambda tmp: tmp.write_text(json.dumps(record)))
    return record["summary"]


def merge_chunks(scratch: Path, out: Path) -> dict:
    """Write every chunk of the plan in `scratch`, in order, into `out`: byte for byte the file
    `label_batch` writes for the same batch. Return the batch's summary; refuse the batch,
    naming every problem found in any chunk, as `label_batch` does. One chunk is linked, not
    copied."""
    plan = ChunkPlan.read(scratch)
    missing = [i for i in range(len(plan.bounds)) if not _chunk_paths(scratch, i)[1].is_file()]
    if missing:
        raise FileNotFoundError(
            f"batch {plan.batch!r}: chunk(s) {missing} of {len(plan.bounds)} have not been labelled into {scratch}. "
            "Merge runs after every chunk step has succeeded; re-execute the run from its failure."
        )
    tally, problems = FrameTally(), []
    for index in range(len(plan.bounds)):
        record = json.loads(_chunk_paths(scratch, index)[1].read_text())
        tally.add_summary(record["summary"])
        problems += [Problem(**row) for row in record["problems"]]
    if problems:
        raise refuse_batch(plan.source, problems, tally.n_frames)
    if len(plan.bounds) == 1:
        try:
            os.link(_chunk_paths(scratch, 0)[0], out)
            return tally.summary()
        except OSError:  # another filesystem: copied below
            pass
    with open(out, "wb") as handle:
        for index in range(len(plan.bounds)):
            with _chunk_paths(scratch, index)[0].open("rb") as chunk:
                shutil.copyfileobj(chunk, handle, 1 << 20)
    return tally.summary()
