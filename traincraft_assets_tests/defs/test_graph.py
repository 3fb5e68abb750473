"""The whole graph, materialized for real with tiny settings (see conftest.graph_run)."""

import json
import math
from pathlib import Path

import dagster as dg
import pytest

from traincraft_assets.core.frames import elements, read_frames

# The keys users read (a contract), written out here, not imported from the code: renaming one fails here.
CONTRACT_PARITY_KEYS = {
    "rmse_e_mev_per_atom",
    "rmse_f_mev_per_a",
    "rmse_s_mev_per_a3",
    "foundation_rmse_e_mev_per_atom",
    "foundation_rmse_f_mev_per_a",
    "replay_rmse_f_mev_per_a",
    "n_valid",
    "report_path",
}
ASSETS = [
    "pretraining_frames",
    "foundation_model",
    "dataset",
    "split",
    "replay_subset",
    "finetuned_model",
    "parity_report",
]

pytestmark = pytest.mark.integration


def test_every_asset_is_materialized_with_its_sha256_as_data_version(graph_run):
    for batch in ("cu_surfaces.xyz", "cu_defects.xyz"):
        event = graph_run.latest("labelled_frames", batch)
        assert event is not None, batch
        assert event.metadata["n_frames"].value == 8
        assert event.metadata["elements"].value == ["Cu"]
    for asset in ASSETS:
        event = graph_run.latest(asset)
        assert event is not None, f"{asset} was not materialized"
        sha = event.tags["dagster/data_version"]
        artifact = Path(event.metadata["artifact_path"].value)
        assert artifact == graph_run.store / asset / sha and artifact.is_dir()


def test_model_lineage_records_the_exact_input_versions(graph_run):
    model = graph_run.latest("finetuned_model")
    for upstream in ("split", "replay_subset", "foundation_model"):
        assert (
            model.tags[f"dagster/input_data_version/{upstream}"]
            == (graph_run.latest(upstream).tags["dagster/data_version"])
        )
    manifest = json.loads(Path(model.metadata["manifest_path"].value).read_text())
    assert manifest["data_versions"] == {
        up: graph_run.latest(up).tags["dagster/data_version"] for up in ("split", "replay_subset", "foundation_model")
    }
    assert manifest["foundation"]["sha256"] == graph_run.latest("foundation_model").metadata["model_sha256"].value
    assert manifest["strategy"]["strategy"] == "multihead"
    assert manifest["heads"] == ["energy", "forces"]
    assert manifest["e0s"]["mode"] == "foundation"
    argv = manifest["argv"]
    assert argv[1:3] == ["-m", "mace.cli.run_train"]
    assert argv[argv.index("--force_mh_ft_lr") + 1] == "True"
    assert "--loss" not in argv  # MACE would replace it with universal in multihead mode
    # what MACE used, from its own log: universal loss, our lr, stress fitted where frames have it
    effective = manifest["effective"]
    assert effective["loss"]["class"] == "UniversalLoss" and effective["lr"] == float(argv[argv.index("--lr") + 1])
    assert set(effective["heads"]) == {"Default", "pt_head"}
    report = graph_run.latest("parity_report").metadata
    assert report["trained_properties"].value == {h: r["fitted"] for h, r in effective["heads"].items()}
    assert {"energy", "forces"} <= set(report["trained_properties"].value["Default"])
    for key in ("replay_rmse_e_mev_per_atom", "replay_rmse_e_foundation_mev_per_atom", "forgetting_e_ratio"):
        assert report[key].value > 0, key
    assert set(manifest["package_versions"]) >= {"mace-torch", "torch", "dagster", "ase"}
    assert manifest["split_sizes"]["train"] + manifest["split_sizes"]["valid"] == 16
    assert manifest["start_time"] <= manifest["end_time"]
    assert manifest["device"] == "cpu"
    assert manifest["resumed_from_epoch"] is None  # trained in one go
    assert not any((graph_run.store / ".training").glob("*"))  # published: work directory released


