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
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np

from traincraft_assets.app import champion
from traincraft_assets.app.batches import ingest
from traincraft_assets.app.demo import run_job
from traincraft_assets.core.artifacts import (
    Candidates,
    CommitteeMember,
    Exploration,
    FinetunedModel,
    FoundationModel,
    SelectedFrames,
)
from traincraft_assets.core.committee import LoopSettings, deviation_and_error, rank_correlation
from traincraft_assets.core.demo import loop_data
from traincraft_assets.core.evaluation import evaluate
from traincraft_assets.core.frames import CONFIG_TYPE_KEY, fingerprint, read_frames, write_frames
from traincraft_assets.core.inbox import Inbox
from traincraft_assets.core.metrics import to_mev
from traincraft_assets.core.models import load_model
from traincraft_assets.core.plots import loop_figure, save_figure
from traincraft_assets.core.settings import Settings
from traincraft_assets.core.store import ArtifactStore
from traincraft_assets.defs import instance
from traincraft_assets.defs.definitions import build_defs
from traincraft_assets.defs.jobs import EXPLORE, FINETUNE, LABEL_BATCH, SELECT_FRAMES, STAGE_FOUNDATION, TRAIN_COMMITTEE
from traincraft_assets.defs.loop.assets import iteration_partitions, loop_problems
from traincraft_assets.defs.partitions import committee_members, exploration_walks

Say = Callable[[str], None]

