"""The artifact catalogue: each asset's folder in the store and the files it holds.

Every path to a store file is built here, so the layout is written down once and a reader
finds, in one screen, what each artifact contains. An asset reads its inputs as
`store.open(Dataset, sha).frames_path` and fills its own artifact through the same accessors
(`ArtifactStore.write(Dataset, fill)` hands `fill` a staging `Dataset`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from traincraft_assets.core.split import SIDES
from traincraft_assets.core.store import Artifact

MANIFEST_FILE = "manifest.json"  # a contract with users: every model directory has one


@dataclass(frozen=True)
class LabelledFrames(Artifact):
    """One data batch, labelled, with every label under a REF_* key."""

    asset = "labelled_frames"

    @property
    def frames_path(self) -> Path:
        return self.path / "frames.xyz"


@dataclass(frozen=True)
class Dataset(Artifact):
    """Every labelled batch merged, first copy of each structure kept."""

    asset = "dataset"

    @property
    def frames_path(self) -> Path:
        return self.path / "dataset.xyz"

    @property
    def batches_path(self) -> Path:
        """Which batch versions went in: [{batch, data_version}]."""
        return self.path / "batches.json"


@dataclass(frozen=True)
class Split(Artifact):
    """Train / valid (/ test) extxyz files, and each frame's dataset index and fingerprint."""

    asset = "split"

    def side_path(self, side: str) -> Path:
        if side not in SIDES:
            raise ValueError(f"unknown split side {side!r}; expected one of {list(SIDES)}")
        return self.path / f"{side}.xyz"

    @property
    def train_path(self) -> Path:
        return self.side_path("train")

    @property
    def valid_path(self) -> Path:
        return self.side_path("valid")

    @property
    def test_path(self) -> Path:
        """Absent when the split has no test side (test_fraction 0)."""
        return self.side_path("test")

    def present_sides(self) -> dict[str, Path]:
        """The sides this split has, in train/valid/test order."""
        return {side: self.side_path(side) for side in SIDES if self.side_path(side).is_file()}

    @property
    def indices_path(self) -> Path:
        return self.path / "indices.json"


@dataclass(frozen=True)
class PretrainingFrames(Artifact):
    """The replay pool, and frames held out from the foundation's training; labels under REF_* keys."""

    asset = "pretraining_frames"

    @property
    def frames_path(self) -> Path:
        return self.path / "pool.xyz"

    @property
    def heldout_path(self) -> Path:
        """Frames of the pool's distribution the foundation never trained on; absent if none."""
        return self.path / "heldout.xyz"


@dataclass(frozen=True)
class FoundationModel(Artifact):
    """The model to fine-tune, and what the rest of the graph needs to know about it."""

    asset = "foundation_model"

    @property
    def model_path(self) -> Path:
        return self.path / "foundation.model"

    @property
    def info_path(self) -> Path:
        return self.path / "foundation.json"

    @property
    def info(self) -> dict:
        """origin, sha256, model class, elements, r_max, heads, dtype, E0s (core.foundation)."""
        return json.loads(self.info_path.read_text())


@dataclass(frozen=True)
class ReplaySubset(Artifact):
    """Replay frames selected for training, and unselected ones held out to measure forgetting."""

    asset = "replay_subset"

    @property
    def selected_path(self) -> Path:
        return self.path / "replay.xyz"

    @property
    def heldout_path(self) -> Path:
        """Absent when no frame was held out."""
        return self.path / "heldout.xyz"


@dataclass(frozen=True)
class FinetunedModel(Artifact):
    """A trained model as its trainer wrote it, the model to deploy, and manifest.json."""

    asset = "finetuned_model"
    RUN_NAME = "finetuned"  # the trainer's run name: MACE writes <run name>.model

    @property
    def model_path(self) -> Path:
        return self.path / f"{self.RUN_NAME}.model"

    @property
    def deploy_target(self) -> Path:
        """Where the single-head export goes when it differs from the trained model."""
        return self.path / "deploy.model"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    @property
    def deploy_model_path(self) -> Path:
        """The model to run MD with (the manifest's `deploy_model`)."""
        return self.path / self.manifest["deploy_model"]


@dataclass(frozen=True)
class ParityReport(Artifact):
    """parity.json and its plots."""

    asset = "parity_report"

    @property
    def report_path(self) -> Path:
        return self.path / "parity.json"

    @property
    def report(self) -> dict:
        return json.loads(self.report_path.read_text())

    @property
    def valid_plot_path(self) -> Path:
        return self.path / "parity_valid.png"

    @property
    def replay_plot_path(self) -> Path:
        return self.path / "parity_replay.png"

    @property
    def learning_curve_path(self) -> Path:
        return self.path / "learning_curve.png"


@dataclass(frozen=True)
class ChampionModel(Artifact):
    """The model that serves, deployable as is: the single-head model for MD, the manifest it
    was trained with (exact data versions), its parity report, and champion.json (which
    fine-tuned model it is, when and why it was promoted)."""

    asset = "champion_model"

    @property
    def model_path(self) -> Path:
        return self.path / "deploy.model"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def parity_path(self) -> Path:
        return self.path / "parity.json"

    @property
    def record_path(self) -> Path:
        return self.path / "champion.json"

    @property
    def record(self) -> dict:
        return json.loads(self.record_path.read_text())


