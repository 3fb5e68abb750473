"""`traincraft submit` against a real dagster-webserver on a free local port.

Stands in for the cluster's webserver (reached by port-forward): the same GraphQL API, here
backed by a local instance whose run coordinator launches at once (the cluster queues runs for
its daemon). Runs are real: the webserver's run launcher starts each in its own process.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from traincraft_assets_tests.conftest import free_port, running_webserver

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = {"DAGSTER_HOME": str(home), "TRAINCRAFT_STORE": str(root / "store"), "TRAINCRAFT_INBOX": str(root / "inbox")}
    with running_webserver(env, cwd=root) as url:
        yield url, home, root


def _submit(root, *args):
    return subprocess.run([BIN / "traincraft", "submit", *args], capture_output=True, text=True, timeout=600, cwd=root)


def test_submit_launches_on_the_deployment_and_waits_for_success(deployment):
    url, home, root = deployment
    config = root / "pool.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ops": {
                    "pretraining_frames": {"config": {"source": "demo", "demo_frames_per_metal": 1}},
                    "foundation_model": {"config": {"source": "demo"}},  # not selected: left out of the run
                }
            }
        )
    )
    result = _submit(root, "--url", url, "--select", "pretraining_frames", "-c", str(config), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    [run_id] = re.findall(rf"^{re.escape(url)}/runs/([0-9a-f-]+)$", result.stdout, re.M)
    assert f"run {run_id}: SUCCESS" in result.stdout
    os.environ["DAGSTER_HOME"], old = str(home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey("pretraining_frames"))
            assert event.run_id == run_id and event.asset_materialization.metadata["n_frames"].value == 7
    finally:
        if old is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = old


def test_a_whole_graph_config_is_trimmed_to_the_job(deployment):
    """examples/*.yaml configure every asset; a job accepts config only for its own steps."""
    url, _, root = deployment
    config = root / "whole.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ops": {
                    "pretraining_frames": {"config": {"source": "demo", "demo_frames_per_metal": 1}},
                    "foundation_model": {
                        "config": {"source": "scratch", "max_num_epochs": 1, "num_channels": 8, "batch_size": 4}
                    },
                    "finetuned_model": {"config": {"max_num_epochs": 1}},  # not in stage_foundation
                }
            }
        )
    )
    result = _submit(root, "--url", url, "--job", "stage_foundation", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{url}/runs/" in result.stdout


def test_a_failing_run_exits_non_zero_after_waiting(deployment):
    url, _, root = deployment
    config = root / "missing.yaml"
    config.write_text(
        yaml.safe_dump({"ops": {"pretraining_frames": {"config": {"source": "file", "path": "/nonexistent/pool.xyz"}}}})
    )
    result = _submit(root, "--url", url, "--select", "pretraining_frames", "-c", str(config), "--wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ": FAILURE" in result.stdout


def test_a_run_the_deployment_refuses_or_cannot_reach_says_why(deployment):
    url, _, root = deployment
    bad = _submit(root, "--url", url, "--job", "retrain_everything")
    assert bad.returncode == 2 and "refused the run" in bad.stderr and "retrain_everything" in bad.stderr
    config = root / "bad.yaml"
    config.write_text(yaml.safe_dump({"ops": {"pretraining_frames": {"config": {"source": "sideways"}}}}))
    invalid = _submit(root, "--url", url, "--select", "pretraining_frames", "-c", str(config))
    assert invalid.returncode == 2 and "sideways" in invalid.stderr
    down = _submit(root, "--url", f"http://127.0.0.1:{free_port()}", "--select", "pretraining_frames")
    assert down.returncode == 2 and "could not reach Dagster" in down.stderr
