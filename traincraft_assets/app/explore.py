"""`traincraft explore`: the active-learning loop on this machine, one step after another.

Each iteration trains the committee (one run per member), explores (one run per walk), judges
the walks and puts the picks in the inbox (select_frames), labels that batch, fine-tunes,
gates, and lets the champion rule decide: the same runs the loop sensor starts on a
deployment, here in this process, with a line of progress after each. A first model is trained
on the narrow start batch alone, so iteration 1 has a model to beat; after each iteration the
newest model is scored on a held-out test set of every kind of frame.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from traincraft_assets.app import champion
from traincraft_assets.app.batches import ingest
from traincraft_assets.app.demo import run_job
from traincraft_assets.core.artifacts import Candidates, Exploration, FinetunedModel, FoundationModel, SelectedFrames
from traincraft_assets.core.demo import loop_data
from traincraft_assets.core.evaluation import evaluate
from traincraft_assets.core.frames import read_frames
from traincraft_assets.core.metrics import to_mev
from traincraft_assets.core.models import load_model
from traincraft_assets.core.store import ArtifactStore
from traincraft_assets.defs import instance
from traincraft_assets.defs.jobs import EXPLORE, FINETUNE, LABEL_BATCH, SELECT_FRAMES, STAGE_FOUNDATION, TRAIN_COMMITTEE
from traincraft_assets.defs.loop.assets import iteration_partitions, loop_problems
from traincraft_assets.defs.partitions import committee_members, exploration_walks

Say = Callable[[str], None]

# What `--quick` changes: a committee of 2, short walks, few epochs (about 10 minutes on 2 cores).
QUICK = {
    "committee": {"members": 2, "max_num_epochs": 4},
    "exploration": {"temperatures_k": [600], "steps": 150, "save_interval": 5},
    "candidates": {"max_candidates": 6},
    "selected_frames": {"max_iterations": 2},
    "finetuned_model": {"max_num_epochs": 8},
    "quality_gates": {"md_steps": 50, "md_structures": 2},
}


def loop_config(base: dict, loop: dict, structures: Path, quick: bool) -> dict:
    """The demo's run config with the loop's entries laid over it, the starting structures
    filled in where none are given, and `--quick`'s budgets."""
    config = copy.deepcopy(base)
    ops = config.setdefault("ops", {})
    for step, entry in loop.get("ops", {}).items():
        ops.setdefault(step, {}).setdefault("config", {}).update(entry.get("config", {}))
    ops["exploration"]["config"].setdefault("structures", str(structures))
    for step, changes in (QUICK if quick else {}).items():
        ops.setdefault(step, {}).setdefault("config", {}).update(changes)
    config.setdefault("loggers", {"console": {"config": {"log_level": "WARNING"}}})  # progress lines instead
    return config


def test_errors(store: ArtifactStore, dagster_instance: dg.DagsterInstance, test: list) -> dict:
    """The latest fine-tuned model's errors on the held-out test set, per kind of frame (meV
    units): what the labels spent so far bought, whether or not the gates let it serve."""
    sha = instance.latest_data_version(dagster_instance, FinetunedModel.asset)
    if sha is None:
        return {}
    model = load_model(store.open(FinetunedModel, sha).deploy_model_path)
    return {
        kind: {"rmse_f_mev_per_a": to_mev(row["rmse_f"]), "rmse_e_mev_per_atom": to_mev(row["rmse_e_per_atom"])}
        for kind, row in evaluate(model, test).by_config_type.items()
    }


def _say_errors(say: Say, label: str, errors: dict) -> None:
    if errors:
        overall = errors["all"]
        say(
            f"  {label}: test set F {overall['rmse_f_mev_per_a']:.1f} meV/Å, E {overall['rmse_e_mev_per_atom']:.1f} "
            "meV/atom; F by kind: "
            + ", ".join(f"{k} {v['rmse_f_mev_per_a']:.0f}" for k, v in errors.items() if k != "all")
        )


def retrain(dagster_instance, defs, run_config: dict, batch: str, say: Say) -> dict:
    """Label `batch` (with the labeller it declares), fine-tune on every batch, gate, decide."""
    result = run_job(defs, LABEL_BATCH, dagster_instance, run_config, batch, say=lambda line: None)
    say(f"  labelled batch {batch!r} (run {result.run_id})")
    run_job(defs, FINETUNE, dagster_instance, run_config, say=lambda line: None)
    decision = champion.decide(dagster_instance, defs)
    say(f"  champion: {'promoted' if decision['promoted'] else 'kept'}: {decision['reason']}")
    return decision


