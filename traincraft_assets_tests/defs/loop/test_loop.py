"""One iteration of the active-learning loop on a real instance with real (tiny) trainings,
driven by the loop sensor's own requests: committee members (the champion as one), walks,
selection; the picked
batch in the inbox exactly once; its labelling by the labeller it declares; the retrain and
the champion's decision. Bad input is refused before anything is trained."""

import copy
import json

import dagster as dg
import pytest

from traincraft_assets.app import champion, explore
from traincraft_assets.core.artifacts import Candidates, SelectedFrames
from traincraft_assets.core.demo import loop_starts
from traincraft_assets.core.frames import read_frames, write_frames
from traincraft_assets.core.inbox import Inbox
from traincraft_assets.defs import instance
from traincraft_assets.defs.automation.loop import loop_request
from traincraft_assets.defs.jobs import EXPLORE, SELECT_FRAMES, TRAIN_COMMITTEE, run_config_for
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG

pytestmark = pytest.mark.integration


def _config(structures) -> dict:
    """The tiny graph's config with a committee of 2 (1 epoch each), two 30-step walks, and
    trust levels wide enough that a tiny committee's frames are candidates."""
    config = copy.deepcopy(TINY_RUN_CONFIG)
    config["ops"].update(
        {
            "committee": {
                "config": {
                    "members": 2,
                    "bootstrap": True,
                    "champion_member": True,
                    "strategy": "naive",
                    "dtype": "float32",
                    "lr": 0.01,
                    "max_num_epochs": 1,
                    "batch_size": 4,
                }
            },
            "exploration": {
                "config": {
                    "structures": str(structures),
                    "temperatures_k": [600],
                    "steps": 30,
                    "save_interval": 5,
                    "trust_lo": 1e-6,
                    "trust_hi": 50.0,
                }
            },
            "candidates": {"config": {"max_candidates": 3}},
            "selected_frames": {"config": {"labeller": "emt_morse", "max_iterations": 3}},
        }
    )
    return config


def _why(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message


def _run(project, request: dg.RunRequest, config: dict) -> None:
    job = project.defs.resolve_job_def(request.job_name)
    job.execute_in_process(
        instance=project.instance,
        run_config=run_config_for(job, config),
        partition_key=request.partition_key,
        raise_on_error=True,
    )


def test_one_iteration_driven_by_the_loop_sensor(graph_copy, tmp_path):
    project = graph_copy
    structures = tmp_path / "starts.xyz"
    write_frames(structures, loop_starts()[:2])  # bulk and a surface
    config = _config(structures)
    assert "no champion yet" in _why(loop_request(project.instance, config))
    # the tiny graph's model fails the forgetting gate (a 2-epoch foundation): serve it by hand
    model = project.latest("finetuned_model").metadata["artifact_sha256"].value
    assert champion.decide(project.instance, project.defs, promote=model, reason="the loop starts here")["promoted"]
    assert "needs TRAINCRAFT_RUN_CONFIG" in _why(loop_request(project.instance, None))

    asked = []
    for stage in (TRAIN_COMMITTEE, EXPLORE, SELECT_FRAMES):
        result = loop_request(project.instance, config)
        again = loop_request(project.instance, config)  # a restarted sensor asks the same, by run_key
        assert [r.run_key for r in result.run_requests] == [r.run_key for r in again.run_requests]
        assert {r.job_name for r in result.run_requests} == {stage}
        for partitions in result.dynamic_partitions_requests:
            project.instance.add_dynamic_partitions(partitions.partitions_def_name, list(partitions.partition_keys))
        for request in result.run_requests:
            _run(project, request, config)
        asked.append([r.partition_key for r in result.run_requests])
    assert asked == [["member-0", "member-1"], ["0@600K", "1@600K"], [None]]
    # member-0 is the serving champion (not trained again), member-1 trained with seed + 1
    first, second = (project.latest("committee", m).metadata for m in ("member-0", "member-1"))
    assert first["from_champion"].value == model and first["champion_serving"].value == model
    assert second["from_champion"].value == "" and second["seed"].value == 1
    assert first["committee"].value == second["committee"].value

    judged = project.latest(Candidates.asset).metadata
    assert judged["n_picked"].value == 3
    version = project.latest(SelectedFrames.asset).metadata["artifact_sha256"].value
    selected = json.loads((project.store / SelectedFrames.asset / version / "batch.json").read_text())
    batch = selected["batch"]
    assert batch.startswith("loop-001-") and selected["labeller"] == "emt_morse" and selected["n_frames"] == 3
    waiting = loop_request(project.instance, config)
    assert not waiting.run_requests and batch in _why(waiting)

    # the selection again (a sensor restarted mid-iteration, a retried run): the same batch, once
    _run(project, dg.RunRequest(job_name=SELECT_FRAMES), config)
    loop_batches = [r for r in Inbox(project.inbox).registrations() if r.get("origin")]
    assert [r["name"] for r in loop_batches] == [batch]
    assert loop_batches[0]["labeller"] == "emt_morse" and loop_batches[0]["origin"]["iteration"] == 1

    # the existing path: labelled by its declared labeller, fine-tuned on, gated, decided
    instance.register_batches(project.instance, [batch])
    decision = explore.retrain(project.instance, project.defs, config, batch, print)
    labelled = project.latest("labelled_frames", batch).metadata
    assert labelled["labeller"].value == "emt_morse" and labelled["origin"].value["iteration"] == 1
    merged = project.latest("dataset").metadata["batches"].value
    assert batch in [b["batch"] for b in merged]
    assert decision["challenger"] == project.latest("finetuned_model").metadata["artifact_sha256"].value
    frames = read_frames(project.inbox / batch)
    assert len(frames) == 3 and all("committee_force_deviation" in a.info for a in frames)
