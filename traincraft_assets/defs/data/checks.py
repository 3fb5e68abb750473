"""Checks on `labelled_frames` (did the labeller label every frame?) and on `dataset` (a
blocking health check; next to the zero-shot foundation, a warning when E0s look inconsistent
and a blocking check for force labels in the wrong unit)."""

import dagster as dg
import numpy as np

from traincraft_assets.core.artifacts import Dataset, FoundationModel, LabelledFrames
from traincraft_assets.core.evaluation import evaluate
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.health import (
    LabelScale,
    UnitCheckSettings,
    dataset_problems,
    energy_scales,
    force_scales,
    unlabelled_frames,
)
from traincraft_assets.core.models import known_frames, load_model
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.steps import CheckSpec, Step, artifact_check

MAX_LISTED = 20
# MACE's multihead guide: an initial error above 0.4 eV/atom usually means the data's E0s do
# not match the foundation's reference energies.
E0_WARNING_EV_PER_ATOM = 0.4


@artifact_check(LabelledFrames)
def batch_fully_labelled(step: Step) -> dg.AssetCheckResult:
    """Every frame of the batch came back from the labeller with energy and forces; a batch with
    frames the labeller could not label is partial (dataset_health then stops training on it)."""
    batch = step.partition
    frames = read_frames(step.read(LabelledFrames, batch).frames_path)
    missing = unlabelled_frames(frames)
    listed = "\n".join(f"- {p}" for p in missing[:MAX_LISTED])
    return dg.AssetCheckResult(
        passed=not missing,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"partial: {len(missing)} of {len(frames)} frames of batch {batch!r} were not labelled:\n{listed}\n"
            "Label them again (fix the labeller's input or settings) and ingest the result as a new "
            "batch, or retire this one."
            if missing
            else f"all {len(frames)} frames labelled"
        ),
        metadata={"n_unlabelled": len(missing), "frames": dg.MetadataValue.json([p.frame for p in missing])},
    )


@artifact_check(Dataset, reads=[FoundationModel], blocking=True)
def dataset_health(step: Step) -> dg.AssetCheckResult:
    """NaN/inf or missing labels, empty frames, overlapping atoms, elements the foundation lacks.

    Blocking: training on any of these is silently wrong, so nothing downstream runs.
    """
    frames = read_frames(step.read(Dataset).frames_path)
    foundation = step.latest(FoundationModel)
    covered = foundation.info["elements"] if foundation else None
    problems = dataset_problems(frames, covered)
    if problems:
        listed = "\n".join(f"- {p}" for p in problems[:MAX_LISTED])
        more = f"\n- ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        description = (
            f"{len(problems)} problem(s) in {len(frames)} frames:\n{listed}{more}\n"
            "Fix or drop these frames in their batch files, ingest the corrected files under new "
            'names, take the broken batches out with `traincraft retire BATCH --reason "..."`, '
            "and materialize again."
        )
    else:
        description = f"{len(frames)} frames passed" + (
            "" if covered is not None else " (element coverage not checked: no foundation_model yet)"
        )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "n_problems": len(problems),
            "problems": dg.MetadataValue.json([p.as_row() for p in problems[:200]]),
        },
    )


LabelUnitsConfig = settings_config(
    "LabelUnitsConfig", UnitCheckSettings, "Whether labels on another scale than the foundation's block training."
)


ENERGY_CHECK = CheckSpec(
    "foundation_energy_consistency", "the zero-shot foundation's energy error on the dataset (E0s that match)"
)
UNITS_CHECK = CheckSpec(
    "label_units_match_foundation", "force and energy labels on the zero-shot foundation's scale (units)", blocking=True
)


def _not_checked(spec: CheckSpec, severity: dg.AssetCheckSeverity, why: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=spec.name,
        passed=True,
        severity=severity,
        description=f"not checked: {why}",
        metadata={"checked": False},
    )


