"""The champion over a retraining cycle, on a real instance with real (tiny) trainings:
batch 1 -> first champion; batch 2 (more good data) -> the rule decides on the common valid
frames; batch 3 with forces in the wrong unit (x1000) -> labelling refuses it, nothing is
trained, the champion stays, the reasons are recorded; promote and roll back by hand,
recorded the same way. (Retiring a batch is tested in test_cli.py.)"""

import pytest

from traincraft_assets.app.champion import decide, previous_champion
from traincraft_assets.core.champion import ChampionError
from traincraft_assets.core.demo import write_target_batches
from traincraft_assets.core.frames import get_label, read_frames, set_label, write_frames
from traincraft_assets.core.labelling import LABELLERS, LabelOptions
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, with_session_foundation

pytestmark = pytest.mark.integration

FINETUNE = {"dataset", "split", "replay_subset", "finetuned_model", "parity_report"}
CONFIG = {
    "ops": {
        **{k: v for k, v in TINY_RUN_CONFIG["ops"].items() if k in FINETUNE},
        # forgetting measured on 20 held-out Cu frames, not the tiny config's one: one frame's
        # ratio is noise (its foundation error can be near zero)
        "replay_subset": {"config": {**TINY_RUN_CONFIG["ops"]["replay_subset"]["config"], "num_heldout": 20}},
        "finetuned_model": {"config": {**TINY_RUN_CONFIG["ops"]["finetuned_model"]["config"], "max_num_epochs": 6}},
        # The tiny 2-epoch foundation's replay energies are too crude to be a fair bar (a 6-epoch
        # multihead fine-tune drifts about 2.5x on them): allow 10x here. Per kind, on 2 to 5
        # frames, tiny models swing further from one training to the next (the second model's 2
        # valid vacancy frames: 15x the first's energy error), and this test is about the rule
        # that follows the gates: allow 100x. The gates themselves are tested on their numbers in
        # core/test_gates.py.
        "quality_gates": {
            "config": {"md_steps": 40, "md_structures": 2, "forgetting_ratio": 10.0, "config_type_ratio": 100.0}
        },
    }
}


def _batches(directory, seed, prefix, scale_forces=1.0):
    """The demo's Cu structures, relabelled at the foundation's own level of theory (EMT): this
    test is about the champion's rules, not about a change of theory (docs: the demo's
    forgetting numbers)."""
    paths = []
    for path in write_target_batches(directory, frames_per_kind=4, seed=seed):
        frames = LABELLERS["emt"](read_frames(path), LabelOptions())
        for atoms in frames:
            set_label(atoms, "forces", get_label(atoms, "forces") * scale_forces)
        target = directory / f"{prefix}_{path.name}"
        write_frames(target, frames)
        path.unlink()
        paths.append(target)
    return paths


def _retrain(project, batches):
    for path in batches:
        project.label(project.add_batch(path))
    project.defs.resolve_job_def("finetune").execute_in_process(instance=project.instance, run_config=CONFIG)
    return project.latest("finetuned_model").metadata["artifact_sha256"].value


def test_the_champion_changes_only_on_evidence(project, graph_run, tmp_path):
    stage = with_session_foundation(
        graph_run, {"ops": {"pretraining_frames": TINY_RUN_CONFIG["ops"]["pretraining_frames"]}}
    )
    project.defs.resolve_job_def("stage_foundation").execute_in_process(instance=project.instance, run_config=stage)

    first = _retrain(project, _batches(tmp_path / "b1", 1, "b1"))
    assert "champion_model" not in project.latest("parity_report").metadata  # none serves yet
    decision = decide(project.instance, project.defs)
    assert decision["promoted"] and decision["serving"] == first, decision["reason"]
    champion = project.latest("champion_model").metadata
    assert champion["serving_finetuned_model"].value == first

    second = _retrain(project, _batches(tmp_path / "b2", 2, "b2"))
    # the challenger's report shows the serving champion beside it, on the challenger's valid frames
    report = project.latest("parity_report").metadata
    assert report["champion_model"].value == first and report["champion_rmse_f_mev_per_a"].value > 0
    table = report["per_config_type"].value
    assert "champion_rmse_f_mev_per_a" in {c.name for c in table.schema.columns}
    [every_frame] = [row for row in table.records if row.data["config_type"] == "all"]
    assert every_frame.data["champion_rmse_f_mev_per_a"] is not None
    decision = decide(project.instance, project.defs)
    numbers = project.latest("champion_model").metadata
    assert decision["challenger"] == second and "common valid frames" in decision["reason"], decision["reason"]
    better = numbers["challenger_rmse_f_mev_per_a"].value < numbers["champion_rmse_f_mev_per_a"].value and (
        numbers["challenger_rmse_e_mev_per_atom"].value <= numbers["champion_rmse_e_mev_per_atom"].value
    )
    assert decision["promoted"] == better  # the rule, read back from the numbers it recorded
    serving = decision["serving"]

    # forces in meV/Å stored as eV/Å: labelling refuses each batch before anything is stored,
    # naming the file, frame and field; nothing new is trained
    for path in _batches(tmp_path / "b3", 3, "b3", scale_forces=1000.0):
        refused = project.label(project.add_batch(path), raise_on_error=False)
        [failure] = [e for e in refused.all_events if e.is_step_failure]
        text = failure.step_failure_data.user_failure_data.description
        assert path.name in text and "frame 0, field REF_forces" in text and "unit mix-up" in text, text
    assert project.latest("finetuned_model").metadata["artifact_sha256"].value == second  # nothing trained
    decision = decide(project.instance, project.defs)
    assert not decision["promoted"] and decision["serving"] == serving
    assert project.latest("champion_model").metadata["serving_finetuned_model"].value == serving
    history = project.latest("champion_model").metadata["history"].value.records
    assert len(history) == 3 and history[0].data["promoted"] is False

    other = first if serving == second else second
    decision = decide(project.instance, project.defs, promote=other, reason="trying the other by hand")
    assert decision["promoted"] and decision["by"] == "hand" and decision["serving"] == other
    back = previous_champion(project.instance)
    assert back == serving
    decision = decide(project.instance, project.defs, promote=back, reason="rollback")
    assert (
        decision["serving"] == serving
        and project.latest("champion_model").metadata["serving_finetuned_model"].value == serving
    )
    with pytest.raises(ChampionError, match="no finetuned_model was materialized as version or by run 'nope'"):
        decide(project.instance, project.defs, promote="nope", reason="x")
