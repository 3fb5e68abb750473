"""Molecular dynamics for spectra: thermalise with Langevin (NVT), then sample with velocity
Verlet (NVE), and read the dipole (and polarizability) of every sampled step.

Why NVE for the sampling: a thermostat's random kicks decorrelate the dipole and broaden every
line, so the time correlation functions a spectrum is made of are taken without one. The NVE
part's total-energy drift is kept with the trajectory: a drift means the time step is too long
for the model (or the model is rough), and the spectrum is then not to be trusted.

Dipoles and polarizabilities are predicted after the run, on the saved positions, in batches
(core.evaluation.predict): the dynamics needs only the energy model, and a separate dipole or
dielectric model costs one batched pass instead of a calculator call per step.

Units: fs, ps, K, eV; dipoles in e·Å, polarizabilities in e·Å²/V (the labels' units).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from ase import Atoms, units

from traincraft_assets.core.models import load_model


@dataclass
class MDPlan:
    """One trajectory's schedule."""

    temperature_k: float
    time_step_fs: float
    equilibration_steps: int  # NVT (Langevin), not sampled
    sampled_steps: int  # NVE (velocity Verlet), each step sampled
    friction_per_fs: float = 0.01


@dataclass
class Trajectory:
    """The NVE part of one run: positions of every step, and its energies and temperatures."""

    numbers: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    time_step_fs: float
    positions: np.ndarray  # [steps, atoms, 3] Å
    total_energy: np.ndarray  # [steps] eV
    temperature_k: np.ndarray  # [steps]

    def frames(self) -> list[Atoms]:
        return [Atoms(self.numbers, p, cell=self.cell, pbc=self.pbc) for p in self.positions]

    @property
    def energy_drift_mev_per_atom_per_ps(self) -> float:
        """The slope of the NVE total energy, per atom: ~0 when the integration is sound."""
        times_ps = np.arange(len(self.total_energy)) * self.time_step_fs / 1000
        slope = np.polyfit(times_ps, self.total_energy, 1)[0] if len(times_ps) > 1 else 0.0
        return float(slope * 1000 / len(self.numbers))

    def save(self, path: Path, **series: np.ndarray) -> Path:
        """The trajectory, with `series` sampled along it (dipoles, ...) beside it."""
        np.savez_compressed(
            path,
            **series,
            numbers=self.numbers,
            cell=self.cell,
            pbc=self.pbc,
            time_step_fs=self.time_step_fs,
            positions=self.positions,
            total_energy=self.total_energy,
            temperature_k=self.temperature_k,
        )
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> Trajectory:
        return cls.load_with_series(path)[0]

    @classmethod
    def load_with_series(cls, path: Path) -> tuple[Trajectory, dict[str, np.ndarray]]:
        """The trajectory and the series saved beside it (`save`'s keywords), in one read."""
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
        own = {f.name: arrays.pop(f.name) for f in fields(cls)}
        return cls(**own | {"time_step_fs": float(own["time_step_fs"])}), arrays


def degrees_of_freedom(atoms: Atoms) -> int:
    """The velocity components NVE keeps free: 3N less the centre of mass's 3 and, for a
    molecule, its rotations (2 if linear, else 3), which are stopped (ASE's get_temperature
    counts all 3N, and reads a water molecule at a third of its temperature)."""
    rotations = 0 if atoms.pbc.any() else int(np.sum(atoms.get_moments_of_inertia() > 1e-6))
    return max(1, 3 * len(atoms) - 3 - rotations)


def energy_calculator(model_path: Path, device: str):
    """MACE's ASE calculator for a model's energy and forces, in the model's own dtype."""
    from mace.calculators import MACECalculator

    from traincraft_assets.core.models import describe_file

    dtype = describe_file(Path(model_path))["dtype"]
    return MACECalculator(model_paths=str(model_path), device=device, default_dtype=dtype)


def run_trajectory(
    start: Atoms,
    calculator,
    plan: MDPlan,
    seed: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> Trajectory:
    """Maxwell-Boltzmann velocities at the plan's temperature (no net momentum or rotation),
    Langevin for the equilibration steps, then velocity Verlet for the sampled ones.
    `on_progress(step, total)` is called every 100 steps."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    atoms = Atoms(start.numbers, start.positions, cell=start.cell, pbc=start.pbc)
    # The centre of mass stays put (a charged molecule's dipole depends on the origin), by a
    # constraint: Langevin's own fixcm biases the NVT distribution (ASE warns).
    atoms.set_constraint(FixCom())
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=plan.temperature_k, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dt = plan.time_step_fs * units.fs
    total = plan.equilibration_steps + plan.sampled_steps
    thermostat = Langevin(
        atoms,
        timestep=dt,
        temperature_K=plan.temperature_k,
        friction=plan.friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )
    for step in range(plan.equilibration_steps):
        thermostat.run(1)
        if on_progress and step % 100 == 0:
            on_progress(step, total)
    if not atoms.pbc.any():
        # A molecule in vacuum keeps the angular momentum the thermostat left it, and its dipole
        # turns with it: a rotational band and P/R branches that bury the vibrations (measured on
        # water: the band at 100-250 cm⁻¹ five times the bend). Stopped here, NVE keeps it at zero.
        ZeroRotation(atoms)
        Stationary(atoms)
    verlet = VelocityVerlet(atoms, timestep=dt)
    dof = degrees_of_freedom(atoms)
    positions = np.empty((plan.sampled_steps, len(atoms), 3))
    energy = np.empty(plan.sampled_steps)
    temperature = np.empty(plan.sampled_steps)
    for step in range(plan.sampled_steps):
        if step:
            verlet.run(1)
        positions[step] = atoms.positions
        energy[step] = atoms.get_potential_energy() + atoms.get_kinetic_energy()
        temperature[step] = 2 * atoms.get_kinetic_energy() / (dof * units.kB)
        if on_progress and (plan.equilibration_steps + step) % 100 == 0:
            on_progress(plan.equilibration_steps + step, total)
    return Trajectory(
        atoms.numbers.copy(), np.array(atoms.cell), atoms.pbc.copy(), plan.time_step_fs, positions, energy, temperature
    )


@dataclass
class Response:
    """What a spectrum is made of along one trajectory."""

    dipoles: np.ndarray  # [steps, 3] e·Å
    polarizabilities: np.ndarray | None  # [steps, 3, 3] e·Å²/V; None: the model predicts none


def sample_response(trajectory: Trajectory, model_path: Path, device: str, batch_size: int = 64) -> Response:
    """The dipole (and polarizability) of every sampled step, predicted in batches by the model
    in `model_path`; a model without a dipole head is refused, saying which heads make one."""
    from traincraft_assets.core.evaluation import predict

    model = load_model(model_path, device)
    predictions = predict(model, trajectory.frames(), batch_size=batch_size, device=device)
    if not predictions or predictions[0].dipole is None:
        raise ValueError(
            f"{model_path}: a {type(model).__name__} predicts no dipole, and a spectrum is made of dipoles. "
            "Train a model with a dipole head (heads: [energy, forces, dipole], or [dipole, polarizability] "
            "for Raman) and give it as the dipole model."
        )
    dipoles = np.stack([p.dipole for p in predictions])
    has_alpha = predictions[0].polarizability is not None
    alphas = np.stack([p.polarizability for p in predictions]) if has_alpha else None
    return Response(dipoles, alphas)
