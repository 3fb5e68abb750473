"""Quality gates on the challenger (`finetuned_model`), as asset checks shown in the UI.

One step evaluates all four gates of core/gates.py (one GPU pod on the cluster, one config
block for the thresholds). Not blocking: the champion decision reads the verdicts and records
why a challenger was or was not promoted.
"""

import dagster as dg

from traincraft_assets.core.artifacts import FinetunedModel, ParityReport, Split
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.gates import GATES, GateSettings, judge
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.k8s import GPU_STEP
from traincraft_assets.defs.lineage import latest_artifact, require_artifact
from traincraft_assets.defs.reports.assets import parity_report
from traincraft_assets.defs.resources import StoreResource
from traincraft_assets.defs.training.assets import finetuned_model

GateConfig = settings_config("GateConfig", GateSettings, "Thresholds of the quality gates (core/gates.py).")


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(f"gate_{gate}", asset=finetuned_model, additional_deps=[parity_report], description=doc)
        for gate, doc in GATES.items()
    ],
    **GPU_STEP,
)
def quality_gates(context: dg.AssetCheckExecutionContext, config: GateConfig, store: StoreResource):
    """Accuracy, forgetting, learning curve and MD stability of the latest fine-tuned model."""
    artifacts = store.store()
    model = require_artifact(context, artifacts, FinetunedModel)
    evaluated = latest_artifact(context, artifacts, ParityReport)
    report = evaluated.report if evaluated else None
    if report is not None and report["data_versions"].get(FinetunedModel.asset) != model.sha256:
        report = None  # the latest report is of another model
    valid = read_frames(artifacts.open(Split, model.manifest["data_versions"][Split.asset]).valid_path)
    settings = config.to_settings()
    for verdict in judge(model, report, valid, settings, resolve_device("auto")):
        yield dg.AssetCheckResult(
            check_name=f"gate_{verdict.gate}",
            asset_key=finetuned_model.key,
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=verdict.reason,
            metadata={"model_sha256": model.sha256, **{k: v for k, v in verdict.numbers.items() if v is not None}},
        )
