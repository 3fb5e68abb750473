"""IR and Raman spectra of a trained model, the way the spectrum assets make them: trajectories
first (one step each, a pod each on a cluster), then spectra averaged over them, with the
harmonic references beside them.

The trajectories are kept apart from the spectra so that a spectrum's window, quantum correction
or peak settings can change without running the MD again. The references are harmonic: the
model's own (its Hessian at its relaxed structure) and, for small molecules, a labeller's (xTB by
ASE's finite differences at the labeller's relaxed structure). An MD spectrum differs from both
by anharmonicity and temperature (lines shift to lower wavenumbers and broaden); the peak table
shows that shift instead of hiding it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms

from traincraft_assets.core.artifacts import Spectra, SpectrumTrajectories
from traincraft_assets.core.device import Device
from traincraft_assets.core.frames import elements, read_frames, write_frames
from traincraft_assets.core.models import CALCULATOR_MODEL_TYPES, describe_file
from traincraft_assets.core.paths import input_path
from traincraft_assets.core.processes import temporarily
from traincraft_assets.core.spectra import (
    Peak,
    RamanSpectra,
    Spectrum,
    SpectrumSettings,
    average_spectra,
    find_peaks,
    ir_spectrum,
    raman_spectra,
    timestep_problem,
)
from traincraft_assets.core.trajectories import MDPlan, Trajectory, energy_calculator, run_trajectory, sample_response
from traincraft_assets.core.vibrations import HarmonicModes, harmonic_modes, mace_harmonic_modes, match_peaks

Reference = Literal["none", "xtb"]
PEAK_TOLERANCE_CM = 150.0  # peaks further apart than this are not called the same mode
# MACE model classes without an energy: they cannot drive MD
DIPOLE_ONLY = ("AtomicDipolesMACE", "AtomicDielectricMACE")


@dataclass
class TrajectorySettings:
    structures_path: str | None = field(
        default=None,
        metadata=input_path(
            "starting structures (any ASE-readable file; trajectory i starts from structure i mod n); unset: the "
            "molecules among the model's valid frames"
        ),
    )
    n_trajectories: int = field(default=4, metadata={"help": "trajectories averaged: one step (a pod) each"})
    temperature_k: float = field(default=300.0, metadata={"help": "Langevin thermalisation temperature (K)"})
    time_step_fs: float = field(default=0.5, metadata={"help": "MD time step (fs); sampled every step"})
    equilibration_ps: float = field(default=1.0, metadata={"help": "Langevin (NVT) before sampling (ps)"})
    length_ps: float = field(
        default=4.0, metadata={"help": "sampled NVE per trajectory (ps); resolution 33.4 cm⁻¹ / length_ps"}
    )
    friction_per_fs: float = field(default=0.01, metadata={"help": "Langevin friction (1/fs)"})
    dipole_model: str | None = field(
        default=None,
        metadata=input_path(
            "a MACE model with a dipole head (and a polarizability head, for Raman) when the fine-tuned model has "
            "none; unset: the fine-tuned model's own dipoles"
        ),
    )
    highest_wavenumber_cm: float = field(
        default=4000.0,
        metadata={"help": "the fastest vibration the time step must sample (O-H stretches: ~3700 cm⁻¹)"},
    )
    seed: int = field(default=0, metadata={"help": "velocities and Langevin noise; trajectory i uses seed + i"})
    device: Device = field(default="auto", metadata={"help": "auto: cuda when the step's machine has one"})
    cpu_threads: int = field(
        default=1,
        metadata={
            "help": "torch threads for MD on a CPU: one is fastest for a molecule of a few atoms (water: 22 ms a "
            "step against 116 ms with 2, on 2 busy cores); raise it for hundreds of atoms"
        },
    )

    def plan(self) -> MDPlan:
        return MDPlan(
            self.temperature_k,
            self.time_step_fs,
            round(self.equilibration_ps * 1000 / self.time_step_fs),
            round(self.length_ps * 1000 / self.time_step_fs),
            self.friction_per_fs,
        )


def trajectory_problems(settings: TrajectorySettings) -> list[str]:
    """What stops the MD before it starts: a time step too long for the fastest vibration (with
    the numbers), no trajectory, nothing to sample."""
    problems = []
    if not settings.time_step_fs > 0:
        problems.append(f"time_step_fs must be positive; got {settings.time_step_fs}.")
    elif problem := timestep_problem(settings.time_step_fs, settings.highest_wavenumber_cm):
        problems.append(problem + ".")
    if settings.n_trajectories < 1 or settings.cpu_threads < 1:
        problems.append(
            f"n_trajectories {settings.n_trajectories}, cpu_threads {settings.cpu_threads}: expected 1 or more of each."
        )
    if not settings.length_ps > 0 or settings.equilibration_ps < 0 or not settings.temperature_k > 0:
        problems.append(
            f"length_ps {settings.length_ps}, equilibration_ps {settings.equilibration_ps}, temperature_k "
            f"{settings.temperature_k}: expected a positive length and temperature and no negative equilibration."
        )
    return problems


def starting_structures(settings: TrajectorySettings, valid_frames: Sequence[Atoms]) -> list[Atoms]:
    """The structures trajectories start from: the file's, or the molecules (no periodic
    direction) among the valid frames, refused when there are none."""
    if settings.structures_path:
        found = read_frames(settings.structures_path)
        where = settings.structures_path
    else:
        found = [a for a in valid_frames if not a.pbc.any()]
        where = "the model's valid frames (molecules only: a periodic cell has no defined dipole)"
    if not found:
        raise ValueError(f"no structure to start the spectrum's MD from in {where}: set structures_path.")
    return [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in found]


def model_problems(structures: Sequence[Atoms], energy_model: Path, dipole_model: Path) -> list[str]:
    """What stops the MD of these structures with these models, known from the files before any
    step: a dynamics model without energies, a dipole model without a dipole head, elements a
    model has no embedding for."""
    energy, dipole = describe_file(energy_model), describe_file(dipole_model)
    problems = []
    if energy["model_class"] in DIPOLE_ONLY:
        problems.append(
            f"the fine-tuned model ({energy_model}) is an {energy['model_class']}: it predicts no energy, so it "
            "cannot drive MD. Train one with heads [energy, forces, dipole] and give this one as dipole_model."
        )
    if dipole["model_class"] not in CALCULATOR_MODEL_TYPES:
        problems.append(
            f"the dipole model ({dipole_model}) is a {dipole['model_class']} without a dipole head, and a spectrum is "
            "made of dipoles: train one with heads [energy, forces, dipole] (or [dipole, polarizability] for Raman) "
            "and give it as dipole_model."
        )
    present = elements(structures)
    for role, path, info in (("fine-tuned model", energy_model, energy), ("dipole model", dipole_model, dipole)):
        if lacking := [e for e in present if e not in info["elements"]]:
            problems.append(
                f"the starting structures hold {lacking}, which the {role} ({path}) has no embedding for (it knows "
                f"{info['elements']}): use structures of its elements."
            )
    return problems


def torch_threads(threads: int) -> contextlib.AbstractContextManager:
    """torch's intra-op CPU threads for a while: a few-atom model gains nothing from several,
    and on a busy machine they contend."""
    import torch

    return temporarily(torch.get_num_threads, torch.set_num_threads, threads)


def run_one(
    index: int,
    starts: Sequence[Atoms],
    energy_model: Path,
    dipole_model: Path,
    settings: TrajectorySettings,
    device: str,
    out: SpectrumTrajectories,
) -> dict:
    """Trajectory `index` from start `index` mod n, its dipoles (and polarizabilities) sampled,
    written to its file (the same file again on a retry: the seed is the index's)."""
    start = index % len(starts)
    with torch_threads(settings.cpu_threads):
        trajectory = run_trajectory(
            starts[start], energy_calculator(energy_model, device), settings.plan(), settings.seed + index
        )
        response = sample_response(trajectory, dipole_model, device)
    path = out.trajectory_path(index)
    partial = path.with_name(f"{path.stem}.partial.npz")  # a pod lost mid-write leaves no half file
    series = {"dipoles": response.dipoles}
    if response.polarizabilities is not None:
        series["polarizabilities"] = response.polarizabilities
    trajectory.save(partial, **series).replace(path)
    return summary_of(index, start, trajectory)


def add_polarizabilities(out: SpectrumTrajectories, index: int, model: Path, device: str) -> None:
    """Trajectory `index`'s polarizabilities from a dielectric `model`, beside the dipoles it
    has: the IR dipoles and the Raman polarizabilities may come from two models (an
    EnergyDipolesMACE and an AtomicDielectricMACE trained on another level)."""
    path = out.trajectory_path(index)
    trajectory, series = Trajectory.load_with_series(path)
    response = sample_response(trajectory, model, device)
    if response.polarizabilities is None:
        raise ValueError(f"{model} predicts no polarizability: give a model with heads [dipole, polarizability].")
    partial = path.with_name(f"{path.stem}.partial.npz")
    trajectory.save(partial, dipoles=series["dipoles"], polarizabilities=response.polarizabilities).replace(path)


def summary_of(index: int, start: int, trajectory: Trajectory) -> dict:
    return {
        "index": index,
        "start": start,
        "n_steps": len(trajectory.positions),
        "mean_temperature_k": float(trajectory.temperature_k.mean()),
        "energy_drift_mev_per_atom_per_ps": trajectory.energy_drift_mev_per_atom_per_ps,
    }


def write_record(
    out: SpectrumTrajectories, settings: TrajectorySettings, starts: Sequence[Atoms], models: dict, **facts
) -> None:
    """The starts and trajectories.json (settings, models by role, and any other `facts`),
    written before the first trajectory: every trajectory step reads its start and models there."""
    write_frames(out.starts_path, list(starts))
    record = {"settings": asdict(settings), "models": {k: str(v) for k, v in models.items()}, **facts}
    out.record_path.write_text(json.dumps(record, indent=1))


def copy_trajectories(staged: SpectrumTrajectories, out: SpectrumTrajectories) -> None:
    """The record, starts and every trajectory of `staged` into `out`, refused when one is missing."""
    n = staged.record["settings"]["n_trajectories"]
    missing = [i for i in range(n) if not staged.trajectory_path(i).is_file()]
    if missing:
        raise FileNotFoundError(f"trajectories {missing} of {n} were not written to {staged.path}: run them again.")
    for path in (staged.record_path, staged.starts_path, *(staged.trajectory_path(i) for i in range(n))):
        shutil.copyfile(path, out.path / path.name)


@dataclass
class SampledSeries:
    time_step_fs: float
    dipoles: list[np.ndarray]
    polarizabilities: list[np.ndarray] | None  # None: the dipole model predicts none
    summaries: list[dict]


def read_series(trajectories: SpectrumTrajectories) -> SampledSeries:
    """Every trajectory's sampled series, in index order, and what each was."""
    settings = trajectories.record["settings"]
    n_starts = len(read_frames(trajectories.starts_path))
    dipoles, alphas, summaries = [], [], []
    for index in range(settings["n_trajectories"]):
        trajectory, series = Trajectory.load_with_series(trajectories.trajectory_path(index))
        dipoles.append(series["dipoles"])
        alphas.append(series.get("polarizabilities"))
        summaries.append(summary_of(index, index % n_starts, trajectory))
    polarizabilities = alphas if all(a is not None for a in alphas) else None
    return SampledSeries(settings["time_step_fs"], dipoles, polarizabilities, summaries)


@dataclass
class SpectraSettings:
    # how the series become a spectrum; its temperature is the trajectories' own (taken from them)
    line: SpectrumSettings = field(default_factory=SpectrumSettings)
    peak_prominence: float = field(
        default=0.05, metadata={"help": "a peak stands this far above its surroundings (of 1)"}
    )
    min_peak_separation_cm: float = field(default=20.0, metadata={"help": "of two closer peaks, the higher is kept"})
    reference: Reference = field(
        default="xtb",
        metadata={"help": "IR: a labeller's harmonic spectrum beside the model's (xtb: GFN2-xTB on the first start)"},
    )
    broadening_cm: float = field(default=20.0, metadata={"help": "harmonic sticks drawn as Lorentzians this wide"})

    def at(self, temperature_k: float) -> SpectrumSettings:
        """The line settings at the trajectories' temperature."""
        return replace(self.line, temperature_k=temperature_k)


def ir(series: SampledSeries, temperature_k: float, settings: SpectraSettings) -> Spectrum:
    """The IR absorption averaged over the trajectories."""
    line = settings.at(temperature_k)
    return average_spectra([ir_spectrum(mu, series.time_step_fs, line) for mu in series.dipoles])


def raman(series: SampledSeries, temperature_k: float, settings: SpectraSettings) -> RamanSpectra:
    """The Raman spectra (isotropic, anisotropic, total) averaged over the trajectories; refused
    when the dipole model predicts no polarizability."""
    if series.polarizabilities is None:
        raise ValueError(
            "a Raman spectrum is made of polarizabilities, and the dipole model predicts none: give "
            "spectrum_trajectories a dipole_model with a polarizability head (heads: [dipole, polarizability])."
        )
    line = settings.at(temperature_k)
    runs = [raman_spectra(alpha, series.time_step_fs, line) for alpha in series.polarizabilities]
    return RamanSpectra(*(average_spectra(list(part)) for part in zip(*runs)))


def relaxed(atoms: Atoms, calculator, fmax: float = 0.01, steps: int = 300) -> Atoms:
    """`atoms` relaxed with `calculator` (BFGS): harmonic modes are those of a minimum."""
    from ase.optimize import BFGS

    atoms = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    atoms.calc = calculator
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps)
    return atoms


