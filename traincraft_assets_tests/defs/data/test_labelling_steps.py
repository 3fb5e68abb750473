"""labelled_frames as chunk steps, run for real: the same artifact as one step, a failed
chunk retried alone, bad settings refused before a frame is labelled."""

from collections import Counter

import dagster as dg
import pytest

from traincraft_assets.core.frames import write_frames
from traincraft_assets.core.labelling import LabelOptions, label_batch
from traincraft_assets.core.settings import load_settings
from traincraft_assets.core.store import tree_sha256
from traincraft_assets.defs.definitions import build_defs
from traincraft_assets.defs.resources import InboxResource, StoreResource
from traincraft_assets_tests.core.helpers import chunk_labeller, chunk_runs, cu_bulk

pytestmark = pytest.mark.integration
N_FRAMES = 10


def _labelling(project, config: dict, chunk_steps: int, **run):
    return project.label(
        project.batch, {"ops": {"labelled_frames": {"config": {**config, "chunk_steps": chunk_steps}}}}, **run
    )


def _steps(result) -> Counter:
    """How many times each step started in the run (a retry is a restart)."""
    starts = (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED)
    return Counter(e.step_key for e in result.all_events if e.event_type in starts)


@pytest.fixture
def batch_project(project, tmp_path):
    frames = [cu_bulk(rattle=0.05, seed=seed, repeat=1) for seed in range(N_FRAMES)]
    write_frames(tmp_path / "cu.xyz", frames)
    project.batch = project.add_batch(tmp_path / "cu.xyz")
    return project


def test_chunk_steps_make_the_artifact_one_process_makes(batch_project, tmp_path):
    """4 chunk steps (3, 3, 3 and 1 frames) give the artifact of 1 step, byte for byte, which
    is label_batch's file; the metadata are the same, the scratch folder is gone."""
    project = batch_project
    one = _labelling(project, {"labeller": "emt"}, 1)
    one_version = project.latest("labelled_frames", project.batch)
    four = _labelling(project, {"labeller": "emt"}, 4)
    four_version = project.latest("labelled_frames", project.batch)
    assert _steps(one)["labelled_frames.label_chunk[0]"] == 1 and "labelled_frames.label_chunk[1]" not in _steps(one)
    assert [k for k in _steps(four) if "label_chunk" in k] == [f"labelled_frames.label_chunk[{i}]" for i in range(4)]
    sha = four_version.tags["dagster/data_version"]
    assert sha == one_version.tags["dagster/data_version"]
    reference = tmp_path / "reference"
    reference.mkdir()
    label_batch(project.inbox / project.batch, project.batch, "emt", LabelOptions(), reference / "frames.xyz")
    assert tree_sha256(reference) == sha
    same = {"n_frames", "n_atoms", "elements", "labels", "levels_of_theory", "source_sha256", "labeller"}
    assert {k: four_version.metadata[k] for k in same} == {k: one_version.metadata[k] for k in same}
    assert four_version.metadata["n_frames"].value == N_FRAMES
    assert not any((project.store / ".scratch").iterdir())


def test_a_chunk_that_fails_is_retried_alone_and_the_artifact_is_the_same(batch_project, tmp_path):
    """With a retry in the `label` profile (the cluster's default, here in-process), the chunk
    whose labeller run fails once (frames 3-5) is labelled again; the other chunks ran once.
    The merged artifact is the one a run without a failure makes."""
    project = batch_project
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("label:\n  retries: 1\n  retry_delay_s: 0\n")
    retrying = build_defs(
        load_settings({"TRAINCRAFT_DEPLOYMENT": "k8s", "TRAINCRAFT_POD_PROFILES": str(profiles)}),
        resources={"store": StoreResource(root=str(project.store)), "inbox": InboxResource(path=str(project.inbox))},
    )
    runs = tmp_path / "runs"
    config = chunk_labeller(tmp_path, runs, fail_at=4)
    result = retrying.resolve_job_def("label_batch").execute_in_process(
        instance=project.instance,
        partition_key=project.batch,
        run_config={"ops": {"labelled_frames": {"config": {**config, "chunk_steps": 3}}}},
    )
    assert result.success
    retried = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == ["labelled_frames.label_chunk[1]"]
    assert chunk_runs(runs) == {0: 1, 4: 2, 8: 1}  # chunks of 4, 4 and 2 frames; the second ran twice
    steps = _steps(result)
    assert steps["labelled_frames.label_chunk[1]"] == 2
    assert steps["labelled_frames.label_chunk[0]"] == steps["labelled_frames.label_chunk[2]"] == 1
    retried_sha = project.latest("labelled_frames", project.batch).tags["dagster/data_version"]

    _labelling(project, chunk_labeller(tmp_path, tmp_path / "runs-again"), 1)
    assert project.latest("labelled_frames", project.batch).tags["dagster/data_version"] == retried_sha


@pytest.mark.parametrize("chunk_steps", [0, -2])
def test_chunk_steps_below_one_is_refused_before_any_labelling(batch_project, chunk_steps):
    project = batch_project
    result = _labelling(project, {"labeller": "emt"}, chunk_steps, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "labelled_frames.plan_chunks"
    message = failure.step_failure_data.user_failure_data.description
    assert f"labelled_frames: chunk_steps is {chunk_steps}; expected 1" in message
    assert "nothing was run or written" in message
    assert not any("label_chunk" in (e.step_key or "") for e in result.all_events)
    assert project.latest("labelled_frames", project.batch) is None
    assert not (project.store / ".scratch").exists()
