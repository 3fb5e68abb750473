"""`traincraft spectra --quick` end to end through the CLI's own function: water labelled by
GFN2-xTB and PySCF for real, two small MACE models trained, their dipoles and polarizabilities
judged, two trajectories, the IR spectrum beside xTB's harmonic modes, and the Raman spectra.
Quick models are not converged: this shows the pipeline, the docs page shows the numbers."""

import json

import numpy as np
import pytest

from traincraft_assets import cli
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.models import load_model

pytestmark = pytest.mark.integration


def test_spectra_quick_end_to_end(tmp_path, capsys):
    data = tmp_path / "spectra"
    assert cli.main(["spectra", "--quick", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "2 trajectories, 1100 MD steps" in out and "peaks against xTB's harmonic modes" in out
    results = json.loads((data / "spectra.json").read_text())
    # the IR model predicts dipoles, the Raman model dipoles and polarizabilities, and both are judged
    assert {"rmse_mu_mdebye"} <= set(results["parity"]["ir_model"]) and "rmse_alpha_me_a2_per_v" not in (
        results["parity"]["ir_model"]
    )
    assert results["parity"]["raman_model"]["rmse_alpha_iso_me_a2_per_v"] > 0
    assert type(load_model(data / "ir_model" / "run" / "ir_model.model")).__name__ == "EnergyDipolesMACE"
    assert type(load_model(data / "raman_model" / "run" / "raman_model.model")).__name__ == "AtomicDielectricMACE"
    # the references: xTB's three modes of water with intensities, and the model's own
    xtb = results["ir"]["harmonic"]["xtb harmonic"]
    assert len(xtb["wavenumbers_cm"]) == 3 and all(i > 0 for i in xtb["intensities_km_mol"])
    assert len(results["ir"]["harmonic"]["model harmonic"]["wavenumbers_cm"]) == 3
    assert [row["mode"] for row in results["ir"]["peak_table"]] == [1, 2, 3]
    # IR from the IR model's dipoles, Raman from the Raman model's polarizabilities, on the same MD
    with np.load(data / "trajectories" / "trajectory-001.npz") as trajectory:
        assert trajectory["dipoles"].shape == (500, 3) and trajectory["polarizabilities"].shape == (500, 3, 3)
    assert len(read_frames(data / "trajectories" / "starts.xyz")) == 1
    assert np.loadtxt(data / "raman_spectrum" / "spectrum.csv", delimiter=",", skiprows=1).shape[1] == 4
    for figure in ("parity.png", "ir_spectrum/spectrum.png", "raman_spectrum/spectrum.png"):
        assert (data / figure).stat().st_size > 10_000, figure
