"""Retraining starts by itself, once per settled change: retrain_sensor and the nightly_retrain
schedule evaluated as the daemon does (a fresh context per tick, cursors read back), and the
automation sensor's conditions, over a real instance, real labelling runs and a real tiny training. The run config
for runs nobody configures comes from TRAINCRAFT_RUN_CONFIG, as in a deployment."""

import datetime

import dagster as dg
import pytest
import yaml

from traincraft_assets.app.batches import retire
from traincraft_assets.core.demo import write_target_batches
from traincraft_assets.defs.automation.retrain import retrain_request
from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, Project, _instance

pytestmark = pytest.mark.integration

DEBOUNCE_S = 600.0  # the window is crossed through `now`, not by waiting
RUN_CONFIG = {
    "ops": {
        **TINY_RUN_CONFIG["ops"],
        "quality_gates": {"config": {"md_steps": 20, "md_structures": 1, "forgetting_ratio": 10.0}},
    }
}


class Daemon:
    """Ticks the project's sensors as the daemon does, keeping each one's cursor and run keys."""

    def __init__(self, project: Project):
        self.project = project
        self.cursors: dict[str, str | None] = {}
        self.run_keys: set[str] = set()
        self.skip_reasons: list[str] = []

    def tick(self, name: str) -> list[dg.RunRequest]:
        [sensor] = [s for s in self.project.defs.sensors if s.name == name]
        with dg.build_sensor_context(
            instance=self.project.instance,
            cursor=self.cursors.get(name),
            repository_def=self.project.defs.get_repository_def(),
        ) as context:
            result = sensor.evaluate_tick(context)
        self.cursors[name] = result.cursor
        if result.skip_message:
            self.skip_reasons.append(result.skip_message)
        fresh = [r for r in result.run_requests if r.run_key is None or r.run_key not in self.run_keys]
        self.run_keys |= {r.run_key for r in fresh if r.run_key}  # the daemon launches a run_key once
        return fresh

    def champion_requested(self) -> bool:
        """One evaluation of the automation sensor's conditions (what the daemon evaluates)."""
        result = dg.evaluate_automation_conditions(
            defs=self.project.defs, instance=self.project.instance, cursor=self.cursors.get("automation_sensor")
        )
        self.cursors["automation_sensor"] = result.cursor
        return result.get_num_requested(dg.AssetKey("champion_model")) == 1

    def retrain(self) -> list[dg.RunRequest]:
        return self.tick("retrain_sensor")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A project whose definitions read the environment a deployment sets."""
    root = tmp_path_factory.mktemp("retrain")
    config = root / "run_config.yaml"
    config.write_text(yaml.safe_dump(RUN_CONFIG))
    with pytest.MonkeyPatch.context() as env, _instance(root) as instance:
        env.setenv("TRAINCRAFT_RUN_CONFIG", str(config))
        env.setenv("TRAINCRAFT_RETRAIN_DEBOUNCE_S", str(DEBOUNCE_S))
        project = Project(root, instance)
        yield project


def _burst(project: Project, tmp_path, n: int) -> list[str]:
    paths = [p for seed in (1, 2, 3) for p in write_target_batches(tmp_path / f"s{seed}", frames_per_kind=2, seed=seed)]
    return [project.add_batch(path.rename(path.with_name(f"{path.parent.name}_{path.name}"))) for path in paths[:n]]


def test_a_burst_of_five_batches_causes_one_retraining(deployed, tmp_path):
    daemon = Daemon(deployed)
    assert daemon.retrain() == [] and daemon.skip_reasons[-1] == "no labelled batch yet"

    batches = _burst(deployed, tmp_path, 5)
    assert deployed.label(batches[0]).success  # as the inbox sensor's run: the job's default config
    assert daemon.retrain() == [] and "no foundation is staged" in daemon.skip_reasons[-1]
    # the job's default config is the file's: no run_config given here
    assert deployed.defs.resolve_job_def("stage_foundation").execute_in_process(instance=deployed.instance).success

    for batch in batches[1:]:  # labelled one after another, each within the window of the last
        assert deployed.label(batch).success
        assert daemon.retrain() == []
    settled_at = deployed.instance.get_latest_materialization_event(dg.AssetKey("labelled_frames")).timestamp
    assert daemon.retrain() == [], "retraining must wait until the batches settle"
    assert "unchanged for 600 s (TRAINCRAFT_RETRAIN_DEBOUNCE_S)" in daemon.skip_reasons[-1]

    # the window's boundary, through `now`: a moment before it, it still waits; at it, it asks
    waiting = retrain_request(deployed.instance, settled_at + DEBOUNCE_S - 0.01, DEBOUNCE_S, "retrain_sensor")
    assert isinstance(waiting, dg.SkipReason) and "unchanged for 600 s" in waiting.skip_message
    settled = retrain_request(deployed.instance, settled_at + DEBOUNCE_S, DEBOUNCE_S, "retrain_sensor")
    assert isinstance(settled, dg.RunRequest)

    # the sensor as the daemon ticks it, once the window has passed (here: no window at all)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TRAINCRAFT_RETRAIN_DEBOUNCE_S", "0")
        daemon.project = Project(deployed.root, deployed.instance)
    [request] = daemon.retrain()  # one run of the whole fine-tuning graph, once settled
    [sensor] = [s for s in deployed.defs.sensors if s.name == "retrain_sensor"]
    assert sensor.job_name == "finetune" and request.job_name in (None, "finetune")
    assert request.tags["traincraft/trigger"] == "retrain_sensor" and request.run_key == settled.run_key
    for _ in range(3):
        assert daemon.retrain() == [], "a settled change is retrained once"

    assert not daemon.champion_requested(), "no challenger yet: nothing to decide"

    run = deployed.defs.resolve_job_def("finetune").execute_in_process(instance=deployed.instance, tags=request.tags)
    assert run.success
    assert {b["batch"] for b in deployed.latest("dataset").metadata["batches"].value} == set(batches)

    assert daemon.retrain() == [] and "nothing changed" in daemon.skip_reasons[-1]
    assert daemon.champion_requested(), "the new challenger is decided on"
    assert not daemon.champion_requested(), "once"


def test_nightly_retrain_runs_only_when_the_batches_changed(deployed):
    [schedule] = deployed.defs.schedules
    assert schedule.name == "nightly_retrain" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 2 * * *"

    def tick():
        now = datetime.datetime.now(datetime.UTC)
        with dg.build_schedule_context(instance=deployed.instance, scheduled_execution_time=now) as context:
            return schedule.evaluate_tick(context)

    quiet = tick()
    assert not quiet.run_requests and "nothing changed" in quiet.skip_message
    batch = deployed.instance.get_dynamic_partitions("data_batches")[0]
    retire(deployed.instance, deployed.inbox, batch, "test: taken out")
    [request] = tick().run_requests  # no debounce: it runs at its hour
    assert request.tags["traincraft/trigger"] == "nightly_retrain"
