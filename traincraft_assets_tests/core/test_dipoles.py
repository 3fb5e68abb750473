"""Dipole and polarizability heads evaluated like energies, and sampled along MD for spectra:
tiny MACE models with those heads, trained for real on water clusters labelled by PySCF
(HF/STO-3G, dipoles and finite-field polarizabilities), predicted in batches and compared with
MACE's own MACECalculator on the same frames; the parity report carries their errors, the
baseline's where it predicts them; a trajectory's dipoles are the dipole model's."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.units import Debye

from traincraft_assets.core.artifacts import ParityReport
from traincraft_assets.core.evaluation import EvalSettings, evaluate, parity, write_parity_report
from traincraft_assets.core.fidelity import water_clusters
from traincraft_assets.core.frames import get_label, read_frames, write_frames
from traincraft_assets.core.labelling import LABELLERS, LabelOptions
from traincraft_assets.core.metrics import polarizability_parts
from traincraft_assets.core.models import CALCULATOR_MODEL_TYPES, load_model
from traincraft_assets.core.qm import QMOptions
from traincraft_assets.core.training import Launch, TrainInputs, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings

pytestmark = pytest.mark.integration

# The model class MACE trains for each set of heads, and the max_L it needs
MODELS = {
    ("energy", "forces"): ("ScaleShiftMACE", 0),
    ("energy", "forces", "dipole"): ("EnergyDipolesMACE", 1),
    ("dipole",): ("AtomicDipolesMACE", 1),
    ("dipole", "polarizability"): ("AtomicDielectricMACE", 2),
}


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """24 water monomers and dimers labelled with PySCF: energies, forces, dipoles and
    polarizabilities; 18 to train on, 6 to validate."""
    root = tmp_path_factory.mktemp("water")
    options = LabelOptions(qm=QMOptions(method="HF", basis="sto-3g", polarizability=True))
    frames = LABELLERS["pyscf"](water_clusters(24, seed=1, max_waters=2), options)
    write_frames(root / "train.xyz", frames[:18])
    write_frames(root / "valid.xyz", frames[18:])
    return root


@pytest.fixture(scope="module")
def models(water):
    """One tiny model per head set, 2 epochs, by mace_run_train."""
    inputs = TrainInputs(
        train_file=water / "train.xyz",
        valid_file=water / "valid.xyz",
        data_labels=("energy", "forces", "dipole", "polarizability"),
        data_elements=("H", "O"),
    )
    made = {}
    for heads, (model_class, max_l) in MODELS.items():
        settings = TrainSettings(
            strategy="scratch",
            heads=heads,
            e0s="average",
            max_num_epochs=2,
            batch_size=4,
            dtype="float64",
            shape=ModelShape(num_channels=8, max_L=max_l, r_max=4.0, num_interactions=2, correlation=2),
        )
        run = water / "_".join(heads)
        result = get_trainer("mace").train(settings, inputs, Launch(), run, lambda line: None, "model")
        assert type(load_model(result.model_path)).__name__ == model_class
        made[heads] = result.model_path
    return made


def test_batched_predictions_are_mace_calculators_own(water, models):
    from mace.calculators import MACECalculator

    frames = read_frames(water / "valid.xyz")
    for heads, path in models.items():
        if "dipole" not in heads:
            continue
        model_type = CALCULATOR_MODEL_TYPES[MODELS[heads][0]]
        calculator = MACECalculator(model_paths=str(path), model_type=model_type, device="cpu", default_dtype="float64")
        predictions = evaluate(load_model(path), frames).predictions
        for atoms, predicted in zip(frames, predictions):
            atoms = atoms.copy()
            calculator.calculate(atoms)
            direct = calculator.results
            assert np.allclose(predicted.dipole, direct["dipole"], atol=1e-8)
            if "polarizability" in heads:
                assert np.allclose(predicted.polarizability, np.reshape(direct["polarizability"], (3, 3)), atol=1e-8)
            else:
                assert predicted.polarizability is None
            if "energy" in heads:
                assert predicted.energy == pytest.approx(direct["energy"], abs=1e-8)
                assert np.allclose(predicted.forces, direct["forces"], atol=1e-8)
            else:
                assert predicted.energy is None and predicted.forces is None


def test_parity_reports_dipole_and_polarizability_errors_beside_the_baseline(water, models, tmp_path):
    """A dielectric model against an energy-and-dipole baseline: both are judged on dipoles, only
    the model on polarizabilities; the numbers are recomputed here from the predictions."""
    dielectric, baseline = models[("dipole", "polarizability")], models[("energy", "forces", "dipole")]
    result = parity(dielectric, baseline, water / "valid.xyz", None, None, EvalSettings(device="cpu"))
    frames = read_frames(water / "valid.xyz")
    predictions = evaluate(load_model(dielectric), frames).predictions
    dmu = np.concatenate([p.dipole - get_label(a, "dipole") for a, p in zip(frames, predictions)])
    dalpha = [
        polarizability_parts(p.polarizability)[1] - polarizability_parts(get_label(a, "polarizability"))[1]
        for a, p in zip(frames, predictions)
    ]
    metrics = result.property_metrics
    assert metrics["rmse_mu_mdebye"] == pytest.approx(np.sqrt(np.mean(dmu**2)) / Debye * 1000)
    assert metrics["rmse_alpha_iso_me_a2_per_v"] == pytest.approx(np.sqrt(np.mean(np.square(dalpha))) * 1000)
    assert metrics["foundation_rmse_mu_mdebye"] > 0 and "foundation_rmse_alpha_me_a2_per_v" not in metrics
    assert np.isnan(result.metrics["rmse_f_mev_per_a"])  # the dielectric model predicts no forces

    out = ParityReport(tmp_path / "report")
    out.path.mkdir()
    write_parity_report(result, out, {}, {}, [])
    report = json.loads(Path(out.report_path).read_text())
    assert report["rmse_mu_mdebye"] == pytest.approx(metrics["rmse_mu_mdebye"])
    row = report["rows"][0]
    assert {"rmse_alpha_aniso_me_a2_per_v", "foundation_rmse_mu_mdebye"} <= set(row)
    assert out.valid_plot_path.stat().st_size > 10_000


def test_frames_with_elements_the_model_lacks_are_refused_naming_them(models):
    from ase.build import bulk

    with pytest.raises(ValueError, match=r"no embedding for \['Cu'\].*it covers \['H', 'O'\]"):
        evaluate(load_model(models[("dipole",)]), [bulk("Cu")])


def test_a_trajectory_samples_nve_after_nvt_and_its_dipoles_are_the_models(water, models):
    from mace.calculators import MACECalculator

    from traincraft_assets.core.trajectories import (
        MDPlan,
        Trajectory,
        energy_calculator,
        run_trajectory,
        sample_response,
    )

    start = next(a for a in read_frames(water / "valid.xyz") if len(a) == 3)
    energy_model = models[("energy", "forces", "dipole")]
    plan = MDPlan(temperature_k=300, time_step_fs=0.25, equilibration_steps=10, sampled_steps=40)
    trajectory = run_trajectory(start, energy_calculator(energy_model, "cpu"), plan, seed=3)
    assert trajectory.positions.shape == (40, 3, 3) and (trajectory.temperature_k > 0).all()
    # NVE at a short step conserves energy: far less drift than the ~0.1 eV of thermal motion
    assert abs(trajectory.total_energy - trajectory.total_energy[0]).max() < 0.01
    again = Trajectory.load(trajectory.save(water / "trajectory.npz"))
    assert np.array_equal(again.positions, trajectory.positions) and again.time_step_fs == 0.25

    dielectric = models[("dipole", "polarizability")]
    response = sample_response(trajectory, dielectric, "cpu")
    assert response.dipoles.shape == (40, 3) and response.polarizabilities.shape == (40, 3, 3)
    calculator = MACECalculator(model_paths=str(dielectric), model_type="DipolePolarizabilityMACE", device="cpu")
    last = trajectory.frames()[-1]
    calculator.calculate(last)
    assert np.allclose(response.dipoles[-1], calculator.results["dipole"], atol=1e-8)
    assert sample_response(trajectory, energy_model, "cpu").polarizabilities is None

    with pytest.raises(ValueError, match=r"predicts no dipole.*heads: \[energy, forces, dipole\]"):
        sample_response(trajectory, models[("energy", "forces")], "cpu")


def test_ir_and_raman_from_trajectories_with_harmonic_references(water, models, tmp_path):
    """Two short trajectories of a water molecule, dipoles and polarizabilities from the
    dielectric model; the IR spectrum beside the model's and GFN2-xTB's harmonic modes, and the
    Raman spectra. Tiny models: the numbers are not physics, the pipeline is."""
    from traincraft_assets.core.artifacts import IRSpectrum, RamanSpectrum, SpectrumTrajectories
    from traincraft_assets.core.spectroscopy import (
        SpectraSettings,
        TrajectorySettings,
        make_ir,
        make_raman,
        read_series,
        run_one,
        write_record,
    )

    energy_model, dielectric = models[("energy", "forces", "dipole")], models[("dipole", "polarizability")]
    settings = TrajectorySettings(
        n_trajectories=2, time_step_fs=0.25, equilibration_ps=0.0025, length_ps=0.05, device="cpu"
    )
    starts = [next(a for a in read_frames(water / "valid.xyz") if len(a) == 3)]
    trajectories = SpectrumTrajectories(tmp_path / "trajectories")
    trajectories.path.mkdir()
    write_record(trajectories, settings, starts, {"energy model": energy_model, "dipole model": dielectric})
    summaries = [run_one(i, starts, energy_model, dielectric, settings, "cpu", trajectories) for i in range(2)]
    assert [s["n_steps"] for s in summaries] == [200, 200]
    series = read_series(trajectories)
    assert not np.allclose(series.dipoles[0], series.dipoles[1])  # two seeds, two trajectories

    ir = IRSpectrum(tmp_path / "ir")
    ir.path.mkdir()
    report = make_ir(trajectories, energy_model, dielectric, SpectraSettings(), "cpu", ir)
    assert report["settings"]["n_trajectories"] == 2 and report["settings"]["window"] == "hann"
    xtb = report["harmonic"]["xtb harmonic"]
    bend, *stretches = xtb["wavenumbers_cm"]
    assert 1400 < bend < 1800 and all(3300 < w < 4000 for w in stretches) and min(xtb["intensities_km_mol"]) > 0
    assert len(report["peak_table"]) == 3 and {"model harmonic", "model MD"} <= set(report["peak_table"][0])
    assert ir.plot_path.stat().st_size > 10_000
    assert np.loadtxt(ir.table_path, delimiter=",", skiprows=1).shape[1] == 2

    raman = RamanSpectrum(tmp_path / "raman")
    raman.path.mkdir()
    report = make_raman(trajectories, SpectraSettings(), raman)
    assert report["settings"]["n_trajectories"] == 2 and report["peaks_cm"] == sorted(report["peaks_cm"])
    parts = np.loadtxt(raman.table_path, delimiter=",", skiprows=1)
    assert parts.shape[1] == 4  # wavenumber, isotropic, anisotropic, total


def test_md_for_a_spectrum_is_refused_before_it_starts_when_the_models_cannot_make_one(water, models):
    """A dipole model without a dipole head, a dipole-only model as the dynamics model, and
    elements a model lacks: each named, before any MD step."""
    from ase.build import bulk

    from traincraft_assets.core.spectroscopy import model_problems

    water_molecule = [next(a for a in read_frames(water / "valid.xyz") if len(a) == 3)]
    energy_only, dielectric = models[("energy", "forces")], models[("dipole", "polarizability")]
    assert model_problems(water_molecule, models[("energy", "forces", "dipole")], dielectric) == []
    (no_dipole,) = model_problems(water_molecule, energy_only, energy_only)
    assert "ScaleShiftMACE without a dipole head" in no_dipole and "heads [energy, forces, dipole]" in no_dipole
    (no_energy,) = model_problems(water_molecule, dielectric, dielectric)
    assert "AtomicDielectricMACE: it predicts no energy, so it cannot drive MD" in no_energy
    lacking = model_problems([bulk("Cu")], energy_only, dielectric)
    assert len(lacking) == 2 and all("hold ['Cu']" in p for p in lacking)


def test_parity_against_a_foundation_without_the_datas_elements_leaves_its_columns_empty(water, models):
    """A model trained from scratch on H and O against the Cu demo foundation: the foundation has
    nothing to say about water, so its numbers are NaN and the model's are reported."""
    from traincraft_assets.core import demo

    foundation = demo.SHIPPED_FOUNDATION_DIR / "foundation.model"
    result = parity(models[("energy", "forces", "dipole")], foundation, water / "valid.xyz", None, None, EvalSettings())
    assert np.isnan(result.metrics["foundation_rmse_f_mev_per_a"]) and result.metrics["rmse_f_mev_per_a"] > 0
    assert "rmse_mu_mdebye" in result.property_metrics and "foundation_rmse_mu_mdebye" not in result.property_metrics
    assert all(np.isnan(row["foundation_rmse_f_mev_per_a"]) for row in result.rows)


