"""The gates as the UI shows them: one check per gate on finetuned_model, evaluated in the finetune
run of the session's tiny graph, each with its reason and the model it judged."""

import dagster as dg

from traincraft_assets.core.gates import GATES
from traincraft_assets.defs.deploy.checks import gate_verdicts


def test_the_finetune_run_evaluates_every_gate_on_the_model_it_trained(graph_run):
    """Read as the champion reads them: each gate's latest finished verdict on this model (a
    later run that failed before its checks leaves them planned, not judged)."""
    model = graph_run.latest("finetuned_model")
    verdicts = gate_verdicts(graph_run.instance, model.metadata["artifact_sha256"].value)
    assert verdicts is not None and [v["gate"] for v in verdicts] == list(GATES)
    assert all(v["reason"] for v in verdicts)
    [accuracy] = [v for v in verdicts if v["gate"] == "accuracy"]
    report = graph_run.latest("parity_report").metadata
    beats = report["rmse_f_mev_per_a"].value < report["foundation_rmse_f_mev_per_a"].value and (
        report["rmse_e_mev_per_atom"].value < report["foundation_rmse_e_mev_per_atom"].value
    )
    assert accuracy["passed"] == beats  # the verdict follows the parity report's numbers
    [kinds] = [v for v in verdicts if v["gate"] == "config_types"]
    assert "judged: valid set against the foundation, held-out replay frames on the replay head" in kinds["reason"]
    assert gate_verdicts(graph_run.instance, "0" * 64) is None  # a model no gate judged


def test_the_automation_sensor_asks_for_a_champion_decision_after_a_fine_tune(graph_copy):
    """What the daemon's automation sensor does after the finetune run: request champion_model
    (its condition is eager on finetuned_model and parity_report), but not for a new split
    alone, which it reads only through the models' manifests."""
    [sensor] = [s for s in graph_copy.defs.sensors if s.name == "automation_sensor"]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    baseline = dg.evaluate_automation_conditions(defs=graph_copy.defs, instance=graph_copy.instance)
    assert baseline.get_num_requested(dg.AssetKey("champion_model")) == 0  # nothing new since it looked
    graph_copy.materialize(["split"], {"ops": {"split": {"config": {"valid_fraction": 0.5, "salt": "another"}}}})
    quiet = dg.evaluate_automation_conditions(
        defs=graph_copy.defs, instance=graph_copy.instance, cursor=baseline.cursor
    )
    assert quiet.get_num_requested(dg.AssetKey("champion_model")) == 0
    graph_copy.materialize(["parity_report"])  # an upstream of champion_model updates
    after = dg.evaluate_automation_conditions(defs=graph_copy.defs, instance=graph_copy.instance, cursor=quiet.cursor)
    assert after.get_num_requested(dg.AssetKey("champion_model")) == 1
