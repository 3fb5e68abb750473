"""A committee of models and what its disagreement says about a frame.

K models fine-tuned from one foundation on one dataset, differing only in their seed (and,
as an option, in a bootstrap resample of the training side), disagree where the data leaves
the fit loose; what members sharing a foundation cannot see is measured in the docs (Active
learning). Their disagreement on a frame is measured as dpgen2 does:

    force deviation   = max over atoms i of  sqrt( 1/K * sum_k | F_ik - mean_k F_ik |^2 )
    energy deviation  = std over k of E_k, divided by the number of atoms

(eV/Å and eV/atom; the population standard deviation, 1/K, as dpgen2). The force deviation of
the worst atom decides, because one badly predicted atom is enough to break a simulation.

With two trust levels a frame is *accurate* below `trust_lo` (the committee agrees: labelling
it teaches little), a *candidate* from `trust_lo` up to `trust_hi` (worth labelling), and
*failed* above `trust_hi` (so far from the data that the structure is likely unphysical; it is
never labelled). dpgen2's example levels are 0.05 and 0.50 eV/Å.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms

from traincraft_assets.core.artifacts import CommitteeMember, FinetunedModel, SelectedFrames
from traincraft_assets.core.frames import get_label, read_frames, write_frames
from traincraft_assets.core.training.base import Launch, OnOutput, Trainer, TrainResult
from traincraft_assets.core.training.finetune import Upstream, plan_training, train_model
from traincraft_assets.core.training.mace import TrainSettings

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"
BUCKETS = (ACCURATE, CANDIDATE, FAILED)
FORCE_DEVIATION_KEY = "committee_force_deviation"  # eV/Å, in a scored frame's info
ENERGY_DEVIATION_KEY = "committee_energy_deviation"  # eV/atom, in a scored frame's info
LOOP_BATCH_PREFIX = "loop-"  # the loop's inbox batches: loop-<iteration>-<picks' sha256>.xyz


@dataclass(frozen=True)
class TrustLevels:
    trust_lo: float = field(
        default=0.05, metadata={"help": "force deviation (eV/Å) below which the committee agrees: accurate"}
    )
    trust_hi: float = field(
        default=0.5,
        metadata={"help": "force deviation (eV/Å) above which a frame failed: never labelled, MD stops"},
    )

    def problems(self) -> list[str]:
        if not 0 <= self.trust_lo < self.trust_hi:
            return [
                f"trust levels must satisfy 0 <= trust_lo < trust_hi; got trust_lo={self.trust_lo}, "
                f"trust_hi={self.trust_hi} (eV/Å). dpgen2's example levels are 0.05 and 0.50."
            ]
        return []

    def bucket(self, force_deviation: float) -> str:
        if not np.isfinite(force_deviation) or force_deviation > self.trust_hi:
            return FAILED
        return ACCURATE if force_deviation < self.trust_lo else CANDIDATE


def force_deviation(forces: np.ndarray) -> float:
    """dpgen2's max atomic force deviation of a committee's forces, shape (K, atoms, 3)."""
    forces = np.asarray(forces, dtype=float)
    if forces.ndim != 3 or forces.shape[0] < 2 or forces.shape[2] != 3:
        raise ValueError(f"committee forces must have shape (K >= 2, atoms, 3); got {forces.shape}.")
    spread = forces - forces.mean(axis=0)
    return float(np.sqrt((spread**2).sum(axis=2).mean(axis=0)).max())


def energy_deviation_per_atom(energies: Sequence[float], n_atoms: int) -> float:
    """The committee's energy standard deviation per atom (eV/atom)."""
    return float(np.std(np.asarray(energies, dtype=float)) / n_atoms)


def scored(atoms: Atoms, energies: Sequence[float], forces: np.ndarray) -> Atoms:
    """`atoms` with its committee deviations written into its info."""
    atoms.info[FORCE_DEVIATION_KEY] = force_deviation(forces)
    atoms.info[ENERGY_DEVIATION_KEY] = energy_deviation_per_atom(energies, len(atoms))
    return atoms


