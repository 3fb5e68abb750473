"""Spectra assets: spectrum_trajectories (one step per trajectory, a GPU pod each on Kubernetes),
then ir_spectrum and raman_spectrum made from them. The science is core/spectroscopy.py."""

import base64
import shutil
from pathlib import Path

import dagster as dg

from traincraft_assets.core.artifacts import (
    FinetunedModel,
    IRSpectrum,
    RamanSpectrum,
    Spectra,
    SpectrumTrajectories,
    Split,
)
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.spectroscopy import (
    SpectraSettings,
    TrajectorySettings,
    copy_trajectories,
    make_ir,
    make_raman,
    model_problems,
    read_series,
    run_one,
    starting_structures,
    trajectory_problems,
    write_record,
)
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.reports.assets import markdown_image, table_cell
from traincraft_assets.defs.steps import Step, artifact_asset, fanned_out_asset

TrajectoriesConfig = settings_config(
    "SpectrumTrajectoriesConfig",
    TrajectorySettings,
    "MD of the fine-tuned model for spectra: Langevin to thermalise, NVE to sample (docs: Dipoles and spectra).",
)
SpectraConfig = settings_config(
    "SpectraConfig",
    SpectraSettings,
    "How the trajectories' dipoles (polarizabilities) become a spectrum; its temperature is the MD's.",
    exclude=("temperature_k",),
)


def _scratch(step: Step) -> Path:
    """Where the trajectories wait for the merge: the same for the run's re-executions."""
    run = step.context.run
    return step.store.scratch(f"{SpectrumTrajectories.asset}-{run.root_run_id or run.run_id}")


def _staged(step: Step) -> SpectrumTrajectories:
    """The run's trajectories, staged in its scratch folder until the merge publishes them."""
    return SpectrumTrajectories(_scratch(step))


def plan_trajectories(step: Step, config) -> int:
    """Check the settings, the models and the starting structures (the file's, or the molecules
    among the model's valid frames) before any MD, and fix the model versions every trajectory
    uses."""
    settings = config.to_settings()
    finetuned = step.read(FinetunedModel)
    energy_model = finetuned.deploy_model_path
    dipole_model = Path(settings.dipole_model) if settings.dipole_model else energy_model
    split = step.open(Split, finetuned.manifest["data_versions"][Split.asset])
    try:
        starts = starting_structures(settings, read_frames(split.valid_path))
    except ValueError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    models = {"energy model": energy_model, "dipole model": dipole_model}
    if problems := trajectory_problems(settings) + model_problems(starts, energy_model, dipole_model):
        raise dg.Failure(
            "the spectrum's MD cannot start:\n" + "\n".join(f"- {p}" for p in problems), allow_retries=False
        )
    staged = _staged(step)
    staged.path.mkdir(parents=True, exist_ok=True)
    write_record(staged, settings, starts, models, finetuned_model=finetuned.sha256)
    step.log.info(
        f"{settings.n_trajectories} trajectories of {settings.plan().sampled_steps} NVE steps from {len(starts)} "
        f"structure(s), model {finetuned.sha256[:12]}"
    )
    return settings.n_trajectories


def run_trajectory(step: Step, config, index: int) -> None:
    """One trajectory and its sampled dipoles (polarizabilities); a retry writes the same file."""
    settings, staged = config.to_settings(), _staged(step)
    models = staged.record["models"]
    summary = run_one(
        index,
        read_frames(staged.starts_path),
        Path(models["energy model"]),
        Path(models["dipole model"]),
        settings,
        resolve_device(settings.device),
        staged,
    )
    step.log.info(
        f"trajectory {index}: {summary['n_steps']} steps, mean {summary['mean_temperature_k']:.0f} K, energy drift "
        f"{summary['energy_drift_mev_per_atom_per_ps']:.3g} meV/atom/ps"
    )


