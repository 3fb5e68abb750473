"""The loop's bad input, refused before any committee trains (by `traincraft explore` and by the
loop sensor), with what to do; a labeller that fails on a picked frame leaves the inbox's batch
whole and no labelled artifact behind."""

import copy

import pytest
from ase import Atoms
from ase.build import molecule

from traincraft_assets.app import champion, explore
from traincraft_assets.core.demo import loop_starts
from traincraft_assets.core.frames import write_frames
from traincraft_assets.core.inbox import Inbox
from traincraft_assets.core.store import file_sha256
from traincraft_assets.defs import instance
from traincraft_assets.defs.automation.loop import loop_request
from traincraft_assets.defs.loop.assets import loop_problems

FOUNDATION = ["Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt"]


def _config(structures, **exploration) -> dict:
    return {
        "ops": {
            "committee": {"config": {"members": 2}},
            "exploration": {"config": {"structures": str(structures), **exploration}},
            "selected_frames": {"config": {"labeller": "emt_morse"}},
        }
    }


def test_structures_with_elements_the_foundation_lacks(tmp_path):
    path = tmp_path / "starts.xyz"
    write_frames(path, [loop_starts()[0], molecule("H2O")])
    (problem,) = loop_problems(_config(path), FOUNDATION)
    assert str(path) in problem and "['H', 'O']" in problem and "Remove those structures" in problem


def test_an_empty_structures_file(tmp_path):
    path = tmp_path / "starts.xyz"
    path.write_text("")
    (problem,) = loop_problems(_config(path), FOUNDATION)
    assert str(path) in problem and "empty" in problem


def test_trust_levels_out_of_order(tmp_path):
    path = tmp_path / "starts.xyz"
    write_frames(path, loop_starts()[:1])
    (problem,) = loop_problems(_config(path, trust_lo=0.5, trust_hi=0.2), FOUNDATION)
    assert "trust_lo=0.5" in problem and "trust_hi=0.2" in problem


def test_a_committee_of_one(tmp_path):
    path = tmp_path / "starts.xyz"
    write_frames(path, loop_starts()[:1])
    config = _config(path)
    config["ops"]["committee"]["config"]["members"] = 1
    (problem,) = loop_problems(config, FOUNDATION)
    assert "at least 2 members" in problem


def test_the_local_loop_refuses_before_training(graph_run, tmp_path):
    """On the session's graph (its staged foundation knows the seven metals): nothing runs."""
    path = tmp_path / "starts.xyz"
    write_frames(path, [molecule("H2O")])
    config = copy.deepcopy(_config(path))
    with pytest.raises(ValueError, match=r"nothing was run:\n- .*\['H', 'O'\]"):
        explore.iterate(graph_run.instance, graph_run.defs, config, 1, 1, print)


def test_a_labeller_failing_on_a_picked_frame(project, tmp_path):
    """EMT knows no lithium: the labelling fails naming the file, the frame and the cause; the
    batch file stays whole in the inbox, and no labelled artifact is made."""
    path = tmp_path / "loop-001-abc.xyz"
    write_frames(path, [loop_starts()[0], Atoms("Li2", positions=[[0, 0, 0], [0, 0, 2.7]], cell=[9, 9, 9])])
    (batch,) = Inbox(project.inbox).ingest([path], declared={"labeller": "emt", "origin": {"asset": "selected_frames"}})
    instance.register_batches(project.instance, [batch.name])
    result = project.label(batch.name, raise_on_error=False)
    assert not result.success
    message = result.failure_data_for_node("labelled_frames").error.message
    assert str(project.inbox / batch.name) in message and "frame 1 (Li2)" in message and "labeller failed" in message
    assert file_sha256(project.inbox / batch.name) == batch.sha256
    assert project.latest("labelled_frames", batch.name) is None
    assert not (project.store / "labelled_frames").exists() or not any((project.store / "labelled_frames").iterdir())


def test_the_loop_sensor_asks_for_nothing_while_the_settings_cannot_work(graph_copy, tmp_path):
    project = graph_copy
    model = project.latest("finetuned_model").metadata["artifact_sha256"].value
    champion.decide(project.instance, project.defs, promote=model, reason="a champion for the sensor to start from")
    path = tmp_path / "starts.xyz"
    write_frames(path, [molecule("H2O")])
    result = loop_request(project.instance, _config(path))
    assert not result.run_requests and not result.dynamic_partitions_requests
    assert "cannot work" in result.skip_reason.skip_message and "['H', 'O']" in result.skip_reason.skip_message
