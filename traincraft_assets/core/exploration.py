"""Exploration: molecular dynamics driven by a committee, to find the frames it is unsure of.

One walk is one starting structure at one temperature: ASE Langevin dynamics (NVT), or
Berendsen NPT as an option, on the committee's mean energy and forces (MACE's own committee
calculator: `MACECalculator(model_paths=[...])`). Every `save_interval` steps the frame is
saved with the committee's force and energy deviation (core.committee). A walk stops early
the first time the force deviation passes the upper trust level: beyond it the committee
knows nothing and the trajectory's physics is no longer trustworthy (IPSuite and MACE's
`mace_active_learning_md` stop the same way). Where it stopped is recorded.

Walks are independent, so they fan out: one partition each, named `<structure>@<T>K`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms

from traincraft_assets.core.committee import TrustLevels, force_deviation, scored
from traincraft_assets.core.frames import CONFIG_TYPE_KEY, FrameError, elements, read_frames
from traincraft_assets.core.paths import input_path

Ensemble = Literal["nvt", "npt"]
WALK = re.compile(r"^(?P<structure>\d+)@(?P<temperature>\d+(\.\d+)?)K$")
STRUCTURE_KEY = "start_structure"  # a saved frame's starting structure (index in the structures file)
STEP_KEY = "md_step"


@dataclass(frozen=True)
class ExploreSettings:
    structures: str = field(
        default="", metadata=input_path("extxyz of starting structures; one walk per structure and temperature")
    )
    temperatures_k: Sequence[float] = field(default=(300.0,), metadata={"help": "one walk per temperature (K)"})
    ensemble: Ensemble = field(default="nvt", metadata={"help": "nvt: Langevin; npt: Berendsen (periodic cells)"})
    steps: int = field(default=1000, metadata={"help": "MD steps per walk, unless the committee gives up first"})
    save_interval: int = field(default=10, metadata={"help": "a frame is saved (and scored) every this many steps"})
    timestep_fs: float = field(default=2.0, metadata={"help": "MD time step (fs)"})
    friction_per_fs: float = field(default=0.01, metadata={"help": "Langevin friction (1/fs)"})
    pressure_bar: float = field(default=1.0, metadata={"help": "npt: target pressure (bar)"})
    compressibility_per_bar: float = field(default=1e-6, metadata={"help": "npt: Berendsen compressibility (1/bar)"})
    seed: int = field(default=0, metadata={"help": "initial velocities and thermostat noise"})
    trust: TrustLevels = field(default_factory=TrustLevels)

    def problems(self) -> list[str]:
        found = list(self.trust.problems())
        if not self.structures:
            found.append("`structures` is empty: give an extxyz file of starting structures.")
        if not self.temperatures_k or any(t <= 0 for t in self.temperatures_k):
            found.append(f"temperatures_k must be one or more positive temperatures; got {list(self.temperatures_k)}.")
        if self.steps < 1 or self.save_interval < 1 or self.save_interval > self.steps:
            found.append(
                f"need steps >= 1 and 1 <= save_interval <= steps; got steps={self.steps}, "
                f"save_interval={self.save_interval}."
            )
        if self.timestep_fs <= 0:
            found.append(f"timestep_fs must be positive; got {self.timestep_fs}.")
        return found


def start_problems(settings: ExploreSettings, foundation_elements: Sequence[str] | None) -> list[str]:
    """Everything wrong with an exploration's settings and starting structures, found before
    any committee is trained: trust levels, budgets, a structures file that is missing, empty
    or unreadable, or holds elements the foundation (so the committee) does not know."""
    problems = settings.problems()
    if not settings.structures:
        return problems
    path = Path(settings.structures)
    if not path.is_file():
        return [*problems, f"structures: {path} is not a file; give an extxyz file of starting structures."]
    try:
        starts = read_frames(path)
    except FrameError as exc:
        return [*problems, str(exc)]
    if foundation_elements is not None:
        lacking = sorted(set(elements(starts)) - set(foundation_elements))
        if lacking:
            problems.append(
                f"{path}: elements {lacking} are not among the foundation's {sorted(foundation_elements)}, so the "
                "committee cannot run MD on them. Remove those structures, or fine-tune a foundation that knows them."
            )
    return problems


def walk_name(structure: int, temperature_k: float) -> str:
    return f"{structure}@{temperature_k:g}K"


def walk_names(n_structures: int, temperatures_k: Sequence[float]) -> list[str]:
    """Every walk of a structures file of `n_structures` at `temperatures_k`."""
    return [walk_name(i, t) for i in range(n_structures) for t in temperatures_k]


def parse_walk(name: str) -> tuple[int, float]:
    match = WALK.match(name)
    if match is None:
        raise ValueError(f"walk {name!r} is not <structure index>@<temperature>K, e.g. '0@300K'.")
    return int(match["structure"]), float(match["temperature"])


@dataclass
class WalkResult:
    frames: list[Atoms]  # saved frames, scored
    steps_run: int
    stopped_at: int | None  # the step whose force deviation passed trust_hi; None: ran to the end
    stop_deviation: float | None

    def record(self) -> dict:
        return {
            "n_saved": len(self.frames),
            "steps_run": self.steps_run,
            "stopped_early": self.stopped_at is not None,
            "stopped_at_step": self.stopped_at,
            "stop_force_deviation": self.stop_deviation,
        }


def committee_calculator(model_paths: Sequence[str], device: str):
    """MACE's committee calculator: mean energy and forces, and every member's (`forces_comm`),
    in the members' own dtype (MD of a float32 committee cast to float64 ran at half the speed)."""
    from mace.calculators import MACECalculator

    from traincraft_assets.core.models import describe_file

    dtype = describe_file(Path(model_paths[0]))["dtype"]
    return MACECalculator(model_paths=list(model_paths), device=device, default_dtype=dtype)