def test_a_dipole_model_trained_on_frames_with_charges_predicts_without_them(tmp_path):
    """xtb labels carry partial charges under MACE's default charges key; MACE's dipole models add
    those charges' dipole to their own, so a model trained with them needs them at MD time too.
    Kept out of training, the dipoles MACE validated on are the ones the model predicts alone."""
    from traincraft_assets.core.frames import CHARGES_KEY
    from traincraft_assets.core.training.mace.command import UNREAD_CHARGES_KEY

    frames = LABELLERS["xtb"](water_clusters(16, seed=4, max_waters=1), LabelOptions())
    assert all(CHARGES_KEY in atoms.arrays for atoms in frames)
    write_frames(tmp_path / "train.xyz", frames[:12])
    write_frames(tmp_path / "valid.xyz", frames[12:])
    inputs = TrainInputs(
        train_file=tmp_path / "train.xyz",
        valid_file=tmp_path / "valid.xyz",
        data_labels=("energy", "forces", "dipole"),
        data_elements=("H", "O"),
    )
    settings = TrainSettings(
        strategy="scratch",
        heads=("energy", "forces", "dipole"),
        e0s="average",
        max_num_epochs=2,
        batch_size=4,
        dtype="float64",
        shape=ModelShape(num_channels=8, max_L=1, r_max=4.0, num_interactions=2, correlation=2),
    )
    result = get_trainer("mace").train(settings, inputs, Launch(), tmp_path / "run", lambda line: None, "model")
    assert result.argv[result.argv.index("--charges_key") + 1] == UNREAD_CHARGES_KEY
    logged = [json.loads(line) for line in next((tmp_path / "run" / "results").glob("*.txt")).open()]
    validated = [row["rmse_mu"] for row in logged if row.get("mode") == "eval"]
    predicted = evaluate(load_model(result.model_path), read_frames(tmp_path / "valid.xyz")).overall["rmse_mu"]
    assert min(abs(predicted - v) for v in validated) < 1e-6 * max(1.0, predicted), (predicted, validated)