def test_every_step_read_only_artifacts_of_its_dependencies(graph_run):
    """Lineage by construction, seen from the instance: each materialization lists the artifact
    versions its step read (`read_artifacts`), each of an upstream the graph draws (or of the
    asset itself: a champion reads the one serving), at a version that exists in the store."""
    defs = graph_run.defs
    graph = defs.resolve_asset_graph()
    seen = set()
    for key in graph.get_all_asset_keys():
        asset = key.to_user_string()
        parents = {parent.to_user_string() for parent in graph.get(key).parent_keys}
        for record in graph_run.instance.fetch_materializations(key, limit=100).records:
            reads = record.asset_materialization.metadata["read_artifacts"].value
            for read in reads:
                assert read["asset"] in parents | {asset}, f"{asset} read {read['asset']}, not one of {parents}"
                assert (graph_run.store / read["asset"] / read["data_version"]).is_dir()
                seen.add((asset, read["asset"]))
    assert {("finetuned_model", "split"), ("parity_report", "finetuned_model"), ("dataset", "labelled_frames")} <= seen


def test_finetuned_model_metadata_and_learning_curve(graph_run):
    meta = graph_run.latest("finetuned_model").metadata
    assert meta["strategy"].value == "multihead"
    assert meta["epochs_run"].value == 2
    assert Path(meta["model_path"].value).is_file()
    assert Path(meta["deploy_model_path"].value).name == "deploy.model"  # multihead: target head only
    curve = {(r.data["epoch"], r.data["head"]): r.data for r in meta["learning_curve"].value.records}
    assert {(-1, "Default"), (0, "Default"), (1, "Default"), (1, "pt_head")} <= set(curve)
    assert curve[(1, "Default")]["train_loss"] > 0 and curve[(1, "pt_head")]["train_loss"] is None
    # checkpoints are not part of the published artifact; the best model is
    assert not (Path(meta["model_path"].value).parent / "checkpoints").exists()


def test_parity_report_contract(graph_run):
    meta = graph_run.latest("parity_report").metadata
    assert set(meta) >= CONTRACT_PARITY_KEYS
    report = json.loads(Path(meta["report_path"].value).read_text())
    for key in CONTRACT_PARITY_KEYS - {"report_path"}:
        assert report[key] == pytest.approx(meta[key].value, nan_ok=True)
    valid = read_frames(
        graph_run.store / "split" / graph_run.latest("split").tags["dagster/data_version"] / "valid.xyz"
    )
    assert meta["n_valid"].value == len(valid) > 0
    assert meta["rmse_f_mev_per_a"].value > 0 and meta["foundation_rmse_f_mev_per_a"].value > 0
    rows = {row["config_type"]: row for row in report["rows"]}
    assert rows["all"]["n_frames"] == len(valid)
    assert set(rows) - {"all"} == {a.info["config_type"] for a in valid}
    assert report["finetuned_head"] == "Default"  # the target head, never the replay head


def _png_size(markdown: str) -> tuple[int, int]:
    import base64
    import struct

    png = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_parity_report_shows_every_table_row_and_readable_figures(graph_run):
    """What the asset page renders: every per-config_type row parses (a label no frame of a kind
    carries is an empty cell, not NaN, which the UI cannot parse and hides the row), and the
    parity, forgetting and learning-curve figures are embedded at a readable size."""
    meta = graph_run.latest("parity_report").metadata
    report = json.loads(Path(meta["report_path"].value).read_text())
    records = [record.data for record in meta["per_config_type"].value.records]
    assert [r["config_type"] for r in records] == [row["config_type"] for row in report["rows"]]
    for record in records:
        json.loads(json.dumps(record, allow_nan=False))  # what the UI parses
    assert any(value is None for record in records for value in record.values())  # some kind lacks stress
    for name in ("parity_plot", "forgetting_plot", "learning_curve"):
        width, height = _png_size(meta[name].value)
        assert width >= 1000 and height >= 300, (name, width, height)
    assert (Path(meta["report_path"].value).parent / "learning_curve.png").stat().st_size > 10_000


