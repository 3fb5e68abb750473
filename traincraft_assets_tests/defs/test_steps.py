"""defs/steps.py: an asset states once what it reads; its dependencies, its preflight and its
lineage follow from that. Real Dagster runs of small throwaway assets on a real store."""

import dagster as dg
import pytest

from traincraft_assets.core.artifacts import Dataset, FinetunedModel, LabelledFrames, ParityReport, Split
from traincraft_assets.core.split import SplitSettings
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.definitions import ASSETS, CHECKS, build_defs
from traincraft_assets.defs.k8s import Deployment
from traincraft_assets.defs.resources import StoreResource
from traincraft_assets.defs.steps import EveryPartition, Step, artifact_asset


def _run(asset, tmp_path, run_config=None):
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        return dg.materialize(
            [asset.build(Deployment())],
            instance=instance,
            resources={"store": StoreResource(root=str(tmp_path / "store"))},
            run_config=run_config or {},
            raise_on_error=False,
        )


def _failure(result) -> str:
    [failure] = [event for event in result.all_events if event.is_step_failure]
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.cause.message


def test_a_step_that_reads_an_artifact_it_does_not_declare_fails_naming_what_to_add(tmp_path):
    @artifact_asset(ParityReport, reads=[FinetunedModel])
    def parity_report(step: Step):
        step.latest(Split)

    message = _failure(_run(parity_report, tmp_path))
    assert "parity_report read 'split', which it does not declare" in message
    assert "Add Split to its reads=[...]" in message


def test_preflight_runs_before_the_body_of_every_step(tmp_path):
    """The run's settings are judged before any step works (strategy_arm once read its inputs
    first); the body never starts."""
    started = []
    Config = settings_config("ProbeConfig", SplitSettings, "a probe")

    @artifact_asset(Split, config=Config, preflight=lambda config, run: ["this can never work"])
    def split(step: Step, config):
        started.append(True)

    message = _failure(_run(split, tmp_path))
    assert "this run's settings cannot work; nothing was run or written" in message
    assert "split: this can never work" in message and not started


def test_an_asset_s_dependencies_are_the_artifacts_it_reads():
    defs = build_defs()
    graph = defs.resolve_asset_graph()
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
