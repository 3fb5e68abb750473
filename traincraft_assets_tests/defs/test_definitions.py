"""The definitions as Dagster tooling loads them, and the example run configs."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from traincraft_assets.core.settings import SettingsError
from traincraft_assets.defs.definitions import build_defs

REPO = Path(__file__).resolve().parents[2]


def test_dagster_loads_the_module_without_errors():
    result = subprocess.run(
        [Path(sys.executable).parent / "dagster", "definitions", "validate", "-m", "traincraft_assets"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_offers_dagster_one_lazy_definitions_whatever_was_imported_before():
    """What `-m traincraft_assets` finds: one loader of the definitions, even once the `defs`
    subpackage is imported (Python binds a subpackage on its parent), and it builds them."""
    program = (
        "import inspect, traincraft_assets.defs.jobs, traincraft_assets, dagster as dg\n"
        "found = [n for n, v in inspect.getmembers(traincraft_assets) if isinstance(v, type(dg.definitions(lambda: dg.Definitions())))]\n"
        "print(found, type(traincraft_assets.definitions()).__name__)"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.split() == ["['definitions']", "Definitions"]


def test_assets_have_typed_config_code_versions_and_jobs():
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "labelled_frames",
        "dataset",
        "split",
        "pretraining_frames",
        "foundation_model",
        "replay_subset",
        "finetuned_model",
        "parity_report",
        "champion_model",
        "strategy_arm",
        "strategy_comparison",
        "committee",
        "exploration",
        "candidates",
        "selected_frames",
        "spectrum_trajectories",
        "ir_spectrum",
        "raman_spectrum",
    }
    for key in graph.get_all_asset_keys():
        assert graph.get(key).code_version, key
    job = defs.resolve_implicit_global_asset_job_def()
    configurable = {
        name
        for name in keys
        if getattr(job.graph.node_named(name).definition.config_schema.config_type, "fields", None)
    }
    # dataset merges what is there, the comparison tabulates what its arms made: nothing to set
    assert configurable == keys - {"dataset", "strategy_comparison"}
    # the foundation is staged by its own job, not retrained by every fine-tuning run
    finetune = defs.resolve_job_def("finetune")
    assert not finetune.graph.has_node_named("foundation_model")
    assert defs.resolve_job_def("stage_foundation").graph.has_node_named("foundation_model")
    # the champion decides in its own run, after the finetune run's gates have judged the model
    assert not finetune.graph.has_node_named("champion_model") and finetune.graph.has_node_named("quality_gates")
    # the loop's partitioned steps run one member or walk per run; judging and picking in one
    assert [defs.resolve_job_def(j).graph.node_names() for j in ("train_committee", "explore")] == [
        ["committee"],
        ["exploration"],
    ]
    assert set(defs.resolve_job_def("select_frames").graph.node_names()) == {"candidates", "selected_frames"}


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_run_configs_are_valid(path):
    """Each example is a valid -c file for `dagster asset materialize -m traincraft_assets`."""
    run_config = yaml.safe_load(path.read_text())
    job = build_defs().resolve_implicit_global_asset_job_def()
    dg.validate_run_config(job, run_config)


@pytest.mark.parametrize("path", sorted((REPO / "examples" / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_each_job_accepts_its_example_and_the_demo_settings_are_the_same(path):
    """`dagster job execute -j <job> -c examples/jobs/<job>.yaml` (docs: the asset graph, Jobs) is accepted as
    is, and a job's example says what examples/demo.yaml says for its steps (label_batch's shows
    a labeller the demo does not need)."""
    from traincraft_assets.defs.jobs import run_config_for

    job = build_defs().resolve_job_def(path.stem)
    example = yaml.safe_load(path.read_text())
    dg.validate_run_config(job, example)
    assert example["ops"], path
    if path.stem != "label_batch":
        demo = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())
        assert example == run_config_for(job, demo)
    command = f"-j {path.stem} -c examples/jobs/{path.name}"
    assert command in path.read_text() and command in (REPO / "docs" / "graph.md").read_text()


def test_the_run_config_file_gives_each_job_its_defaults(monkeypatch, tmp_path):
    """What sensor and schedule runs (which carry no config) run with; a person's config still wins."""
    monkeypatch.setenv("TRAINCRAFT_RUN_CONFIG", str(REPO / "examples" / "demo.yaml"))
    jobs = build_defs()
    demo = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())["ops"]
    stage = jobs.resolve_job_def("stage_foundation")
    resolved = dg.validate_run_config(stage, {})["ops"]  # nothing given: the file's entries
    assert resolved["foundation_model"]["config"]["source"] == demo["foundation_model"]["config"]["source"]
    # a partitioned job (one run per arm) takes the file's entries as each partition's config
    arm_config = jobs.resolve_job_def("compare_strategies").partitioned_config.get_run_config_for_partition_key("naive")
    assert arm_config["ops"]["strategy_arm"] == demo["strategy_arm"]
    finetune = jobs.resolve_job_def("finetune")
    resolved = dg.validate_run_config(finetune, {})["ops"]
    assert resolved["finetuned_model"]["config"]["lr"] == demo["finetuned_model"]["config"]["lr"]
    mine = {"ops": {"finetuned_model": {"config": {"strategy": "naive", "lr": 0.001}}}}
    overridden = dg.validate_run_config(finetune, mine)["ops"]
    assert overridden["finetuned_model"]["config"]["lr"] == 0.001
    # step by step: a step the run configures takes none of the file's entry for it (its other
    # fields fall back to the code defaults); the steps it leaves alone keep the file's
    assert (
        overridden["finetuned_model"]["config"]["max_num_epochs"] != demo["finetuned_model"]["config"]["max_num_epochs"]
    )
    assert overridden["replay_subset"]["config"]["num_samples"] == demo["replay_subset"]["config"]["num_samples"]

    for text, expected in (("ops: [1, 2]", "expected a run config mapping"), ("ops: {a: [", "cannot read it as YAML")):
        (tmp_path / "bad.yaml").write_text(text)
        monkeypatch.setenv("TRAINCRAFT_RUN_CONFIG", str(tmp_path / "bad.yaml"))
        with pytest.raises(SettingsError, match=expected) as info:
            build_defs()
        assert "TRAINCRAFT_RUN_CONFIG" in str(info.value) and "bad.yaml" in str(info.value)


def test_a_bad_nightly_cron_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("TRAINCRAFT_NIGHTLY_RETRAIN_CRON", "every night")
    with pytest.raises(SettingsError, match=r"TRAINCRAFT_NIGHTLY_RETRAIN_CRON.*'every night'"):
        build_defs()