def test_parity_numbers_match_an_independent_ase_calculator_evaluation(graph_run):
    """The batched evaluation against MACE's own ASE calculator, frame by frame."""
    import numpy as np
    from mace.calculators import MACECalculator

    meta = graph_run.latest("parity_report").metadata
    model = Path(graph_run.latest("finetuned_model").metadata["model_path"].value)
    split = graph_run.store / "split" / graph_run.latest("split").tags["dagster/data_version"]
    calc = MACECalculator(model_paths=str(model), device="cpu", default_dtype="float32", head="Default")
    dforces, denergy = [], []
    for atoms in read_frames(split / "valid.xyz"):
        reference_f, reference_e = atoms.arrays["REF_forces"], atoms.info["REF_energy"]
        atoms.calc = calc
        dforces.append((atoms.get_forces() - reference_f).ravel())
        denergy.append((atoms.get_potential_energy() - reference_e) / len(atoms))
    rmse_f = 1000 * np.sqrt(np.mean(np.concatenate(dforces) ** 2))
    rmse_e = 1000 * np.sqrt(np.mean(np.square(denergy)))
    assert meta["rmse_f_mev_per_a"].value == pytest.approx(rmse_f, rel=1e-4)
    assert meta["rmse_e_mev_per_atom"].value == pytest.approx(rmse_e, rel=1e-3, abs=1e-3)
    assert (Path(meta["report_path"].value).parent / "parity_valid.png").stat().st_size > 10_000


def test_replay_subset_holds_only_target_elements_with_reference_labels(graph_run):
    artifact = Path(graph_run.latest("replay_subset").metadata["artifact_path"].value)
    selected, heldout = read_frames(artifact / "replay.xyz"), read_frames(artifact / "heldout.xyz")
    assert len(selected) == 3 and len(heldout) == 1
    assert elements(selected + heldout) == ["Cu"]
    assert all("REF_energy" in a.info and "REF_forces" in a.arrays for a in selected)
    from traincraft_assets.core.frames import fingerprint

    assert not {fingerprint(a) for a in selected} & {fingerprint(a) for a in heldout}


def test_finetuning_warns_when_it_replays_fewer_frames_than_it_trains_on(graph_run):
    """The tiny graph replays 3 frames for a dozen target frames: the run log says so, with the
    fix, before MACE starts."""
    import logging

    record = graph_run.instance.fetch_materializations(dg.AssetKey("finetuned_model"), limit=1).records[0]
    n_train = int(graph_run.latest("split").metadata["n_train"].value)
    entries = [e for e in graph_run.instance.all_logs(record.run_id) if e.step_key == "finetuned_model"]
    warning = next(e for e in entries if e.level == logging.WARNING and "replay frames for" in e.user_message)
    assert f"3 replay frames for {n_train} target training frames" in warning.user_message
    assert "raise replay_subset's num_samples" in warning.user_message
    assert warning.timestamp < next(e.timestamp for e in entries if e.user_message.startswith("epoch "))


def test_checks_ran_and_passed_on_demo_data(graph_run):
    for check in ("dataset_health", "foundation_energy_consistency"):
        record = graph_run.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("dataset"), check)]
        )[dg.AssetCheckKey(dg.AssetKey("dataset"), check)]
        assert record.status.value == "SUCCEEDED", check


def test_parity_report_evaluates_the_split_the_model_was_trained_on(graph_copy):
    """Re-splitting after training must not put the model's training frames into 'valid'."""
    project = graph_copy
    trained_on = project.latest("split").tags["dagster/data_version"]
    project.materialize(["split"], {"ops": {"split": {"config": {"valid_fraction": 0.5, "salt": "other"}}}})
    assert project.latest("split").tags["dagster/data_version"] != trained_on

    project.materialize(["parity_report"])
    report = json.loads(Path(project.latest("parity_report").metadata["report_path"].value).read_text())
    assert report["data_versions"]["split"] == trained_on
    # Dagster's input tags name the latest split; the step records the one it really opened
    metadata = project.latest("parity_report")
    read = {r["asset"]: r["data_version"] for r in metadata.metadata["read_artifacts"].value}
    assert read["split"] == trained_on != metadata.tags["dagster/input_data_version/split"]
    trained_valid = read_frames(project.store / "split" / trained_on / "valid.xyz")
    assert report["n_valid"] == len(trained_valid)


