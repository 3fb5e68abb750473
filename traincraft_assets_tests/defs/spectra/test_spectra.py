"""Spectra through the graph, for real: water clusters labelled by PySCF (HF/STO-3G), a tiny
energy-and-dipole MACE trained on them, two trajectories run as two steps (a pod each on
Kubernetes), and the IR spectrum made of them beside the harmonic references; a Raman spectrum
asked of a model without polarizabilities, and a time step too long for O-H stretches, are
refused before any work."""

import time
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from traincraft_assets.core.artifacts import SpectrumTrajectories
from traincraft_assets.core.fidelity import water_clusters
from traincraft_assets.core.frames import write_frames

pytestmark = pytest.mark.integration

TRAJECTORIES = {"n_trajectories": 2, "time_step_fs": 0.25, "equilibration_ps": 0.0025, "length_ps": 0.05}


def _failure(result) -> str:
    return "\n".join(e.step_failure_data.user_failure_data.description for e in result.all_events if e.is_step_failure)


@pytest.fixture(scope="module")
def water_model(tmp_path_factory):
    """A project with one batch of water monomers and dimers labelled by PySCF and a tiny
    EnergyDipolesMACE trained on it from scratch."""
    from traincraft_assets_tests.conftest import Project, _instance

    root = tmp_path_factory.mktemp("water_project")
    write_frames(root / "water.xyz", water_clusters(24, seed=2, max_waters=2))
    with _instance(root) as instance:
        project = Project(root, instance)
        batch = project.add_batch(root / "water.xyz")
        project.label(
            batch, {"ops": {"labelled_frames": {"config": {"labeller": "pyscf", "method": "HF", "basis": "sto-3g"}}}}
        )
        model = {
            "strategy": "scratch",
            "heads": ["energy", "forces", "dipole"],
            "e0s": "average",
            "num_channels": 8,
            "max_L": 1,
            "r_max": 4.0,
            "max_num_epochs": 2,
            "batch_size": 4,
            "lr": 0.01,
        }
        config = {"ops": {"finetuned_model": {"config": model}, "split": {"config": {"valid_fraction": 0.25}}}}
        project.materialize(["dataset", "split", "finetuned_model"], config)
        yield project


@pytest.fixture(scope="module")
def ir_run(water_model):
    """Two trajectories and the IR spectrum made of them, in one run."""
    config = {"ops": {"spectrum_trajectories": {"config": {**TRAJECTORIES, "device": "cpu"}}}}
    return water_model.materialize(["spectrum_trajectories", "ir_spectrum"], config)


def test_trajectories_run_as_steps_and_the_ir_spectrum_sits_beside_its_harmonic_references(water_model, ir_run):
    result = ir_run
    started = Counter(e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START)
    assert [k for k in started if "run_trajectory" in k] == [
        f"spectrum_trajectories.run_trajectory[{i}]" for i in range(2)
    ]

    trajectories = water_model.latest("spectrum_trajectories").metadata
    artifact = SpectrumTrajectories(Path(trajectories["artifact_path"].value))
    assert trajectories["n_trajectories"].value == 2 and artifact.trajectory_path(1).is_file()
    with np.load(artifact.trajectory_path(0)) as data:
        assert data["dipoles"].shape == (200, 3) and "polarizabilities" not in data.files
    assert trajectories["finetuned_model"].value == water_model.latest("finetuned_model").tags["dagster/data_version"]
    assert not any((water_model.store / ".scratch").iterdir())

    ir = water_model.latest("ir_spectrum").metadata
    assert ir["n_trajectories"].value == 2 and ir["window"].value == "hann" and ir["correction"].value == "harmonic"
    table = ir["peak_table"].value.records
    assert len(table) == 3  # water's three modes, from the xTB reference
    assert {"xtb harmonic", "model harmonic", "model MD"} <= set(table[0].data)
    assert "data:image/png;base64," in ir["spectrum_plot"].value


def test_raman_of_a_model_without_polarizabilities_is_refused_saying_what_to_train(water_model):
    short = {**TRAJECTORIES, "n_trajectories": 1, "length_ps": 0.01, "device": "cpu"}
    config = {"ops": {"spectrum_trajectories": {"config": short}}}
    water_model.materialize(["spectrum_trajectories"], config)
    result = water_model.materialize(["raman_spectrum"], raise_on_error=False)
    assert not result.success and "heads: [dipole, polarizability]" in _failure(result)


def test_a_time_step_too_long_for_o_h_stretches_is_refused_with_the_numbers(water_model):
    config = {"ops": {"spectrum_trajectories": {"config": {**TRAJECTORIES, "time_step_fs": 2.0}}}}
    result = water_model.materialize(["spectrum_trajectories"], config, raise_on_error=False)
    message = _failure(result)
    assert not result.success and "nothing was run or written" in message
    assert "4000 cm⁻¹ have a period of 8.3 fs" in message and "at most 0.83 fs" in message
    assert not [e for e in result.all_events if e.is_step_success]


def test_the_ir_spectrum_page_shows_the_peak_table_and_opens_the_figure(water_model, ir_run, tmp_path):
    """The asset page as a user sees it, in a real dagster-webserver and headless Chromium."""
    from traincraft_assets_tests.conftest import running_webserver
    from traincraft_assets_tests.defs.test_ui import Page

    env = {
        "DAGSTER_HOME": str(water_model.root / "dagster_home"),
        "TRAINCRAFT_STORE": str(water_model.store),
        "TRAINCRAFT_INBOX": str(water_model.inbox),
    }
    page = Page(tmp_path / "chromium")
    try:
        with running_webserver(env) as url:
            text = page.open(f"{url}/assets/ir_spectrum", "peak_table")
            assert "xtb harmonic" in text and "model MD" in text and "Could not parse" not in text
            page.js(
                "Array.from(document.querySelectorAll('a,button')).find(e => e.innerText.trim() == '[Show Markdown]').click()"
            )
            deadline = time.monotonic() + 20
            while not (
                shown := page.js(
                    "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0 && "
                    "i.src.startsWith('data:image/png')).map(i => [i.alt, i.naturalWidth])"
                )
            ):
                assert time.monotonic() < deadline, "the spectrum figure did not open"
                time.sleep(0.3)
            assert shown == [["IR spectrum", 1000]]
    finally:
        page.close()
