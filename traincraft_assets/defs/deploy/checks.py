"""Quality gates on the challenger (`finetuned_model`), as asset checks shown in the UI.

One step evaluates every gate of core/gates.py (one GPU pod on the cluster, one config block
for the thresholds). Not blocking: the champion decision reads the verdicts and records why a
challenger was or was not promoted. The step reads champion_model only through the parity
report, which has evaluated the serving champion on the challenger's valid frames (see
core/gates.config_types): declared as read here, it would make Dagster run the gates after the
champion decision, which needs their verdicts, in any run holding both.
"""

import dagster as dg

from traincraft_assets.core.artifacts import FinetunedModel, ParityReport, Split
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.gates import GATES, GateSettings, judge
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.steps import CheckSpec, Step, artifact_check

GateConfig = settings_config("GateConfig", GateSettings, "Thresholds of the quality gates (core/gates.py).")
GATE_CHECKS = {gate: f"gate_{gate}" for gate in GATES}
JUDGED_MODEL = "model_sha256"  # each verdict's metadata names the model it judged


def gate_verdicts(dagster_instance: dg.DagsterInstance, model_sha: str) -> list[dict] | None:
    """Every gate's latest verdict on this model, or None if some gate has not judged it."""
    verdicts = instance.check_verdicts(
        dagster_instance, FinetunedModel.asset, list(GATE_CHECKS.values()), JUDGED_MODEL, model_sha
    )
    if verdicts is None:
        return None
    return [
        {"gate": gate, **{k: v for k, v in verdict.items() if k != "check"}} for gate, verdict in zip(GATES, verdicts)
    ]


@artifact_check(
    FinetunedModel,
    reads=[ParityReport, Split],
    specs=[CheckSpec(GATE_CHECKS[gate], description) for gate, description in GATES.items()],
    config=GateConfig,
    profile="gpu",
)
def quality_gates(step: Step, config):
    """Accuracy, forgetting, kinds of frames, learning curve and MD stability of the latest
    fine-tuned model."""
    model = step.read(FinetunedModel)
    evaluated = step.latest(ParityReport)
    report = evaluated.report if evaluated else None
    if report is not None and report["data_versions"].get(FinetunedModel.asset) != model.sha256:
        report = None  # the latest report is of another model
    valid = read_frames(step.open(Split, model.manifest["data_versions"][Split.asset]).valid_path)
    for verdict in judge(model, report, valid, config.to_settings(), resolve_device("auto")):
        yield dg.AssetCheckResult(
            check_name=GATE_CHECKS[verdict.gate],
            asset_key=dg.AssetKey(FinetunedModel.asset),
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=verdict.reason,
            metadata={JUDGED_MODEL: model.sha256, **{k: v for k, v in verdict.numbers.items() if v is not None}},
        )
