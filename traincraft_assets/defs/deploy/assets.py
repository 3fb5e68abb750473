"""champion_model: the fine-tuned model that serves, changed only on evidence (core/champion.py).

It runs after the fine-tuning run that made and gated a challenger (the automation sensor
requests it when finetuned_model and parity_report are updated), reads the gates' verdicts
from the instance, and either promotes the challenger (a new champion directory) or keeps the
champion (same data version) with the reason in the materialization. With config `promote`,
a person chooses (`traincraft promote` / `traincraft rollback`), recorded the same way.
"""

import dagster as dg

from traincraft_assets.core.artifacts import ChampionModel, FinetunedModel, ParityReport, Split
from traincraft_assets.core.champion import HandDecision, by_hand, common_valid, decide, fill_champion, head_to_head
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.gates import GATES
from traincraft_assets.core.manifest import utc_now
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.k8s import GPU_STEP
from traincraft_assets.defs.lineage import DATA_VERSION_TAG, latest_artifact, materialized, require_artifact
from traincraft_assets.defs.preflight import preflight
from traincraft_assets.defs.reports.assets import parity_report
from traincraft_assets.defs.resources import StoreResource
from traincraft_assets.defs.training.assets import finetuned_model

ChampionConfig = settings_config("ChampionConfig", HandDecision, "Leave empty to let the rule decide.")
HISTORY_ROWS = 50


def gate_verdicts(instance: dg.DagsterInstance, model_sha: str) -> list[dict] | None:
    """Every gate's latest verdict on this model, or None if some gate has not judged it."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    done = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
    verdicts = []
    for gate in GATES:
        key = dg.AssetCheckKey(finetuned_model.key, f"gate_{gate}")
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=20, status=done):
            evaluation = record.event.dagster_event.event_specific_data
            if evaluation.metadata.get("model_sha256", dg.MetadataValue.text("")).value == model_sha:
                verdicts.append({"gate": gate, "passed": evaluation.passed, "reason": evaluation.description})
                break
        else:
            return None
    return verdicts


def _model_version(instance: dg.DagsterInstance, ref: str) -> str:
    """A finetuned_model version from its sha256 or the id of the run that materialized it."""
    for record in instance.fetch_materializations(finetuned_model.key, limit=200).records:
        if ref in (record.asset_materialization.tags.get(DATA_VERSION_TAG), record.run_id):
            return record.asset_materialization.tags[DATA_VERSION_TAG]
    raise dg.Failure(
        f"no finetuned_model was materialized as version or by run {ref!r}. Give a model version "
        "(sha256) or a run id from the finetuned_model asset page.",
        allow_retries=False,
    )


def _history(instance: dg.DagsterInstance, decision: dict) -> dg.MetadataValue:
    rows = [decision]
    for record in instance.fetch_materializations(dg.AssetKey(ChampionModel.asset), limit=HISTORY_ROWS - 1).records:
        earlier = record.asset_materialization.metadata.get("decision")
        if earlier is not None:
            rows.append(earlier.value)
    columns = ["decided_at", "by", "promoted", "challenger", "serving", "reason"]
    return dg.MetadataValue.table(
        [dg.TableRecord({c: str(r.get(c, "")) if c != "promoted" else bool(r.get(c)) for c in columns}) for r in rows],
        dg.TableSchema(columns=[dg.TableColumn(c, "bool" if c == "promoted" else "string") for c in columns]),
    )


@dg.asset(
    deps=[finetuned_model, parity_report],
    code_version="1",
    group_name="deploy",
    kinds={"mace"},
    automation_condition=dg.AutomationCondition.eager(),
    output_required=False,  # no champion yet and the challenger not promoted: nothing to materialize
    **GPU_STEP,
)
def champion_model(context: dg.AssetExecutionContext, config: ChampionConfig, store: StoreResource):
    """The model that serves: a challenger replaces it only when every gate passed and it beats
    it on the valid frames both were validated on."""
    preflight(context, store)
    artifacts = store.store()
    current = latest_artifact(context, artifacts, ChampionModel)
    serving = current.record["finetuned_model"] if current else None
    if config.promote:
        model = artifacts.open(FinetunedModel, _model_version(context.instance, config.promote))
        decision = by_hand(model.sha256, config.reason or "no reason given", serving)
    else:
        model = require_artifact(context, artifacts, FinetunedModel)
        verdicts = gate_verdicts(context.instance, model.sha256)
        compared = None
        if serving and verdicts and all(v["passed"] for v in verdicts) and serving != model.sha256:
            champion = artifacts.open(FinetunedModel, serving)
            valid = [
                read_frames(artifacts.open(Split, m.manifest["data_versions"][Split.asset]).valid_path)
                for m in (model, champion)
            ]
            frames = common_valid(*valid)
            compared = (
                head_to_head(model, champion, frames, resolve_device("auto")) if frames else {"n_common_valid": 0}
            )
        decision = decide(model.sha256, verdicts, serving, compared)
    context.log.info(f"{'promoted' if decision.promoted else 'not promoted'}: {decision.reason}")
    if decision.promoted:
        report = latest_artifact(context, artifacts, ParityReport)
        if report is not None and report.report["data_versions"].get(FinetunedModel.asset) != model.sha256:
            report = None
        current, _ = artifacts.write(ChampionModel, lambda out: fill_champion(out, model, report, decision))
    record = {**decision.as_dict(), "decided_at": utc_now()}
    if current is None:  # nothing serves yet: record the decision, materialize nothing
        context.log_event(
            dg.AssetObservation(
                asset_key=context.asset_key,
                description=f"no champion yet: {decision.reason}",
                metadata={"decision": dg.MetadataValue.json(record)},
            )
        )
        return
    yield materialized(
        current,
        {
            "promoted": decision.promoted,
            "reason": decision.reason,
            "serving_finetuned_model": current.record["finetuned_model"],
            "challenger": decision.challenger,
            "decision": dg.MetadataValue.json(record),
            "history": _history(context.instance, record),
            "model_path": dg.MetadataValue.path(str(current.model_path)),
            **{k: v for k, v in decision.numbers.items() if isinstance(v, (int, float))},
        },
    )