def harmonic_references(
    start: Atoms, energy_model: Path, dipole_model: Path | None, reference: Reference, device: str
) -> dict[str, HarmonicModes]:
    """The model's harmonic modes at its own minimum and, with `reference` xtb, GFN2-xTB's at its
    own (each relaxed from the first start)."""
    found = {}
    # intensities: an EnergyDipolesMACE's own dipoles; otherwise a dielectric model's derivatives
    # (MACE 0.3.16 gives none for AtomicDipolesMACE: its harmonic modes come without intensities)
    own_dipoles = describe_file(energy_model)["model_class"] == "EnergyDipolesMACE"
    dielectric = None
    if dipole_model and not own_dipoles and describe_file(dipole_model)["model_class"] == "AtomicDielectricMACE":
        dielectric = dipole_model
    model_minimum = relaxed(start, energy_calculator(energy_model, device))
    found["model harmonic"] = mace_harmonic_modes(model_minimum, energy_model, dielectric, device)
    if reference == "xtb":
        from tblite.ase import TBLite

        from traincraft_assets.core.labelling import LabelOptions

        def xtb() -> TBLite:
            return TBLite(method=LabelOptions().xtb_method, verbosity=0)

        found["xtb harmonic"] = harmonic_modes(relaxed(start, xtb()), xtb())
    return found


