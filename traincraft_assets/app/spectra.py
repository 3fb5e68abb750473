"""`traincraft spectra`: the worked example of dipoles and spectra (core/spectra_example.py) on
this machine, no Dagster run: water labelled with GFN2-xTB and PySCF, two small MACE models
trained here, their dipoles judged, trajectories, and the IR and Raman spectra beside xTB's
harmonic spectrum; the files go to the data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from traincraft_assets.core.spectra_example import ExampleSettings, peak_table_text, quick_settings, run_example

Say = Callable[[str], None]


def run(data_dir: Path, quick: bool, say: Say = print) -> dict:
    settings = quick_settings() if quick else ExampleSettings()
    md = settings.trajectories
    say(
        f"dipoles and spectra{' (--quick)' if quick else ''}: water, {settings.n_train} training frames, "
        f"{md.n_trajectories} trajectories of {md.length_ps:g} ps at {md.temperature_k:g} K; data in {data_dir}"
    )
    return run_example(settings, data_dir, say)


def text(results: dict, data_dir: Path) -> str:
    """What the terminal shows: the models' dipole and polarizability errors, the peaks, the
    peak table, and where the files are."""
    parity = "\n".join(
        f"  {name}: " + ", ".join(f"{key} {value:.1f}" for key, value in errors.items())
        for name, errors in results["parity"].items()
    )
    return (
        f"\nvalid-set errors:\n{parity}\n\nIR peaks (cm⁻¹): {results['ir']['peaks_cm']}\n"
        f"Raman peaks (cm⁻¹): {results['raman']['peaks_cm']}\n\n"
        f"peaks against xTB's harmonic modes (cm⁻¹):\n{peak_table_text(results['ir']['peak_table'])}\n\n"
        f"{results['wall_s']:.0f} s in all ({results['md_steps_per_s']:.0f} MD steps/s). Files: {data_dir}/spectra.json, "
        f"{data_dir}/parity.png, {data_dir}/ir_spectrum/spectrum.png, {data_dir}/raman_spectrum/spectrum.png"
    )