def _dynamics(atoms: Atoms, settings: ExploreSettings, temperature_k: float, seed: int):
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.nptberendsen import NPTBerendsen

    rng = np.random.default_rng(seed)
    if settings.ensemble == "npt":
        return NPTBerendsen(
            atoms,
            timestep=settings.timestep_fs * units.fs,
            temperature_K=temperature_k,
            pressure_au=settings.pressure_bar * units.bar,
            taut=100 * units.fs,
            taup=1000 * units.fs,
            compressibility_au=settings.compressibility_per_bar / units.bar,
        )
    return Langevin(
        atoms,
        timestep=settings.timestep_fs * units.fs,
        temperature_K=temperature_k,
        friction=settings.friction_per_fs / units.fs,
        fixcm=False,  # holding the centre of mass fixed biases the NVT distribution (ASE warns)
        rng=rng,
    )


def run_walk(
    start: Atoms,
    structure: int,
    temperature_k: float,
    calculator,
    settings: ExploreSettings,
    on_progress: Callable[[int, float], None] | None = None,
) -> WalkResult:
    """MD from `start` with a committee calculator; saves scored frames, stops past trust_hi.
    `on_progress(step, force_deviation)` is called at every saved frame."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    if settings.ensemble == "npt" and not start.pbc.all():
        raise ValueError(
            f"structure {structure} is not periodic in all three directions; NPT needs a cell. "
            "Use ensemble: nvt for molecules and slabs."
        )
    atoms = start.copy()
    atoms.info.pop(CONFIG_TYPE_KEY, None)
    atoms.calc = calculator
    seed = settings.seed + 1000 * structure + int(temperature_k)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_k, rng=np.random.default_rng(seed))
    dynamics = _dynamics(atoms, settings, temperature_k, seed)
    saved: list[Atoms] = []
    for step in range(settings.steps + 1):
        if step:
            dynamics.run(1)
        atoms.get_forces()
        results = calculator.results
        deviation = force_deviation(results["forces_comm"])
        beyond = not np.isfinite(deviation) or deviation > settings.trust.trust_hi
        if beyond or (step and step % settings.save_interval == 0):
            frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            frame.info.update({STRUCTURE_KEY: structure, STEP_KEY: step, "temperature_k": temperature_k})
            frame.info[CONFIG_TYPE_KEY] = start.info.get(CONFIG_TYPE_KEY, f"structure_{structure}")
            saved.append(scored(frame, results["energy_comm"], results["forces_comm"]))
            if on_progress is not None:
                on_progress(step, deviation)
        if beyond:
            return WalkResult(saved, step, step, deviation)
    return WalkResult(saved, settings.steps, None, None)
