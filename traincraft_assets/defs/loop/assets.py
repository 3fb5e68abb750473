"""The active-learning loop as assets: committee (one partition per member), exploration (one
partition per walk: structure and temperature), candidates (every explored frame judged, the
picks), selected_frames (the picks as a new batch in the inbox, where the inbox sensor,
labelling, dataset, split, fine-tuning, gates and champion take over)."""

import json
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import dagster as dg

from traincraft_assets.core.artifacts import (
    Candidates,
    ChampionModel,
    CommitteeMember,
    Dataset,
    Exploration,
    FinetunedModel,
    FoundationModel,
    ReplaySubset,
    SelectedFrames,
    Split,
)
from traincraft_assets.core.committee import (
    BUCKETS,
    FORCE_DEVIATION_KEY,
    CommitteeSettings,
    LoopSettings,
    SelectSettings,
    TrustLevels,
    champion_member,
    convergence,
    loop_batch_name,
    loop_iteration,
    member_index,
    member_name,
    select_candidates,
    stop_reason,
    structure_descriptors,
    train_member,
)
from traincraft_assets.core.dataset import FINGERPRINT_KEY
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.exploration import (
    ExploreSettings,
    committee_calculator,
    parse_walk,
    run_walk,
    start_problems,
    walk_names,
)
from traincraft_assets.core.frames import (
    FrameError,
    count_frames,
    fingerprint,
    iter_frames,
    read_frames,
    write_frames,
)
from traincraft_assets.core.labelling import computing_labellers, labeller_problems
from traincraft_assets.core.manifest import utc_now
from traincraft_assets.core.plots import deviation_histogram_figure, figure_thumbnail_base64, save_figure
from traincraft_assets.core.store import file_sha256
from traincraft_assets.core.training import DEFAULT_TRAINER, TrainConfigError, get_trainer
from traincraft_assets.core.training.finetune import Upstream, preflight_training
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import settings_config
from traincraft_assets.defs.partitions import committee_members, exploration_walks
from traincraft_assets.defs.steps import EveryPartition, Step, artifact_asset

CommitteeConfig = settings_config(
    "CommitteeConfig",
    CommitteeSettings,
    "K models fine-tuned alike but for their seed (docs: Active learning).",
)


def _committee_fits(config, run) -> list[str]:
    settings = config.to_settings()
    problem = preflight_training(get_trainer(DEFAULT_TRAINER), settings.training, run.data, run.foundation, run.launch)
    return settings.problems() + ([problem] if problem else [])


@artifact_asset(
    CommitteeMember,
    reads=[Split, ReplaySubset, FoundationModel, ChampionModel, FinetunedModel],
    config=CommitteeConfig,
    preflight=_committee_fits,
    profile="gpu",
    partitions_def=committee_members,
    group_name="loop",
    kinds={"pytorch"},
)
def committee(step: Step, config) -> dg.MaterializeResult:
    """One committee member: fine-tuned on the current split from the foundation, with its own
    seed (and bootstrap resample, if asked); the members disagree where the data is thin."""
    settings = config.to_settings()
    prefix = f"{step.partition}: "
    with step.refusing(ValueError, prefix=prefix):
        member = member_index(step.partition, settings.members)
    trainer = get_trainer(DEFAULT_TRAINER)
    uses = trainer.uses(settings.training)
    upstream = Upstream(
        split=step.read(Split),
        foundation=step.read(FoundationModel) if uses.foundation else None,
        replay=step.read(ReplaySubset) if uses.replay else None,
    )
    champion = step.latest(ChampionModel)
    serving = champion.record["finetuned_model"] if champion else None
    record = {"trained_at": utc_now(), "champion_serving": serving}
    if settings.champion_member and member == 0 and serving is not None:
        model = step.open(FinetunedModel, serving)
        artifact, _ = step.write(lambda out: champion_member(model, settings, upstream, out, record))
        step.log.info(f"{step.partition} is the serving champion, fine-tuned model {serving[:12]}…")
        best = {}
    else:
        with step.refusing(TrainConfigError, prefix=prefix), step.training(prefix):
            artifact, result = step.write(
                lambda out: train_member(
                    member, settings, trainer, upstream, step.store.work_root, step.launch, out, step.log.info, record
                )
            )
        best = result.best
    return step.materialized(
        artifact,
        {
            "member": member,
            "seed": -1 if artifact.record["seed"] is None else artifact.record["seed"],
            "committee": artifact.record["committee"],
            "champion_serving": str(serving),
            "from_champion": artifact.record.get("from_champion", ""),
            "valid_rmse_f_mev_per_a_best": 1000 * best.get("rmse_f", float("nan")),
            "deploy_model_path": dg.MetadataValue.path(str(artifact.deploy_model_path)),
        },
    )


