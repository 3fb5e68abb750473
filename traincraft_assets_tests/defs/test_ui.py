"""What the Dagster UI shows, rendered by a real dagster-webserver and headless Chromium."""

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml
from websockets.sync.client import connect

from traincraft_assets_tests.conftest import TINY_RUN_CONFIG, copied_project, running_webserver

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ui_graph(graph_run, tmp_path_factory):
    """The session's graph, copied: a run is launched from the UI into it."""
    with copied_project(graph_run, tmp_path_factory.mktemp("ui")) as project:
        yield project


@pytest.fixture(scope="module")
def webserver(ui_graph):
    # A run launched from the UI starts at once; `dagster dev` queues it for its daemon instead.
    home = ui_graph.root / "dagster_home"
    with (home / "dagster.yaml").open("a") as config:
        config.write("run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n")
    env = {"DAGSTER_HOME": str(home), "TRAINCRAFT_STORE": str(ui_graph.store), "TRAINCRAFT_INBOX": str(ui_graph.inbox)}
    with running_webserver(env) as url:
        yield url


def _render(url: str, tmp_path: Path) -> str:
    assert CHROMIUM, "headless Chromium is required (.ci/run installs Debian's chromium)"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=20000",
            "--window-size=1400,1000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout


class Page:
    """One tab of headless Chromium driven over the DevTools protocol, for what needs a click
    or the browser's own view of an element (an image's decoded size)."""

    def __init__(self, profile: Path):
        assert CHROMIUM, "headless Chromium is required (.ci/run installs Debian's chromium)"
        self.browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in self.browser.stderr:  # Chromium names its DevTools port here
            if match := re.search(r"DevTools listening on ws://([^/]+)/", line):
                break
        else:
            raise RuntimeError("Chromium did not open its DevTools port")
        tabs = json.load(urllib.request.urlopen(f"http://{match[1]}/json/list", timeout=10))
        self.socket = connect(next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"], max_size=2**26)
        self.calls = 0

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while (reply := json.loads(self.socket.recv(timeout=60))).get("id") != self.calls:
            pass  # events
        assert "error" not in reply, reply
        return reply["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, url: str, wait_for: str, timeout: float = 60) -> str:
        """Navigate and wait until the page's text contains `wait_for`; return the text."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while wait_for not in (text := self.js("document.body ? document.body.innerText : ''")):
            assert time.monotonic() < deadline, f"{wait_for!r} never appeared on {url}:\n{text[:3000]}"
            time.sleep(0.5)
        return text

    def close(self):
        self.socket.close()
        self.browser.kill()
        self.browser.wait()


@pytest.fixture
def page(tmp_path):
    page = Page(tmp_path / "chromium")
    yield page
    page.close()


FIGURES = {
    "parity_plot": "parity, valid set",
    "forgetting_plot": "parity, held-out replay",
    "learning_curve": "learning curve",
}


def test_parity_report_page_shows_every_table_row_and_opens_each_figure_at_full_size(webserver, ui_graph, page):
    """The asset page as a user sees it: every per-config_type row (NaN cells used to make the UI
    drop a row with "Could not parse record"), and each figure opened from its
    `[Show Markdown]` link, decoded by the browser at the width it was drawn."""
    text = page.open(f"{webserver}/assets/parity_report", "per_config_type")
    report = json.loads(Path(ui_graph.latest("parity_report").metadata["report_path"].value).read_text())
    table = text[text.index("per_config_type") :]
    for row in report["rows"]:
        assert re.search(rf"^{re.escape(row['config_type'])}\t{row['n_frames']}\t", table, re.MULTILINE), row[
            "config_type"
        ]
    assert "Could not parse" not in text
    links = "Array.from(document.querySelectorAll('a,button')).filter(e => e.innerText.trim() == '[Show Markdown]')"
    expected = dict(FIGURES)
    assert page.js(f"{links}.length") == len(expected)
    for index in range(page.js(f"{links}.length")):
        page.js(f"{links}[{index}].click()")
        deadline = time.monotonic() + 20
        while not (
            shown := page.js(
                "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('data:image/png')).map(i => [i.alt, i.naturalWidth])"
            )
        ):
            assert time.monotonic() < deadline, f"figure {index} did not open"
            time.sleep(0.3)
        [(alt, width)] = shown
        assert alt in expected.values() and width >= 1000, (alt, width)
        expected = {k: v for k, v in expected.items() if v != alt}
        page.js("Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() == 'Close').click()")
        while page.js(
            "document.images.length && Array.from(document.images).some(i => i.src.startsWith('data:image/png'))"
        ):
            time.sleep(0.2)
    assert not expected, f"not shown: {expected}"


def test_parity_report_page_shows_the_contract_metrics(webserver, ui_graph, tmp_path):
    dom = _render(f"{webserver}/assets/parity_report", tmp_path)
    meta = ui_graph.latest("parity_report").metadata
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


def test_a_user_launches_finetune_from_the_launchpad_with_its_example_config(webserver, ui_graph, page):
    """The mission's "materialize from the Dagster UI" path: the finetune job's Launchpad, its
    editor given examples/jobs/finetune.yaml (with the tests' tiny budget), the Launch Run
    button; the webserver's run launcher runs it in its own process, to success. The editor is
    filled through its own CodeMirror API, as typing would."""
    config = yaml.safe_load((REPO / "examples" / "jobs" / "finetune.yaml").read_text())
    config["ops"]["finetuned_model"]["config"].update(max_num_epochs=2, batch_size=4)
    config["ops"]["replay_subset"]["config"].update(num_samples=3, num_heldout=1)
    config["ops"]["quality_gates"] = TINY_RUN_CONFIG["ops"]["quality_gates"]
    page.open(f"{webserver}/locations/traincraft_assets/jobs/finetune/playground", "Launch Run")
    page.js(f"document.querySelector('.CodeMirror').CodeMirror.setValue({json.dumps(yaml.safe_dump(config))})")
    launch = "Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() == 'Launch Run')"
    deadline = time.monotonic() + 60
    while page.js(f"{launch}.disabled"):  # enabled once Dagster has validated the config
        assert time.monotonic() < deadline, page.js("document.body.innerText")[:3000]
        time.sleep(0.5)
    page.js(f"{launch}.click()")
    while not (match := re.search(r"/runs/([0-9a-f-]{36})", page.js("location.href"))):
        assert time.monotonic() < deadline + 60, "Launch Run did not open a run page"
        time.sleep(0.5)
    run_id = match[1]
    page.call("Page.navigate", url="about:blank")  # the live run page would take a core while we wait
    deadline = time.monotonic() + 600
    while (run := ui_graph.instance.get_run_by_id(run_id)).status not in (
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    ):
        assert time.monotonic() < deadline, f"run {run_id} still {run.status}"
        time.sleep(1)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    assert run.job_name == "finetune"
    for asset in ("finetuned_model", "parity_report"):  # the job's model and its report, from this run
        assert ui_graph.instance.fetch_materializations(dg.AssetKey(asset), limit=1).records[0].run_id == run_id, asset
    page.open(f"{webserver}/runs/{run_id}", "Success")  # and the run page says so


COMMUNITY_DIALOG = "Join the Dagster community"


def test_the_ui_opens_on_the_project_not_on_dagster_s_community_dialog(webserver, tmp_path):
    """A first visit in a fresh browser: with the repository's dagster.yaml (`nux: enabled:
    false`) the UI shows the project, not Dagster's "Join the Dagster community" dialog, which
    an instance without that setting (the tests' own) does show."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "TRAINCRAFT_STORE": str(tmp_path / "store")}
    with running_webserver(env, cwd=tmp_path) as shipped:  # its storage paths are relative to the directory
        ours = _render(f"{shipped}/", tmp_path / "first")
    assert "Overview" in ours and COMMUNITY_DIALOG not in ours
    assert COMMUNITY_DIALOG in _render(f"{webserver}/", tmp_path / "second")