def merge_trajectories(step: Step, config) -> dg.MaterializeResult:
    """Publish the trajectories as one artifact, with the settings and models that made them."""
    settings, staged = config.to_settings(), _staged(step)
    record = staged.record
    step.open(FinetunedModel, record["finetuned_model"])  # recorded as read
    artifact, _ = step.write(lambda out: copy_trajectories(staged, out))
    shutil.rmtree(staged.path, ignore_errors=True)
    summaries = read_series(artifact).summaries
    return step.materialized(
        artifact,
        {
            "n_trajectories": settings.n_trajectories,
            "sampled_ps_per_trajectory": settings.length_ps,
            "temperature_k": settings.temperature_k,
            "finetuned_model": record["finetuned_model"],
            "dipole_model": record["models"]["dipole model"],
            "trajectories": dg.MetadataValue.table(
                [dg.TableRecord({k: table_cell(v) for k, v in s.items()}) for s in summaries],
                dg.TableSchema(
                    columns=[
                        dg.TableColumn(k, "int" if isinstance(v, int) else "float") for k, v in summaries[0].items()
                    ]
                ),
            ),
        },
    )


spectrum_trajectories = fanned_out_asset(
    SpectrumTrajectories,
    plan=plan_trajectories,
    part=run_trajectory,
    merge=merge_trajectories,
    config=TrajectoriesConfig,
    preflight=lambda config, run: trajectory_problems(config.to_settings()),
    part_profile="gpu",
    reads=[FinetunedModel, Split],
    description="MD of the fine-tuned model for its spectra: one run_trajectory step per trajectory (a pod each on "
    "Kubernetes, retried alone), then merge_trajectories. Steps: plan_trajectories, run_trajectory, "
    "merge_trajectories.",
    group_name="spectra",
    kinds={"pytorch"},
)


def _peak_table(rows: list[dict]) -> dg.MetadataValue:
    columns = [dg.TableColumn(k, "int" if k == "mode" else "float") for k in rows[0]]
    return dg.MetadataValue.table(
        [dg.TableRecord({k: table_cell(v) for k, v in row.items()}) for row in rows], dg.TableSchema(columns=columns)
    )


def _spectrum_metadata(step: Step, artifact: Spectra, report: dict, title: str) -> dg.MaterializeResult:
    picture = base64.b64encode(artifact.plot_path.read_bytes()).decode()
    return step.materialized(
        artifact,
        {
            "peaks_cm": dg.MetadataValue.json(report["peaks_cm"]),
            "n_trajectories": report["settings"]["n_trajectories"],
            "resolution_cm": report["settings"]["resolution_cm"],
            "window": report["settings"]["window"],
            "correction": report["settings"]["correction"],
            **({"peak_table": _peak_table(report["peak_table"])} if report["peak_table"] else {}),
            "spectrum_plot": markdown_image(title, picture),
            "spectrum_path": dg.MetadataValue.path(str(artifact.table_path)),
        },
    )


@artifact_asset(IRSpectrum, reads=[SpectrumTrajectories], config=SpectraConfig, group_name="spectra", kinds={"ase"})
def ir_spectrum(step: Step, config) -> dg.MaterializeResult:
    """IR absorption averaged over the trajectories, its peaks, and the model's and a labeller's
    harmonic spectra beside it with a peak table (docs: Dipoles and spectra)."""
    trajectories = step.read(SpectrumTrajectories)
    models = trajectories.record["models"]
    device = resolve_device(trajectories.record["settings"]["device"])
    settings = config.to_settings()
    with step.refusing(ValueError):  # settings or series that cannot make a spectrum: a retry would not help
        artifact, report = step.write(
            lambda out: make_ir(
                trajectories, Path(models["energy model"]), Path(models["dipole model"]), settings, device, out
            )
        )
    step.log.info(f"IR peaks (cm⁻¹): {report['peaks_cm']}")
    return _spectrum_metadata(step, artifact, report, "IR spectrum")


@artifact_asset(RamanSpectrum, reads=[SpectrumTrajectories], config=SpectraConfig, group_name="spectra", kinds={"ase"})
def raman_spectrum(step: Step, config) -> dg.MaterializeResult:
    """Raman spectra (isotropic, anisotropic, total) averaged over the trajectories, from a
    dipole model with a polarizability head (docs: Dipoles and spectra)."""
    trajectories = step.read(SpectrumTrajectories)
    settings = config.to_settings()
    with step.refusing(ValueError):  # no polarizabilities: a retry would find none either
        artifact, report = step.write(lambda out: make_raman(trajectories, settings, out))
    step.log.info(f"Raman peaks (cm⁻¹): {report['peaks_cm']}")
    return _spectrum_metadata(step, artifact, report, "Raman spectra")