# both run the foundation over the whole dataset once, like parity_report: a GPU step
@artifact_check(
    Dataset, reads=[FoundationModel], specs=[ENERGY_CHECK, UNITS_CHECK], config=LabelUnitsConfig, profile="gpu"
)
def foundation_agreement(step: Step, config):
    """The labels next to the zero-shot foundation: energies off by more than 0.4 eV/atom mean
    inconsistent E0s (a warning); force labels, or the spread of energy labels, on another scale
    than its predictions (core.health.LabelScale) mean a unit mix-up (blocking, unless
    block_on_unit_mismatch is false)."""
    foundation = step.latest(FoundationModel)
    if foundation is None:  # a warning check must not fail the run: say it could not look yet
        why = "no foundation_model yet (materialize it, then this check again)."
        yield _not_checked(ENERGY_CHECK, dg.AssetCheckSeverity.WARN, why)
        yield _not_checked(UNITS_CHECK, dg.AssetCheckSeverity.ERROR, why)
        return
    frames = read_frames(step.read(Dataset).frames_path)
    frames = known_frames(frames, model := load_model(foundation.model_path))
    evaluation = evaluate(model, frames)
    yield _energy_consistency(evaluation.overall["rmse_e_per_atom"], len(frames))
    predictions = evaluation.predictions
    scales = force_scales(frames, [p.forces for p in predictions]) + energy_scales(
        frames, [p.energy for p in predictions]
    )
    yield _label_units(scales, config.block_on_unit_mismatch)


def _energy_consistency(rmse: float, n_frames: int) -> dg.AssetCheckResult:
    """Warn when the zero-shot foundation's energy error exceeds 0.4 eV/atom (inconsistent E0s)."""
    if not np.isfinite(rmse):
        return dg.AssetCheckResult(
            check_name=ENERGY_CHECK.name,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"not evaluated: none of the {n_frames} frames the foundation covers has a finite "
                "REF_energy. See dataset_health."
            ),
        )
    passed = rmse <= E0_WARNING_EV_PER_ATOM
    description = f"zero-shot foundation energy RMSE {rmse:.3f} eV/atom on {n_frames} frames" + (
        ""
        if passed
        else f" is above {E0_WARNING_EV_PER_ATOM} eV/atom: the data's reference energies "
        "likely do not match the foundation's E0s (different DFT code, functional, "
        "pseudopotentials or energy zero). Give finetuned_model e0s 'dict' or 'file' with "
        "isolated-atom energies from your own DFT setup (spin-polarised), and check the "
        "energy units are eV."
    )
    return dg.AssetCheckResult(
        check_name=ENERGY_CHECK.name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"foundation_rmse_e_ev_per_atom": rmse, "threshold_ev_per_atom": E0_WARNING_EV_PER_ATOM},
    )


def _label_units(scales: list[LabelScale], block: bool) -> dg.AssetCheckResult:
    """Fail (blocking) when a batch's forces or energies are off the foundation's by a unit-like factor."""
    off = [scale for scale in scales if not scale.plausible]
    listed = "\n".join(f"- {scale}" for scale in (off or scales)[:MAX_LISTED])
    if off:
        description = (
            f"{len(off)} batch label(s) on another scale than the zero-shot foundation's predictions, a "
            f"likely unit mix-up:\n{listed}\nConvert the labels to eV/Å and eV, ingest the corrected files, "
            "retire these batches, and materialize again. If the labels are right and the foundation "
            "is off, set block_on_unit_mismatch: false."
            + ("" if block else "\n(Not blocking: block_on_unit_mismatch is false.)")
        )
    else:
        description = (
            f"labels on the foundation's scale:\n{listed}"
            if scales
            else ("not judged: no batch has forces far enough from equilibrium, or energies spread enough, to compare")
        )
    by_label: dict[str, dict] = {"forces": {}, "energy": {}}
    for scale in scales:
        by_label[scale.label][scale.batch] = {
            "scale": round(scale.scale, 4),
            "correlation": round(scale.correlation, 3),
        }
    return dg.AssetCheckResult(
        check_name=UNITS_CHECK.name,
        passed=not off or not block,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={"scales": dg.MetadataValue.json(by_label)},
    )