def iterate(dagster_instance, defs, run_config: dict, i: int, n: int, say: Say) -> dict:
    """One iteration: committee, walks, selection; returns selected_frames' record. Settings
    that cannot work are refused before the committee trains."""
    foundation = (instance.latest_metadata(dagster_instance, FoundationModel.asset) or {}).get("elements")
    if problems := loop_problems(run_config, foundation):
        raise ValueError("the loop's settings cannot work; nothing was run:\n" + "\n".join(f"- {p}" for p in problems))
    members, walks = iteration_partitions(run_config)
    instance.add_partitions(dagster_instance, committee_members, members)
    instance.add_partitions(dagster_instance, exploration_walks, walks)
    for k, member in enumerate(members, 1):
        run_job(defs, TRAIN_COMMITTEE, dagster_instance, run_config, member, say=lambda line: None)
        say(f"iteration {i}/{n}: committee member {k}/{len(members)} trained")
    for w, walk in enumerate(walks, 1):
        run_job(defs, EXPLORE, dagster_instance, run_config, walk, say=lambda line: None)
        meta = instance.latest_metadata(dagster_instance, Exploration.asset, walk)
        stop = f"stopped at step {meta['stopped_at_step']}" if meta["stopped_early"] else "ran to the end"
        say(
            f"iteration {i}/{n}: walk {w}/{len(walks)} {walk}: {meta['steps_run']} MD steps, {stop}, "
            f"max force deviation {meta['max_force_deviation_ev_per_a']:.3f} eV/Å"
        )
    run_job(defs, SELECT_FRAMES, dagster_instance, run_config, say=lambda line: None)
    judged = instance.latest_metadata(dagster_instance, Candidates.asset)
    say(
        f"iteration {i}/{n}: {judged['n_frames']} frames judged: {100 * judged['accurate_fraction']:.0f}% accurate, "
        f"{100 * judged['candidate_fraction']:.0f}% candidates, {100 * judged['failed_fraction']:.0f}% failed; "
        f"{judged['n_picked']} picked"
    )
    return instance.latest_metadata(dagster_instance, SelectedFrames.asset)


def run(
    dagster_instance: dg.DagsterInstance,
    defs: dg.Definitions,
    run_config: dict,
    data_dir: Path,
    inbox: Path,
    store: ArtifactStore,
    say: Say = print,
) -> list[dict]:
    """The narrow start batch labelled and a first champion trained on it, then iterations
    until selected_frames says the loop stops. One row per iteration: what it picked and the
    champion's errors on the held-out test set afterwards."""
    files = loop_data(data_dir)
    test = read_frames(files["test"])
    (start,) = ingest(dagster_instance, inbox, [files["start"]])
    say(f"start: batch {start.name!r} ({start.n_frames} Cu bulk frames), test set {len(test)} frames of 5 kinds")
    run_job(defs, STAGE_FOUNDATION, dagster_instance, run_config, say=lambda line: None)
    retrain(dagster_instance, defs, run_config, start.name, say)
    errors = test_errors(store, dagster_instance, test)
    _say_errors(say, "before the loop", errors)
    rows = [{"iteration": 0, "n_labelled": start.n_frames, "test": errors}]
    n = run_config["ops"]["selected_frames"]["config"].get("max_iterations", 10)
    for i in range(1, n + 1):
        record = iterate(dagster_instance, defs, run_config, i, n, say)
        if record["stopped"]:
            say(f"the loop stops: {record['stopped']}")
            break
        instance.register_batches(dagster_instance, [record["batch"]])
        retrain(dagster_instance, defs, run_config, record["batch"], say)
        errors = test_errors(store, dagster_instance, test)
        _say_errors(say, f"after iteration {i}", errors)
        rows.append({"iteration": i, "n_labelled": rows[-1]["n_labelled"] + record["n_frames"], "test": errors})
    return rows


def table(rows: list[dict]) -> str:
    """Labels spent against the champion's test-set errors, one line per iteration."""
    lines = ["iteration  labelled  test F (meV/Å)  test E (meV/atom)"]
    for row in rows:
        overall = row["test"].get("all", {})
        lines.append(
            f"{row['iteration']:9d}  {row['n_labelled']:8d}  {overall.get('rmse_f_mev_per_a', float('nan')):14.1f}  "
            f"{overall.get('rmse_e_mev_per_atom', float('nan')):17.2f}"
        )
    return "\n".join(lines)