def current_committee(step: Step) -> list[CommitteeMember]:
    """The members of the committee trained last: the one the most recently trained member
    belongs to. Every one of its K members must be there, else the step fails naming them."""
    names = instance.partition_keys(step.context.instance, committee_members)
    found = [m for name in names if (m := step.latest(CommitteeMember, name)) is not None]
    if not found:
        raise dg.Failure(
            "no committee member has been trained: materialize committee for its partitions "
            "(`traincraft explore` registers member-0 ... member-K-1 and trains them).",
            allow_retries=False,
        )
    newest = max(found, key=lambda m: m.record["trained_at"])
    key, size = newest.record["committee"], newest.record["members"]
    members = {m.record["member"]: m for m in found if m.record["committee"] == key}
    missing = [f"member-{k}" for k in range(size) if k not in members]
    if missing:
        raise dg.Failure(
            f"the committee trained last ({key[:12]}…, {size} members) is incomplete: {missing} were not "
            "trained with it (same split, foundation and committee config). Materialize committee for them.",
            allow_retries=False,
        )
    return [members[k] for k in range(size)]


ExploreConfig = settings_config(
    "ExploreConfig",
    ExploreSettings,
    "Committee MD from starting structures, one walk per structure and temperature (docs: Active learning).",
)


def _explore_fits(config, run) -> list[str]:
    return start_problems(config.to_settings(), run.foundation["elements"] if run.foundation else None)


