"""defs/steps.py: an asset states once what it reads; its dependencies, its preflight and its
lineage follow from that. Real Dagster runs of small throwaway assets on a real store."""

import json
from dataclasses import dataclass

import dagster as dg
import pytest

from traincraft_assets.core.artifacts import Dataset, LabelledFrames, Split
from traincraft_assets.core.split import SplitSettings
from traincraft_assets.core.store import Artifact
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.definitions import ASSETS, CHECKS, build_defs
from traincraft_assets.defs.k8s import Deployment
from traincraft_assets.defs.resources import StoreResource
from traincraft_assets.defs.steps import EveryPartition, Step, artifact_asset, artifact_check


@dataclass(frozen=True)
class Notes(Artifact):
    """A throwaway artifact kind: a text file."""

    asset = "probe_notes"


@dataclass(frozen=True)
class Summary(Artifact):
    asset = "probe_summary"


@dataclass(frozen=True)
class Stranger(Artifact):
    asset = "probe_stranger"


@artifact_asset(Notes)
def probe_notes(step: Step):
    """Publishes a small text artifact."""
    artifact, _ = step.write(lambda out: (out.path / "notes.txt").write_text("hello"))
    return step.materialized(artifact, {})


@artifact_asset(Summary, reads=[Notes])
def probe_summary(step: Step):
    """Reads what it declared, and records it."""
    notes = step.read(Notes)
    artifact, _ = step.write(
        lambda out: (out.path / "length.txt").write_text(str(len((notes.path / "notes.txt").read_text())))
    )
    return step.materialized(artifact, {})


def _run(assets, tmp_path, checks=()):
    (tmp_path / "home").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.materialize(
            [asset.build(Deployment()) for asset in assets] + [check.build(Deployment()) for check in checks],
            instance=instance,
            resources={"store": StoreResource(root=str(tmp_path / "store"))},
            raise_on_error=False,
        )
        materializations = {
            key.to_user_string(): instance.get_latest_materialization_event(key)
            for key in (dg.AssetKey(a.name) for a in assets)
        }
    return result, materializations


def _failure(result) -> str:
    [failure] = [event for event in result.all_events if event.is_step_failure]
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.cause.message


def test_a_step_records_the_artifact_versions_it_read(tmp_path):
    result, events = _run([probe_notes, probe_summary], tmp_path)
    assert result.success
    notes = events["probe_notes"].asset_materialization
    summary = events["probe_summary"].asset_materialization
    read = summary.metadata["read_artifacts"].value
    assert read == [{"asset": "probe_notes", "data_version": notes.tags["dagster/data_version"]}]
    assert summary.tags["dagster/input_data_version/probe_notes"] == read[0]["data_version"]
    assert json.loads(json.dumps(read))  # plain JSON, as the UI shows it


def test_a_step_that_reads_an_artifact_it_does_not_declare_fails_naming_what_to_add(tmp_path):
    @artifact_asset(Summary, reads=[Notes])
    def probe_summary(step: Step):
        step.latest(Stranger)

    message = _failure(_run([probe_notes, probe_summary], tmp_path)[0])
    assert "probe_summary read 'probe_stranger', which it does not declare" in message
    assert "Add Stranger to its reads=[...]" in message


def test_a_check_that_reads_an_artifact_it_does_not_declare_fails_too(tmp_path):
    @artifact_check(Notes)
    def notes_are_short(step: Step):
        step.latest(Stranger)

    result, _ = _run([probe_notes], tmp_path, checks=[notes_are_short])
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "notes_are_short read 'probe_stranger', which it does not declare" in str(failure.step_failure_data.error)


def test_preflight_runs_before_the_body_of_every_step(tmp_path):
    """The run's settings are judged before any step works (strategy_arm once read its inputs
    first); the body never starts."""
    started = []
    probe_config = settings_config("ProbeConfig", SplitSettings, "a probe")

    @artifact_asset(Stranger, config=probe_config, preflight=lambda config, run: ["this can never work"])
    def probe_stranger(step: Step, config):
        started.append(True)

    message = _failure(_run([probe_stranger], tmp_path)[0])
    assert "this run's settings cannot work; nothing was run or written" in message
    assert "probe_stranger: this can never work" in message and not started


def test_an_asset_declares_its_preflight_once():
    with pytest.raises(ValueError, match="declared twice"):

        @artifact_asset(Split, config=settings_config("Again", SplitSettings, "again"))
        def split(step: Step, config):
            pass


def test_an_asset_s_dependencies_are_the_artifacts_it_reads():
    graph = build_defs().resolve_asset_graph()
    for recipe in ASSETS:
        declared = {(r.kind if isinstance(r, EveryPartition) else r).asset for r in recipe.reads}
        parents = {key.to_user_string() for key in graph.get(recipe.key).parent_keys}
        assert parents == declared, recipe.name
    dataset = graph.get(dg.AssetKey(Dataset.asset)).assets_def
    mapping = dataset.get_partition_mapping(dg.AssetKey(LabelledFrames.asset))
    assert isinstance(mapping, dg.AllPartitionMapping)  # every batch, as one dependency


@pytest.mark.parametrize("recipe", CHECKS, ids=lambda c: c.body.__name__)
def test_a_check_depends_on_what_it_reads_besides_its_asset(recipe):
    checks = build_defs().resolve_asset_graph()
    declared = {(r.kind if isinstance(r, EveryPartition) else r).asset for r in recipe.reads}
    keys = [key for key in checks.asset_check_keys if key.asset_key == dg.AssetKey(recipe.on.asset)]
    assert keys
    for key in keys:
        node = checks.get(key)
        deps = {dep.to_user_string() for dep in node.parent_entity_keys} - {recipe.on.asset}
        assert deps == declared, key