def peak_table(md: Sequence[Peak], references: dict[str, HarmonicModes]) -> list[dict]:
    """One row per reference mode (the labeller's when there is one, else the model's harmonic
    ones): its wavenumber, the model's harmonic and MD peaks paired with it, and the shifts."""
    names = list(references)
    base = names[-1]
    rows = [{"mode": i + 1, base: float(w)} for i, w in enumerate(references[base].wavenumbers_cm)]
    for name in [*names[:-1], "model MD"]:
        other = [p.position_cm for p in md] if name == "model MD" else references[name].wavenumbers_cm
        for row, match in zip(rows, match_peaks([r[base] for r in rows], list(other), PEAK_TOLERANCE_CM)):
            row[name] = match.other_cm
            row[f"{name} shift"] = match.shift_cm
    return rows


def write_spectrum(
    out: Spectra,
    parts: dict[str, Spectrum],
    peaks: list[Peak],
    references: dict[str, HarmonicModes],
    table: list[dict],
    summaries: list[dict],
    figure,
) -> dict:
    """spectrum.csv (one column per part), spectrum.json and the plot; returns the report."""
    grid = next(iter(parts.values())).wavenumbers_cm
    columns = np.column_stack([grid, *(p.intensities for p in parts.values())])
    np.savetxt(out.table_path, columns, delimiter=",", header=",".join(["wavenumber_cm", *parts]), comments="")
    report = {
        "settings": next(iter(parts.values())).settings,
        "peaks_cm": [round(p.position_cm, 1) for p in peaks],
        "peak_heights": [round(p.height, 4) for p in peaks],
        "harmonic": {
            name: {
                "wavenumbers_cm": [round(float(w), 1) for w in modes.wavenumbers_cm],
                "intensities_km_mol": None
                if modes.intensities_km_mol is None
                else [round(float(i), 2) for i in modes.intensities_km_mol],
                "imaginary_cm": [round(float(w), 1) for w in modes.imaginary_cm],
                "source": modes.source,
            }
            for name, modes in references.items()
        },
        "peak_table": table,
        "trajectories": summaries,
    }
    out.report_path.write_text(json.dumps(report, indent=1))
    figure.savefig(out.plot_path, dpi=80)
    return report