def deviation_and_error(
    models: Sequence, frames: Sequence[Atoms], device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Per labelled frame: the committee's force deviation, and the true error of its mean
    prediction, max over atoms of |mean_k F_ik - F_i(reference)| (eV/Å). Whether the first
    ranks frames like the second is what makes the deviation worth selecting on."""
    from traincraft_assets.core.evaluation import predict

    if len(models) < 2:
        raise ValueError(f"a committee needs at least 2 models to disagree; got {len(models)}.")
    predictions = [predict(model, frames, device=device) for model in models]
    deviation, error = [], []
    for i, atoms in enumerate(frames):
        forces = np.stack([p[i].forces for p in predictions])
        deviation.append(force_deviation(forces))
        error.append(float(np.linalg.norm(forces.mean(axis=0) - get_label(atoms, "forces"), axis=1).max()))
    return np.array(deviation), np.array(error)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: 1 when y grows wherever x does, 0 for no relation."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def convergence(frames: Sequence[Atoms], trust: TrustLevels, bins: int = 20) -> dict:
    """How many frames fall in each bucket (and fractions), and a histogram of the force
    deviation on a log axis from trust_lo/10 to trust_hi*10 (frames outside land in the end bins)."""
    deviations = np.array([a.info[FORCE_DEVIATION_KEY] for a in frames], dtype=float)
    counts = {name: 0 for name in BUCKETS}
    for value in deviations:
        counts[trust.bucket(value)] += 1
    n = len(deviations)
    low = max(trust.trust_lo / 10, 1e-4)
    edges = np.geomspace(low, trust.trust_hi * 10, bins + 1)
    finite = np.clip(deviations[np.isfinite(deviations)], edges[0], edges[-1])
    hist, _ = np.histogram(finite, bins=edges)
    return {
        "n_frames": n,
        **{f"n_{name}": counts[name] for name in BUCKETS},
        **{f"{name}_fraction": (counts[name] / n if n else float("nan")) for name in BUCKETS},
        "histogram": {"edges_ev_per_a": edges.tolist(), "counts": hist.tolist()},
        "trust_lo": trust.trust_lo,
        "trust_hi": trust.trust_hi,
    }


def farthest_points(vectors: np.ndarray, n: int, first: int) -> list[int]:
    """`n` row indices of `vectors` chosen by farthest-point sampling from row `first`: each
    next pick is the row farthest (Euclidean) from every row picked so far."""
    vectors = np.asarray(vectors, dtype=float)
    n = min(n, len(vectors))
    if n <= 0:
        return []
    picked = [first]
    nearest = np.linalg.norm(vectors - vectors[first], axis=1)
    while len(picked) < n:
        nearest[picked] = -1.0
        nxt = int(np.argmax(nearest))
        picked.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(vectors - vectors[nxt], axis=1))
    return picked


@dataclass(frozen=True)
class Selection:
    picked: list[int]  # indices into the scored frames, in the order picked
    n_candidates: int  # frames between the trust levels
    n_known: int  # candidates whose structure the dataset already holds (never picked)
    n_repeated: int  # candidates seen earlier in this iteration's trajectories


Diversity = Literal["fps", "deviation"]


@dataclass(frozen=True)
class SelectSettings:
    max_candidates: int = field(default=20, metadata={"help": "N: at most this many frames labelled per iteration"})
    diversity: Diversity = field(
        default="fps",
        metadata={
            "help": "fps: farthest-point sampling on the committee's descriptors, from the most uncertain frame; "
            "deviation: the most uncertain frames"
        },
    )


@dataclass(frozen=True)
class LoopSettings:
    conv_accuracy: float = field(
        default=0.9, metadata={"help": "the loop stops once this fraction of explored frames is accurate"}
    )
    max_iterations: int = field(default=10, metadata={"help": "and after this many iterations at most"})


def loop_batch_name(iteration: int, picks_sha256: str) -> str:
    """The inbox batch of an iteration's picks: the iteration, then the picks' content."""
    return f"{LOOP_BATCH_PREFIX}{iteration:03d}-{picks_sha256[:12]}.xyz"


def loop_iteration(registrations: Sequence[dict], candidates_sha256: str) -> int:
    """This iteration's number, from the inbox's registrations: the one these candidates already
    made a batch in, else one more than the loop's batches so far (retired ones count: they
    were iterations)."""
    made = [r["origin"] for r in registrations if r.get("origin", {}).get("asset") == SelectedFrames.asset]
    for origin in made:
        if origin.get("candidates") == candidates_sha256:
            return origin["iteration"]
    return 1 + len(made)


def stop_reason(summary: dict, settings: LoopSettings, iteration: int, picked: bool) -> str | None:
    """Why the loop stops at this iteration (`summary`: convergence's), None to go on."""
    if summary["accurate_fraction"] >= settings.conv_accuracy:
        return (
            f"converged: {100 * summary['accurate_fraction']:.0f}% of explored frames are accurate "
            f"(conv_accuracy {100 * settings.conv_accuracy:.0f}%)"
        )
    if iteration > settings.max_iterations:
        return f"max_iterations ({settings.max_iterations}) reached"
    if not picked:
        return "no new candidate: every candidate is already in the dataset"
    return None


def select_candidates(
    frames: Sequence[Atoms],
    fingerprints: Sequence[str],
    trust: TrustLevels,
    cap: int,
    known: set[str],
    describe: Callable[[list[Atoms]], np.ndarray] | None = None,
) -> Selection:
    """At most `cap` candidates, none whose fingerprint is in `known` (the dataset's), each
    structure once. With `describe` (frames -> one descriptor row each) the picks are spread by
    farthest-point sampling starting from the most uncertain candidate; without, the most
    uncertain candidates are taken in order."""
    deviation = [a.info[FORCE_DEVIATION_KEY] for a in frames]
    candidates = [i for i, d in enumerate(deviation) if trust.bucket(d) == CANDIDATE]
    fresh, seen, n_known, n_repeated = [], set(), 0, 0
    for i in candidates:
        if fingerprints[i] in known:
            n_known += 1
        elif fingerprints[i] in seen:
            n_repeated += 1
        else:
            seen.add(fingerprints[i])
            fresh.append(i)
    if not fresh or cap <= 0:
        return Selection([], len(candidates), n_known, n_repeated)
    most = max(range(len(fresh)), key=lambda j: (deviation[fresh[j]], -j))
    if describe is None:
        order = sorted(range(len(fresh)), key=lambda j: (-deviation[fresh[j]], j))[:cap]
    else:
        order = farthest_points(describe([frames[i] for i in fresh]), cap, most)
    return Selection([fresh[j] for j in order], len(candidates), n_known, n_repeated)


def structure_descriptors(model_path: str, frames: Sequence[Atoms], device: str = "cpu") -> np.ndarray:
    """One vector per frame: the model's invariant per-atom descriptors, averaged over atoms
    (MACE's own `get_descriptors`). Frames close in this space look alike to the model."""
    from mace.calculators import MACECalculator

    calculator = MACECalculator(model_paths=model_path, device=device, default_dtype="float64")
    return np.stack([calculator.get_descriptors(atoms, invariants_only=True).mean(axis=0) for atoms in frames])


# ---- training the committee ---------------------------------------------------------------


@dataclass
class CommitteeSettings:
    members: int = field(default=4, metadata={"help": "K: models in the committee, one partition (and pod) each"})
    bootstrap: bool = field(
        default=False, metadata={"help": "each member trains on its own bootstrap resample of the training side"}
    )
    champion_member: bool = field(
        default=False,
        metadata={
            "help": "member-0 is the serving champion, not trained again (trained as the others until one serves)"
        },
    )
    training: TrainSettings = field(
        default_factory=TrainSettings,
        metadata={"help": "each member's fine-tuning; member k trains with seed + k"},
    )

    def problems(self) -> list[str]:
        if self.members < 2:
            return [f"a committee needs at least 2 members to disagree; members is {self.members}."]
        return []


def member_name(k: int) -> str:
    return f"member-{k}"


def member_index(name: str, members: int) -> int:
    """k of partition `member-k`, refused when the committee has no such member."""
    prefix, _, number = name.partition("-")
    if prefix != "member" or not number.isdigit() or int(number) >= members:
        raise ValueError(
            f"partition {name!r} is not a member of a committee of {members} "
            f"({member_name(0)} ... {member_name(members - 1)}); raise `members` or pick another partition."
        )
    return int(number)


def committee_key(settings: CommitteeSettings, data_versions: dict) -> str:
    """What makes members one committee: the same inputs, settings and size (seeds aside)."""
    record = {"settings": dataclasses.asdict(settings), "inputs": data_versions}
    record["settings"]["training"].pop("device")
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _member_record(record: dict, member: int, seed: int | None, settings: CommitteeSettings, upstream: Upstream) -> str:
    return json.dumps(
        {
            **record,
            "member": member,
            "seed": seed,
            "committee": committee_key(settings, upstream.data_versions),
            "members": settings.members,
            "bootstrap": settings.bootstrap,
        },
        indent=1,
    )


def champion_member(
    champion: FinetunedModel, settings: CommitteeSettings, upstream: Upstream, out: CommitteeMember, record: dict
) -> None:
    """Member 0 as the serving champion's model, copied (its manifest says how it was trained):
    the committee then measures doubt around the model that serves."""
    for entry in (champion.model_path, champion.deploy_model_path, champion.manifest_path):
        shutil.copy2(entry, out.path / entry.name)
    out.record_path.write_text(
        _member_record({**record, "from_champion": champion.sha256}, 0, None, settings, upstream)
    )


def train_member(
    member: int,
    settings: CommitteeSettings,
    trainer: Trainer,
    upstream: Upstream,
    work_root: Path,
    launch: Launch,
    out: CommitteeMember,
    on_output: OnOutput,
    record: dict,
) -> TrainResult:
    """Member `member`: the committee's training with seed + member (on a bootstrap resample of
    the training side when asked), written into `out` as finetuned_model writes a model, with
    member.json (`record` plus seed and committee)."""
    training = dataclasses.replace(settings.training, seed=settings.training.seed + member)
    plan = plan_training(trainer, training, upstream, work_root, launch)
    if settings.bootstrap:
        train = read_frames(plan.inputs.train_file)
        picks = np.random.default_rng(training.seed).integers(len(train), size=len(train))
        plan.workdir = plan.workdir.with_name(plan.workdir.name + "-bootstrap")  # not the plain training's
        resample = plan.workdir.with_name(plan.workdir.name + ".xyz")
        resample.parent.mkdir(parents=True, exist_ok=True)
        write_frames(resample, [train[i] for i in picks])
        plan.inputs = dataclasses.replace(plan.inputs, train_file=resample)
    result = train_model(plan, out, on_output, dataclasses.asdict(settings))
    out.record_path.write_text(_member_record(record, member, training.seed, settings, upstream))
    plan.release()
    if settings.bootstrap:
        resample.unlink(missing_ok=True)
    return result
