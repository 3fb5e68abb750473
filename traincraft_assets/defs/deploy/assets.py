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
from traincraft_assets.core.manifest import model_level, utc_now
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.deploy.checks import gate_verdicts
from traincraft_assets.defs.steps import Step, artifact_asset

ChampionConfig = settings_config("ChampionConfig", HandDecision, "Leave empty to let the rule decide.")
HISTORY_ROWS = 50
DECISION = "decision"  # the metadata entry (and observation) holding each decision


def _model_version(step: Step, ref: str) -> str:
    """A finetuned_model version from its sha256 or the id of the run that materialized it."""
    for record in instance.recent_materializations(step.context.instance, FinetunedModel.asset, 200):
        if ref in (instance.version_of(record), record.run_id):
            return instance.version_of(record)
    raise dg.Failure(
        f"no finetuned_model was materialized as version or by run {ref!r}. Give a model version "
        "(sha256) or a run id from the finetuned_model asset page.",
        allow_retries=False,
    )


def _history(step: Step, decision: dict) -> dg.MetadataValue:
    rows = [decision]
    for record in instance.recent_materializations(step.context.instance, ChampionModel.asset, HISTORY_ROWS - 1):
        earlier = record.asset_materialization.metadata.get(DECISION)
        if earlier is not None:
            rows.append(earlier.value)
    columns = ["decided_at", "by", "promoted", "challenger", "serving", "reason"]
    return dg.MetadataValue.table(
        [dg.TableRecord({c: str(r.get(c, "")) if c != "promoted" else bool(r.get(c)) for c in columns}) for r in rows],
        dg.TableSchema(columns=[dg.TableColumn(c, "bool" if c == "promoted" else "string") for c in columns]),
    )


@artifact_asset(
    ChampionModel,
    reads=[FinetunedModel, ParityReport, Split],
    config=ChampionConfig,
    profile="gpu",
    group_name="deploy",
    kinds={"mace"},
    # decides after each new challenger (a model and its report), not when only the split moves
    automation_condition=dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets(Split.asset)),
    output_required=False,  # no champion yet and the challenger not promoted: nothing to materialize
)
def champion_model(step: Step, config):
    """The model that serves: a challenger replaces it only when every gate passed and it beats
    it on the valid frames both were validated on."""
    current = step.latest(ChampionModel)
    serving = current.record["finetuned_model"] if current else None
    if config.promote:
        model = step.open(FinetunedModel, _model_version(step, config.promote))
        decision = by_hand(model.sha256, config.reason or "no reason given", serving)
    else:
        model = step.read(FinetunedModel)
        verdicts = gate_verdicts(step.context.instance, model.sha256)
        compared = None
        if serving and verdicts and all(v["passed"] for v in verdicts) and serving != model.sha256:
            champion = step.open(FinetunedModel, serving)
            valid = [
                read_frames(step.open(Split, m.manifest["data_versions"][Split.asset]).valid_path)
                for m in (model, champion)
            ]
            frames = common_valid(*valid, model_level(model.manifest))
            compared = (
                head_to_head(model, champion, frames, resolve_device("auto")) if frames else {"n_common_valid": 0}
            )
        decision = decide(model.sha256, verdicts, serving, compared)
    step.log.info(f"{'promoted' if decision.promoted else 'not promoted'}: {decision.reason}")
    if decision.promoted:
        report = step.latest(ParityReport)
        if report is not None and report.report["data_versions"].get(FinetunedModel.asset) != model.sha256:
            report = None
        current, _ = step.write(lambda out: fill_champion(out, model, report, decision))
    record = {**decision.as_dict(), "decided_at": utc_now()}
    if current is None:  # nothing serves yet: record the decision, materialize nothing
        step.context.log_event(
            dg.AssetObservation(
                asset_key=step.context.asset_key,
                description=f"no champion yet: {decision.reason}",
                metadata={DECISION: dg.MetadataValue.json(record)},
            )
        )
        return
    yield step.materialized(
        current,
        {
            "promoted": decision.promoted,
            "reason": decision.reason,
            "serving_finetuned_model": current.record["finetuned_model"],
            "challenger": decision.challenger,
            DECISION: dg.MetadataValue.json(record),
            "history": _history(step, record),
            "model_path": dg.MetadataValue.path(str(current.model_path)),
            **{k: v for k, v in decision.numbers.items() if isinstance(v, (int, float))},
        },
    )
