"""What the Dagster UI shows, rendered by a real dagster-webserver and headless Chromium."""

import shutil
import subprocess
from pathlib import Path

import pytest

from traincraft_assets_tests.conftest import running_webserver

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def webserver(graph_run):
    env = {
        "DAGSTER_HOME": str(graph_run.root / "dagster_home"),
        "TRAINCRAFT_STORE": str(graph_run.store),
        "TRAINCRAFT_INBOX": str(graph_run.inbox),
    }
    with running_webserver(env) as url:
        yield url


def _render(url: str, tmp_path: Path) -> str:
    assert CHROMIUM, "headless Chromium is required (.ci/run installs Debian's chromium)"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=20000",
         "--window-size=1400,1000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    return result.stdout


def test_parity_report_page_shows_the_contract_metrics(webserver, graph_run, tmp_path):
    dom = _render(f"{webserver}/assets/parity_report", tmp_path)
    meta = graph_run.latest("parity_report").metadata
    for key in ("rmse_f_mev_per_a", "foundation_rmse_f_mev_per_a", "replay_rmse_f_mev_per_a", "n_valid"):
        assert key in dom, key
    assert repr(meta["rmse_f_mev_per_a"].value) in dom  # the value of this very materialization
    assert "parity_plot" in dom and "per_config_type" in dom


def test_lineage_page_shows_the_models_inputs(webserver, tmp_path):
    dom = _render(f"{webserver}/assets/finetuned_model?view=lineage&lineageScope=upstream&lineageDepth=1", tmp_path)
    for upstream in ("split", "replay_subset", "foundation_model"):
        assert upstream in dom, upstream
    for unrelated in ("labelled_frames", "pretraining_frames", "parity_report"):  # not direct inputs
        assert unrelated not in dom, unrelated