@dataclass(frozen=True)
class StrategyArm(Artifact):
    """One arm of a strategy comparison: a row per training-set size (core.comparison)."""

    asset = "strategy_arm"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def results(self) -> dict:
        return json.loads(self.results_path.read_text())


@dataclass(frozen=True)
class StrategyComparison(Artifact):
    """Every arm side by side: the table (JSON and Markdown) and the two figures."""

    asset = "strategy_comparison"

    @property
    def table_path(self) -> Path:
        return self.path / "comparison.json"

    @property
    def markdown_path(self) -> Path:
        return self.path / "comparison.md"

    @property
    def error_plot_path(self) -> Path:
        return self.path / "error_vs_frames.png"

    @property
    def forgetting_plot_path(self) -> Path:
        return self.path / "forgetting_vs_accuracy.png"


@dataclass(frozen=True)
class CommitteeMember(FinetunedModel):
    """One member of the committee (a partition): a fine-tuned model laid out as finetuned_model
    is, and member.json (its seed, the committee it belongs to, the champion serving then)."""

    asset = "committee"

    @property
    def record_path(self) -> Path:
        return self.path / "member.json"

    @property
    def record(self) -> dict:
        return json.loads(self.record_path.read_text())


@dataclass(frozen=True)
class Exploration(Artifact):
    """One walk (a partition: structure and temperature): the saved frames, each scored by the
    committee, and walk.json (where it stopped, which committee drove it)."""

    asset = "exploration"

    @property
    def frames_path(self) -> Path:
        return self.path / "trajectory.xyz"

    @property
    def record_path(self) -> Path:
        return self.path / "walk.json"

    @property
    def record(self) -> dict:
        return json.loads(self.record_path.read_text())


@dataclass(frozen=True)
class Candidates(Artifact):
    """One iteration's verdict on every explored frame: the scored frames, the ones picked for
    labelling, convergence.json (bucket fractions, deviation histogram) and its plot."""

    asset = "candidates"

    @property
    def scored_path(self) -> Path:
        return self.path / "scored.xyz"

    @property
    def picked_path(self) -> Path:
        """Absent when nothing was picked (the iteration converged, or every candidate was known)."""
        return self.path / "picked.xyz"

    @property
    def convergence_path(self) -> Path:
        return self.path / "convergence.json"

    @property
    def convergence(self) -> dict:
        return json.loads(self.convergence_path.read_text())

    @property
    def histogram_path(self) -> Path:
        return self.path / "deviation_histogram.png"


@dataclass(frozen=True)
class SelectedFrames(Artifact):
    """The batch the loop put in the inbox: a copy of the file, and batch.json (its name,
    labeller, iteration and where its frames came from)."""

    asset = "selected_frames"

    @property
    def frames_path(self) -> Path:
        return self.path / "batch.xyz"

    @property
    def record_path(self) -> Path:
        return self.path / "batch.json"

    @property
    def record(self) -> dict:
        return json.loads(self.record_path.read_text())


@dataclass(frozen=True)
class SpectrumTrajectories(Artifact):
    """The MD a model's spectra are made of: one file per trajectory (its NVE positions,
    energies and temperatures, and the dipoles and polarizabilities predicted along it), and
    trajectories.json (the settings, the models, and each trajectory's start and energy drift)."""

    asset = "spectrum_trajectories"

    @property
    def starts_path(self) -> Path:
        """The starting structures, in the order trajectories take them (trajectory i: start i mod n)."""
        return self.path / "starts.xyz"

    def trajectory_path(self, index: int) -> Path:
        return self.path / f"trajectory-{index:03d}.npz"

    @property
    def record_path(self) -> Path:
        return self.path / "trajectories.json"

    @property
    def record(self) -> dict:
        return json.loads(self.record_path.read_text())


@dataclass(frozen=True)
class Spectra(Artifact):
    """A spectrum averaged over the trajectories: spectrum.csv (wavenumber and intensities),
    spectrum.json (settings, peaks, and the harmonic references' peaks beside them) and its plot."""

    @property
    def table_path(self) -> Path:
        return self.path / "spectrum.csv"

    @property
    def report_path(self) -> Path:
        return self.path / "spectrum.json"

    @property
    def report(self) -> dict:
        return json.loads(self.report_path.read_text())

    @property
    def plot_path(self) -> Path:
        return self.path / "spectrum.png"


@dataclass(frozen=True)
class IRSpectrum(Spectra):
    asset = "ir_spectrum"


@dataclass(frozen=True)
class RamanSpectrum(Spectra):
    asset = "raman_spectrum"


CATALOGUE: dict[str, type[Artifact]] = {
    kind.asset: kind
    for kind in (
        LabelledFrames,
        Dataset,
        Split,
        PretrainingFrames,
        FoundationModel,
        ReplaySubset,
        FinetunedModel,
        ParityReport,
        ChampionModel,
        StrategyArm,
        StrategyComparison,
        CommitteeMember,
        Exploration,
        Candidates,
        SelectedFrames,
        SpectrumTrajectories,
        IRSpectrum,
        RamanSpectrum,
    )
}
