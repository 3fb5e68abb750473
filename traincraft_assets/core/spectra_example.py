"""The worked example of `traincraft spectra`: a water molecule's IR and Raman spectra from
models trained here, beside the labeller's own harmonic spectrum.

- Data: thermally distorted water molecules (core/fidelity.py's generator), labelled with
  GFN2-xTB (energy, forces, dipole) for the IR model, and with PySCF HF/STO-3G (dipole and
  finite-field polarizability) for the Raman model. Labels are cached in the data directory.
- Models: an EnergyDipolesMACE (energy, forces and dipole; it drives the MD and gives the IR
  dipoles) and an AtomicDielectricMACE (dipole and polarizability, for Raman), both from scratch:
  no foundation model covers H and O offline.
- Parity of the dipoles and polarizabilities on held-out frames; trajectories; the spectra, the
  model's harmonic spectrum and xTB's; the peak table.

The IR model is compared with xTB, the level it learned, so what the table shows is the model's
error plus the MD's anharmonic, thermal shift, not the error of xTB against experiment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from traincraft_assets.core.artifacts import IRSpectrum, RamanSpectrum, SpectrumTrajectories
from traincraft_assets.core.evaluation import evaluate, property_errors
from traincraft_assets.core.fidelity import labelled, water_clusters
from traincraft_assets.core.frames import elements, labels_present, write_frames
from traincraft_assets.core.labelling import LabelOptions
from traincraft_assets.core.models import load_model
from traincraft_assets.core.plots import parity_figure, save_figure
from traincraft_assets.core.qm import QMOptions
from traincraft_assets.core.spectroscopy import (
    SpectraSettings,
    TrajectorySettings,
    add_polarizabilities,
    make_ir,
    make_raman,
    run_one,
    write_record,
)
from traincraft_assets.core.training import Launch, TrainInputs, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings

Say = Callable[[str], None]

IR_MODEL = TrainSettings(
    strategy="scratch",
    heads=("energy", "forces", "dipole"),
    e0s="average",
    lr=0.01,
    batch_size=8,
    max_num_epochs=150,
    dtype="float64",
    shape=ModelShape(num_channels=32, max_L=1, r_max=4.0, num_interactions=2, correlation=2),
)
RAMAN_MODEL = replace(
    IR_MODEL, heads=("dipole", "polarizability"), shape=replace(IR_MODEL.shape, max_L=2, num_channels=16)
)


@dataclass
class ExampleSettings:
    n_train: int = 240
    n_valid: int = 40
    n_raman: int = 120  # of the training frames, also labelled with PySCF for the Raman model
    seed: int = 0
    ir_model: TrainSettings = field(default_factory=lambda: replace(IR_MODEL))
    raman_model: TrainSettings = field(default_factory=lambda: replace(RAMAN_MODEL))
    trajectories: TrajectorySettings = field(
        default_factory=lambda: TrajectorySettings(n_trajectories=4, equilibration_ps=1.0, length_ps=4.0, device="cpu")
    )
    spectra: SpectraSettings = field(default_factory=SpectraSettings)


def quick_settings() -> ExampleSettings:
    """Small enough for CI: the pipeline end to end, not converged spectra."""
    defaults = ExampleSettings()
    return replace(
        defaults,
        n_train=32,
        n_valid=8,
        n_raman=16,
        ir_model=replace(IR_MODEL, max_num_epochs=10, shape=replace(IR_MODEL.shape, num_channels=8)),
        raman_model=replace(RAMAN_MODEL, max_num_epochs=3, shape=replace(RAMAN_MODEL.shape, num_channels=8)),
        trajectories=replace(defaults.trajectories, n_trajectories=2, equilibration_ps=0.025, length_ps=0.25),
    )


def _train(settings: TrainSettings, train, valid, workdir: Path, name: str, say: Say) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    write_frames(workdir / "train.xyz", train)
    write_frames(workdir / "valid.xyz", valid)
    inputs = TrainInputs(
        train_file=workdir / "train.xyz",
        valid_file=workdir / "valid.xyz",
        data_labels=labels_present(train),
        data_elements=elements(train),
    )
    started = time.monotonic()
    result = get_trainer("mace").train(settings, inputs, Launch(), workdir / "run", lambda line: None, name)
    say(f"{name}: {settings.max_num_epochs} epochs on {len(train)} frames in {time.monotonic() - started:.0f} s")
    return result.model_path


def run_example(settings: ExampleSettings, data_dir: Path, say: Say = print) -> dict:
    """Label (or reuse the cached labels), train both models, judge their dipoles and
    polarizabilities, run the trajectories and make the spectra; everything under `data_dir`."""
    started = time.monotonic()
    data_dir = Path(data_dir)
    frames = water_clusters(settings.n_train + settings.n_valid, settings.seed, max_waters=1)
    train, valid = frames[: settings.n_train], frames[settings.n_train :]
    cache = data_dir / "labels"
    xtb = LabelOptions()
    hf = LabelOptions(qm=QMOptions(method="HF", basis="sto-3g", polarizability=True))
    ir_train, ir_valid = (labelled(part, "xtb", xtb, cache, 1, say) for part in (train, valid))
    raman_train = labelled(train[: settings.n_raman], "pyscf", hf, cache, 1, say)
    raman_valid = labelled(valid, "pyscf", hf, cache, 1, say)

    ir_model = _train(settings.ir_model, ir_train, ir_valid, data_dir / "ir_model", "ir_model", say)
    raman_model = _train(settings.raman_model, raman_train, raman_valid, data_dir / "raman_model", "raman_model", say)

    judged = {
        "ir_model": evaluate(load_model(ir_model), ir_valid),
        "raman_model": evaluate(load_model(raman_model), raman_valid),
    }
    parity = {name: property_errors(evaluation) for name, evaluation in judged.items()}
    figure = parity_figure(
        [(name, e.frames, e.predictions) for name, e in judged.items()], f"valid frames ({settings.n_valid})"
    )
    save_figure(figure, data_dir / "parity.png")

    trajectories = SpectrumTrajectories(data_dir / "trajectories")
    trajectories.path.mkdir(parents=True, exist_ok=True)
    start, device = valid[:1], settings.trajectories.device
    models = {"energy model": ir_model, "dipole model": ir_model, "polarizability model": raman_model}
    write_record(trajectories, settings.trajectories, start, models)
    md_started = time.monotonic()
    summaries = [
        run_one(i, start, ir_model, ir_model, settings.trajectories, device, trajectories)
        for i in range(settings.trajectories.n_trajectories)
    ]
    md_s = time.monotonic() - md_started
    for index in range(len(summaries)):
        add_polarizabilities(trajectories, index, raman_model, device)
    steps = sum(s["n_steps"] for s in summaries) + settings.trajectories.plan().equilibration_steps * len(summaries)
    say(f"{len(summaries)} trajectories, {steps} MD steps in {md_s:.0f} s ({steps / md_s:.0f} steps/s)")

    outputs = {}
    for kind, make in (
        (IRSpectrum, lambda out: make_ir(trajectories, ir_model, ir_model, settings.spectra, "cpu", out)),
        (RamanSpectrum, lambda out: make_raman(trajectories, settings.spectra, out)),
    ):
        out = kind(data_dir / kind.asset)
        out.path.mkdir(parents=True, exist_ok=True)
        outputs[kind.asset] = make(out)
    results = {
        "settings": asdict(settings),
        "parity": parity,
        "md_steps_per_s": steps / md_s,
        "ir": outputs[IRSpectrum.asset],
        "raman": {k: outputs[RamanSpectrum.asset][k] for k in ("peaks_cm", "settings")},
        "wall_s": time.monotonic() - started,
    }
    (data_dir / "spectra.json").write_text(json.dumps(results, indent=1, default=str))
    return results


def peak_table_text(rows: list[dict]) -> str:
    """The peak table as the terminal shows it."""
    if not rows:
        return "(no harmonic reference)"
    columns = [k for k in rows[0] if k != "mode"]
    lines = ["mode  " + "  ".join(f"{c:>20}" for c in columns)]
    for row in rows:
        cells = ("" if row[c] is None else f"{row[c]:.0f}" for c in columns)
        lines.append(f"{row['mode']:>4}  " + "  ".join(f"{cell:>20}" for cell in cells))
    return "\n".join(lines)