def make_ir(
    trajectories: SpectrumTrajectories,
    energy_model: Path,
    dipole_model: Path,
    settings: SpectraSettings,
    device: str,
    out: Spectra,
) -> dict:
    """The IR spectrum averaged over the trajectories, its peaks, the harmonic references at
    the first start and the peak table, written into `out`; returns the report."""
    from traincraft_assets.core.plots import spectrum_figure

    series = read_series(trajectories)
    temperature = trajectories.record["settings"]["temperature_k"]
    spectrum = ir(series, temperature, settings)
    found = find_peaks(spectrum, settings.peak_prominence, settings.min_peak_separation_cm)
    start = read_frames(trajectories.starts_path)[0]
    references = harmonic_references(start, energy_model, dipole_model, settings.reference, device)
    table = peak_table(found, references)
    n = len(series.dipoles)
    figure = spectrum_figure(
        {"model MD": spectrum},
        references,
        settings.broadening_cm,
        f"IR, {n} trajectories at {temperature:g} K ({settings.line.window} window, {settings.line.correction} "
        "correction)",
    )
    return write_spectrum(out, {"ir": spectrum}, found, references, table, series.summaries, figure)


def make_raman(trajectories: SpectrumTrajectories, settings: SpectraSettings, out: Spectra) -> dict:
    """The Raman spectra (isotropic, anisotropic, total) averaged over the trajectories and
    their peaks (of the total), written into `out`; returns the report."""
    from traincraft_assets.core.plots import spectrum_figure

    series = read_series(trajectories)
    temperature = trajectories.record["settings"]["temperature_k"]
    parts = raman(series, temperature, settings)._asdict()
    found = find_peaks(parts["total"], settings.peak_prominence, settings.min_peak_separation_cm)
    figure = spectrum_figure(
        parts, {}, settings.broadening_cm, f"Raman, {len(series.dipoles)} trajectories at {temperature:g} K"
    )
    return write_spectrum(out, parts, found, {}, [], series.summaries, figure)