@artifact_asset(
    Exploration,
    reads=[EveryPartition(CommitteeMember)],
    config=ExploreConfig,
    preflight=_explore_fits,
    profile="gpu",
    partitions_def=exploration_walks,
    group_name="loop",
    kinds={"ase"},
)
def exploration(step: Step, config) -> dg.MaterializeResult:
    """One walk: MD with the committee from one starting structure at one temperature, each saved
    frame scored; stops early where the committee's force deviation passes trust_hi."""
    settings = config.to_settings()
    with step.refusing(ValueError, FrameError, prefix=f"walk {step.partition}: "):
        structure, temperature = parse_walk(step.partition)
        if temperature not in settings.temperatures_k:
            raise ValueError(f"{temperature:g} K is not in temperatures_k {list(settings.temperatures_k)}.")
        starts = read_frames(settings.structures)
        if structure >= len(starts):
            raise ValueError(
                f"{settings.structures} holds {len(starts)} structures; there is no structure {structure}."
            )
    members = current_committee(step)
    calculator = committee_calculator([str(m.deploy_model_path) for m in members], resolve_device("auto"))
    report_every = max(1, settings.steps // 10)

    def progress(md_step: int, deviation: float) -> None:
        if md_step % report_every < settings.save_interval:
            step.log.info(
                f"walk {step.partition}: step {md_step}/{settings.steps}, force deviation {deviation:.3f} eV/Å"
            )

    result = run_walk(starts[structure], structure, temperature, calculator, settings, progress)
    record = {
        "walk": step.partition,
        "structure": structure,
        "temperature_k": temperature,
        "committee": members[0].record["committee"],
        "members": [m.sha256 for m in members],
        "trust_lo": settings.trust.trust_lo,
        "trust_hi": settings.trust.trust_hi,
        "ensemble": settings.ensemble,
        **result.record(),
    }

    def fill(out: Exploration) -> None:
        write_frames(out.frames_path, result.frames)
        out.record_path.write_text(json.dumps(record, indent=1))

    artifact, _ = step.write(fill)
    deviations = [a.info[FORCE_DEVIATION_KEY] for a in result.frames]
    where = f"stopped at step {result.stopped_at}" if result.stopped_at is not None else "ran to the end"
    step.log.info(f"walk {step.partition}: {result.steps_run} steps, {len(result.frames)} frames saved, {where}")
    return step.materialized(
        artifact,
        {
            "steps_run": result.steps_run,
            "n_saved": len(result.frames),
            "stopped_early": result.stopped_at is not None,
            "stopped_at_step": -1 if result.stopped_at is None else result.stopped_at,
            "max_force_deviation_ev_per_a": max(deviations, default=0.0),
            "committee": record["committee"],
        },
    )


CandidatesConfig = settings_config("CandidatesConfig", SelectSettings, "How many explored frames to pick, and how.")


@artifact_asset(
    Candidates,
    reads=[EveryPartition(Exploration), EveryPartition(CommitteeMember), Dataset],
    config=CandidatesConfig,
    profile="gpu",
    group_name="loop",
    kinds={"ase"},
)
def candidates(step: Step, config) -> dg.MaterializeResult:
    """Every frame the current committee's walks saved, bucketed by its force deviation
    (accurate / candidate / failed), and at most N candidates picked for labelling: diverse,
    none the dataset already holds."""
    settings = config.to_settings()
    members = current_committee(step)
    key = members[0].record["committee"]
    walks, stale = [], []
    for name in instance.partition_keys(step.context.instance, exploration_walks):
        walk = step.latest(Exploration, name)
        if walk is not None:
            (walks if walk.record["committee"] == key else stale).append(walk)
    if stale:
        step.log.warning(f"walks explored with an earlier committee, left out: {[w.record['walk'] for w in stale]}")
    if not walks:
        raise dg.Failure(
            f"no walk was explored with the current committee ({key[:12]}…): materialize exploration first.",
            allow_retries=False,
        )
    levels = {(w.record["trust_lo"], w.record["trust_hi"]) for w in walks}
    if len(levels) > 1:
        raise dg.Failure(
            f"the walks were explored with different trust levels {sorted(levels)}; explore them again with one "
            "exploration config, so every frame is judged alike.",
            allow_retries=False,
        )
    trust = TrustLevels(*levels.pop())
    frames = [a for w in walks for a in read_frames(w.frames_path)]
    known = {a.info[FINGERPRINT_KEY] for a in iter_frames(step.read(Dataset).frames_path)}
    device = resolve_device("auto")

    def describe(picks):
        return structure_descriptors(str(members[0].deploy_model_path), picks, device)

    selection = select_candidates(
        frames,
        [fingerprint(a) for a in frames],
        trust,
        settings.max_candidates,
        known,
        describe if settings.diversity == "fps" else None,
    )
    summary = {
        **convergence(frames, trust),
        "n_candidates": selection.n_candidates,
        "n_known": selection.n_known,
        "n_repeated": selection.n_repeated,
        "n_picked": len(selection.picked),
        "committee": key,
        "walks": [w.record for w in walks],
    }
    figure = deviation_histogram_figure(summary, "committee force deviation")
    thumbnail = figure_thumbnail_base64(figure)

    def fill(out: Candidates) -> None:
        write_frames(out.scored_path, frames)
        if selection.picked:
            write_frames(out.picked_path, [frames[i] for i in selection.picked])
        out.convergence_path.write_text(json.dumps(summary, indent=1))
        save_figure(figure, out.histogram_path)

    artifact, _ = step.write(fill)
    step.log.info(
        f"{summary['n_frames']} explored frames: {100 * summary['accurate_fraction']:.0f}% accurate, "
        f"{100 * summary['candidate_fraction']:.0f}% candidates, {100 * summary['failed_fraction']:.0f}% failed; "
        f"picked {len(selection.picked)} (of {selection.n_candidates} candidates; {selection.n_known} already in "
        "the dataset)"
    )
    return step.materialized(
        artifact,
        {
            **{k: summary[k] for k in ("n_frames", "n_candidates", "n_known", "n_picked")},
            **{f"{b}_fraction": summary[f"{b}_fraction"] for b in BUCKETS},
            "committee": key,
            "deviation_histogram": dg.MetadataValue.md(f"![deviation histogram](data:image/png;base64,{thumbnail})"),
            "histogram_path": dg.MetadataValue.path(str(artifact.histogram_path)),
        },
    )


SelectedFramesConfig = settings_config(
    "SelectedFramesConfig",
    LoopSettings,
    "Where the loop stops, and who labels what it picks.",
    extra={
        "labeller": (
            Literal[computing_labellers()],
            "command",
            "labels the picked frames with labelled_frames' options (command: your program, set there)",
        )
    },
)


def _labeller_fits(config, run) -> list[str]:
    return labeller_problems(config.labeller, run.config("labelled_frames").to_settings(), run.roots)


@artifact_asset(
    SelectedFrames,
    reads=[Candidates],
    config=SelectedFramesConfig,
    preflight=_labeller_fits,
    resources=["inbox"],
    group_name="loop",
    kinds={"ase"},
)
def selected_frames(step: Step, config) -> dg.MaterializeResult:
    """The picked frames as a new batch in the inbox, named by iteration and content, to be
    labelled by the configured labeller; or, once the loop has converged or spent its
    iterations, the reason it stops."""
    settings = config.to_settings()
    picked = step.read(Candidates)
    summary = picked.convergence
    inbox = step.context.resources.inbox.inbox()
    iteration = loop_iteration(inbox.registrations(), picked.sha256)
    stop = stop_reason(summary, settings, iteration, picked.picked_path.is_file())
    record = {
        "iteration": iteration,
        "candidates": picked.sha256,
        "committee": summary["committee"],
        "accurate_fraction": summary["accurate_fraction"],
        "stopped": stop,
    }
    if stop is None:
        name = loop_batch_name(iteration, file_sha256(picked.picked_path))
        origin = {k: record[k] for k in ("iteration", "candidates", "committee")} | {"asset": SelectedFrames.asset}
        with tempfile.TemporaryDirectory() as tmp:  # the batch's name is its file name
            named = Path(tmp) / name
            shutil.copyfile(picked.picked_path, named)
            (batch,) = inbox.ingest([named], declared={"labeller": config.labeller, "origin": origin})
        record |= {"batch": batch.name, "labeller": config.labeller, "n_frames": batch.n_frames}
        step.log.info(f"iteration {iteration}: {batch.n_frames} frames put in the inbox as batch {batch.name!r}")
    else:
        step.log.info(f"iteration {iteration}: the loop stops, {stop}")

    def fill(out: SelectedFrames) -> None:
        if stop is None:
            shutil.copyfile(picked.picked_path, out.frames_path)
        out.record_path.write_text(json.dumps(record, indent=1))

    artifact, _ = step.write(fill)
    return step.materialized(
        artifact,
        {
            "iteration": iteration,
            "stopped": stop or "",
            "batch": record.get("batch", ""),
            "labeller": record.get("labeller", ""),
            "n_frames": record.get("n_frames", 0),
            "accurate_fraction": summary["accurate_fraction"],
        },
    )


def _loop_settings(run_config: dict) -> tuple[CommitteeSettings, ExploreSettings]:
    ops = run_config.get("ops", {})
    return (
        CommitteeConfig(**ops.get(CommitteeMember.asset, {}).get("config", {})).to_settings(),
        ExploreConfig(**ops.get(Exploration.asset, {}).get("config", {})).to_settings(),
    )


def loop_problems(run_config: dict, foundation_elements: list[str] | None) -> list[str]:
    """What would stop an iteration, found before its committee trains: the committee's size,
    and the exploration's settings and starting structures (core.exploration.start_problems).
    The labeller's own problems are the runs' preflight's (it knows the project's roots)."""
    committee_settings, explore = _loop_settings(run_config)
    return [*committee_settings.problems(), *start_problems(explore, foundation_elements)]


def iteration_partitions(run_config: dict) -> tuple[list[str], list[str]]:
    """The committee members and walks one iteration runs, from a whole-graph run config (its
    committee and exploration entries, defaults filled in): whoever starts an iteration
    registers them (`traincraft explore`, the loop sensor), after `loop_problems`."""
    committee_settings, explore = _loop_settings(run_config)
    n_structures = count_frames(explore.structures) if explore.structures else 0
    return [member_name(k) for k in range(committee_settings.members)], walk_names(n_structures, explore.temperatures_k)