def test_impossible_training_settings_fail_the_step_before_any_training(graph_copy):
    before = graph_copy.latest("finetuned_model").tags["dagster/data_version"]
    result = graph_copy.materialize(
        ["finetuned_model"],
        {"ops": {"finetuned_model": {"config": {"strategy": "naive", "freeze": 9, "lora": True}}}},
        raise_on_error=False,
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data
    description = data.user_failure_data.description
    assert "freeze must be 1-6" in description and "choose freeze or lora" in description  # all at once
    assert graph_copy.latest("finetuned_model").tags["dagster/data_version"] == before
    assert not any((graph_copy.store / ".training").glob("*"))  # nothing started


def test_the_demo_ends_with_a_plain_summary_that_leads_with_what_to_read(graph_run):
    """Valid errors against zero-shot first, then what the replay head kept of the foundation,
    the gates; the fine-tuned head's figures on the foundation's frames only after the words
    that say they hold the change of theory it learned."""
    from traincraft_assets.app import demo
    from traincraft_assets.core.gates import GATES
    from traincraft_assets.defs.instance import latest_metadata

    report = latest_metadata(graph_run.instance, "parity_report")
    verdicts = demo.verdicts(graph_run.instance)
    summary = demo.summary(report, verdicts)
    lines = summary.splitlines()
    assert f"{report['rmse_f_mev_per_a']:7.1f} vs {report['foundation_rmse_f_mev_per_a']:7.1f} meV/Å" in lines[1]
    f, f0 = report["rmse_f_mev_per_a"], report["foundation_rmse_f_mev_per_a"]
    factor = max(f, f0) / min(f, f0)
    assert f"({factor:.1f}x {'better' if f < f0 else 'WORSE'})" in lines[1]  # a factor >= 1, either way
    # the session's model is multihead: its replay head is scored on the same frames, and comes next
    assert math.isfinite(report["replay_head_forgetting_f_ratio"])
    assert f"{report['replay_head_forgetting_f_ratio']:.2f}x the foundation's force error" in lines[3]
    assert f"{sum(v['passed'] for v in verdicts)} of {len(GATES)} passed" in summary
    assert all(v["reason"] in summary for v in verdicts if not v["passed"])
    raw = f"{report['forgetting_f_ratio']:.2f}x (forces)"
    [explained] = [line for line in lines if raw in line]
    assert "change of theory" in explained and explained.index("change of theory") < explained.index(raw)
    assert lines.index(explained) > lines.index(next(line for line in lines if line.startswith("Quality gates")))
    assert str(report["report_path"]) in summary and "{" not in summary  # words, not a JSON dump


def test_a_foundation_trained_here_is_not_trained_again_for_the_same_recipe(graph_copy):
    """`--select 'not group:comparison and not group:loop and not group:spectra'` re-materializes foundation_model: an unchanged scratch
    recipe (settings and pool) re-records the stored model instead of training again."""
    from traincraft_assets_tests.conftest import TINY_RUN_CONFIG

    first = graph_copy.instance.fetch_materializations(dg.AssetKey("foundation_model"), limit=1).records[0]
    assert first.asset_materialization.metadata["recipe"].value
    result = graph_copy.materialize(
        ["foundation_model"], {"ops": {"foundation_model": TINY_RUN_CONFIG["ops"]["foundation_model"]}}
    )
    again = graph_copy.latest("foundation_model")
    assert again.metadata["reused_from_run"].value == first.run_id
    assert again.tags["dagster/data_version"] == first.asset_materialization.tags["dagster/data_version"]
    logs = [entry.user_message for entry in graph_copy.instance.all_logs(result.run_id)]
    assert any("instead of training again" in line for line in logs)
    assert not any(line.startswith("epoch ") for line in logs)  # no MACE epoch ran