# What `--quick` changes: a committee of 2, short walks, short trainings on a smaller replay set;
# three iterations: 6.5 minutes on 2 idle cores. The fine-tuning runs (two per iteration: the
# loop's and the random arm's) are most of the time. With 24 replay frames the forgetting gate
# fails every model, so the champion stays; the demo's 96 passed it but tripled the trainings.
QUICK = {
    "committee": {"members": 2, "max_num_epochs": 4},
    "exploration": {"temperatures_k": [600], "steps": 100, "save_interval": 5},
    "candidates": {"max_candidates": 6},
    "selected_frames": {"max_iterations": 3},
    "replay_subset": {"num_samples": 24, "num_heldout": 10},
    "finetuned_model": {"max_num_epochs": 6},
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
    model = load_model(store.open(FinetunedModel, sha).deploy_model_path)
    return {
        kind: {"rmse_f_mev_per_a": to_mev(row["rmse_f"]), "rmse_e_mev_per_atom": to_mev(row["rmse_e_per_atom"])}
        for kind, row in evaluate(model, test).by_config_type.items()
    }


def _errors_line(errors: dict) -> str:
    overall = errors["all"]
    kinds = ", ".join(f"{k} {v['rmse_f_mev_per_a']:.0f}" for k, v in errors.items() if k != "all")
    return (
        f"test F {overall['rmse_f_mev_per_a']:.1f} meV/Å, E {overall['rmse_e_mev_per_atom']:.1f} meV/atom "
        f"(F by kind: {kinds})"
    )


def retrain(dagster_instance, defs, run_config: dict, batch: str, say: Say) -> dict:
    """Label `batch` (with the labeller it declares), fine-tune on every batch, gate, decide."""
    result = run_job(defs, LABEL_BATCH, dagster_instance, run_config, batch, say=lambda line: None)
    say(f"  labelled batch {batch!r} (run {result.run_id})")
    run_job(defs, FINETUNE, dagster_instance, run_config, say=lambda line: None)
    decision = champion.decide(dagster_instance, defs, loggers=run_config.get("loggers"))
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


class RandomArm:
    """The control arm: the same number of frames per iteration, drawn uniformly from the same
    walks' frames, labelled by the same labeller and trained on with the same config, in a
    project of its own (store and inbox under `root`, an in-memory instance)."""

    def __init__(self, root: Path, settings: Settings, run_config: dict, seed: int = 0):
        self.instance = dg.DagsterInstance.ephemeral()
        self.settings = dataclasses.replace(settings, store=root / "store", inbox=root / "inbox")
        self.defs = build_defs(self.settings)
        self.store = ArtifactStore(self.settings.store)
        self.run_config = run_config
        self.labeller = run_config["ops"][SelectedFrames.asset]["config"].get("labeller")
        self.rng = np.random.default_rng(seed)
        self.known: set[str] = set()

    def start(self, path: Path) -> None:
        (batch,) = ingest(self.instance, self.settings.inbox, [path])
        self.known |= {fingerprint(a) for a in read_frames(path)}
        run_job(self.defs, STAGE_FOUNDATION, self.instance, self.run_config, say=lambda line: None)
        self._train(batch.name)

    def add(self, iteration: int, walked: Path, n: int) -> None:
        """`n` frames drawn uniformly from the iteration's walked frames (none already labelled)."""
        frames = [a for a in read_frames(walked) if fingerprint(a) not in self.known]
        picks = [frames[i] for i in sorted(self.rng.choice(len(frames), size=min(n, len(frames)), replace=False))]
        self.known |= {fingerprint(a) for a in picks}
        path = self.settings.store.parent / f"random-{iteration:03d}.xyz"
        write_frames(path, picks)
        (batch,) = Inbox(self.settings.inbox).ingest([path], declared={"labeller": self.labeller})
        instance.register_batches(self.instance, [batch.name])
        self._train(batch.name)

    def _train(self, batch: str) -> None:
        run_job(self.defs, LABEL_BATCH, self.instance, self.run_config, batch, say=lambda line: None)
        run_job(self.defs, FINETUNE, self.instance, self.run_config, say=lambda line: None)

    def test_errors(self, test: list) -> dict:
        return test_errors(self.store, self.instance, test)


def committee_on_test(store: ArtifactStore, dagster_instance: dg.DagsterInstance, members: list[str], test) -> dict:
    """The last committee's force deviation against its true force error on the test set:
    Spearman's rank correlation, overall and per kind of frame."""
    models = [
        load_model(
            store.open(
                CommitteeMember, instance.latest_data_version(dagster_instance, CommitteeMember.asset, m)
            ).deploy_model_path
        )
        for m in members
    ]
    deviation, error = deviation_and_error(models, test)
    kinds = [a.info.get(CONFIG_TYPE_KEY, "") for a in test]
    per_kind = {
        kind: rank_correlation(deviation[mask], error[mask])
        for kind in sorted(set(kinds))
        if (mask := np.array([k == kind for k in kinds])).sum() > 2
    }
    return {"all": rank_correlation(deviation, error), **per_kind}


def run(
    dagster_instance: dg.DagsterInstance,
    defs: dg.Definitions,
    settings: Settings,
    run_config: dict,
    data_dir: Path,
    random_arm: bool = True,
    say: Say = print,
) -> dict:
    """The narrow start batch labelled and a first model trained on it, then iterations until
    selected_frames says the loop stops; beside it, the random arm. Returns the rows (labels
    spent, both arms' test-set errors, the accurate fraction), the committee's rank
    correlation on the test set, and the findings; writes them with a figure to `data_dir`."""
    store = ArtifactStore(settings.store)
    files = loop_data(data_dir)
    test = read_frames(files["test"])
    (start,) = ingest(dagster_instance, settings.inbox, [files["start"]])
    say(f"start: batch {start.name!r} ({start.n_frames} Cu bulk frames), test set {len(test)} frames of 5 kinds")
    run_job(defs, STAGE_FOUNDATION, dagster_instance, run_config, say=lambda line: None)
    retrain(dagster_instance, defs, run_config, start.name, say)
    control = RandomArm(data_dir / "random_arm", settings, run_config) if random_arm else None
    if control:
        control.start(files["start"])
    errors = test_errors(store, dagster_instance, test)
    rows = [
        {
            "iteration": 0,
            "n_labelled": start.n_frames,
            "loop": errors["all"],
            "random": control.test_errors(test)["all"] if control else None,
            "accurate_fraction": None,
        }
    ]
    say(f"  before the loop: {_errors_line(errors)}")
    n = run_config["ops"][SelectedFrames.asset]["config"].get("max_iterations", LoopSettings.max_iterations)
    members: list[str] = []
    for i in range(1, n + 1):
        record = iterate(dagster_instance, defs, run_config, i, n, say)
        members, _ = iteration_partitions(run_config)
        rows.append(
            {"iteration": i, "n_labelled": rows[-1]["n_labelled"], "accurate_fraction": record["accurate_fraction"]}
        )
        if record["stopped"]:
            say(f"the loop stops: {record['stopped']}")
            break
        instance.register_batches(dagster_instance, [record["batch"]])
        retrain(dagster_instance, defs, run_config, record["batch"], say)
        errors = test_errors(store, dagster_instance, test)
        rows[-1] |= {"n_labelled": rows[-2]["n_labelled"] + record["n_frames"], "loop": errors["all"]}
        say(f"  after iteration {i}, committee selection: {_errors_line(errors)}")
        if control:
            walked = store.open(Candidates, instance.latest_data_version(dagster_instance, Candidates.asset))
            control.add(i, walked.scored_path, record["n_frames"])
            random_errors = control.test_errors(test)
            rows[-1]["random"] = random_errors["all"]
            say(f"  after iteration {i}, random picks: {_errors_line(random_errors)}")
    correlation = committee_on_test(store, dagster_instance, members, test) if members else {}
    results = {"rows": rows, "rank_correlation": correlation, "findings": findings(rows, correlation)}
    write_results(results, data_dir)
    return results


def findings(rows: list[dict], correlation: dict) -> list[str]:
    """What the run shows, said either way: each arm's errors at equal labels, and whether the
    committee's deviation ranks the test frames like their true error."""
    out = []
    compared = [r for r in rows if r.get("loop") and r.get("random") and r["iteration"] > 0]
    for r in compared:
        f_loop, f_random = r["loop"]["rmse_f_mev_per_a"], r["random"]["rmse_f_mev_per_a"]
        e_loop, e_random = r["loop"]["rmse_e_mev_per_atom"], r["random"]["rmse_e_mev_per_atom"]
        out.append(
            f"at {r['n_labelled']} labelled frames: committee selection {f_loop:.1f} meV/Å and {e_loop:.1f} meV/atom, "
            f"random picks {f_random:.1f} meV/Å and {e_random:.1f} meV/atom: selection "
            f"{'better' if f_loop < f_random else 'not better'} on forces, "
            f"{'better' if e_loop < e_random else 'not better'} on energies"
        )
    if correlation:
        out.append(
            f"Spearman rank correlation between the last committee's force deviation and its true force error on "
            f"the test set: {correlation['all']:.2f} overall; by kind: "
            + ", ".join(f"{k} {v:.2f}" for k, v in correlation.items() if k != "all")
        )
    return out


def write_results(results: dict, directory: Path) -> None:
    """loop_vs_random.json, loop_vs_random.md (the table and findings) and loop_vs_random.png."""
    (directory / "loop_vs_random.json").write_text(json.dumps(results, indent=1))
    (directory / "loop_vs_random.md").write_text(
        table(results["rows"]) + "\n\n" + "\n".join(f"- {f}" for f in results["findings"]) + "\n"
    )
    save_figure(loop_figure(results["rows"]), directory / "loop_vs_random.png")


def table(rows: list[dict]) -> str:
    """Labels spent against both arms' test-set errors, one line per iteration (Markdown)."""
    lines = [
        "| iteration | labelled frames | selection: test F (meV/Å) | random: test F (meV/Å) | selection: test E (meV/atom) | random: test E (meV/atom) | accurate fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row[arm][key]:.1f}" if row.get(arm) else ""
            for key in ("rmse_f_mev_per_a", "rmse_e_mev_per_atom")
            for arm in ("loop", "random")
        ]
        fraction = "" if row.get("accurate_fraction") is None else f"{row['accurate_fraction']:.2f}"
        lines.append(f"| {row['iteration']} | {row['n_labelled']} | " + " | ".join(cells) + f" | {fraction} |")
    return "\n".join(lines)
