"""Multi-fidelity training on molecules, measured: many cheap labels (GFN2-xTB) and few expensive
ones (PySCF DFT) on small water clusters, set against the claims of Gardner et al.,
"Understanding multi-fidelity training of machine-learned force-fields" (CLAIMS).

The arms (ARMS) train tiny MACE models on the same budget (epochs, batch size, architecture)
and are scored on one held-out test set at the expensive level. The structures are generated
from a seed every run (milliseconds); their labels are cached in the data directory under the
content of the structures and the level of theory, with the CPU-seconds each frame cost, so a
rerun does not label again and still knows what the labels cost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from ase import Atoms

from traincraft_assets.core.evaluation import evaluate
from traincraft_assets.core.frames import (
    CONFIG_TYPE_KEY,
    LEVEL_KEY,
    FrameError,
    elements,
    fingerprint,
    get_label,
    labels_present,
    level_of,
    read_frames,
    write_frames,
)
from traincraft_assets.core.labelling import LABELLERS, LabelOptions, labeller_problems, level_of_theory
from traincraft_assets.core.metrics import to_mev
from traincraft_assets.core.models import describe_file, load_model
from traincraft_assets.core.plots import fidelity_figure, save_figure
from traincraft_assets.core.processes import temporarily
from traincraft_assets.core.qm import QMOptions
from traincraft_assets.core.store import file_sha256
from traincraft_assets.core.training import Launch, TrainInputs, TrainResult, get_trainer
from traincraft_assets.core.training.mace import ModelShape, TrainSettings

CHEAP, EXPENSIVE = "xtb", "pyscf"  # the labellers of the two levels
COST_KEY = "label_cpu_s"  # on each cached labelled frame: CPU-seconds its labels took in this process

# Rigid water molecules placed at hydrogen-bond distances: O-O in [2.6, 3.3] Å, no two atoms of
# different molecules closer than MIN_DISTANCE (an H-bond's H...O is about 1.8-2.0 Å).
MIN_DISTANCE = 1.5
O_O_RANGE = (2.6, 3.3)

EXPENSIVE_ONLY = "expensive_only"
PRETRAIN_FINETUNE = "pretrain_finetune"
ENERGIES_FINETUNE = "pretrain_energies_finetune"
MULTIHEAD = "multihead"
ARMS = {
    EXPENSIVE_ONLY: "scratch on the expensive frames alone",
    PRETRAIN_FINETUNE: "scratch on the cheap frames (energies and forces), then naive fine-tuning on the expensive",
    ENERGIES_FINETUNE: "as pretrain_finetune, pre-trained on cheap energies only (forces_weight 0)",
    MULTIHEAD: "one model, one head per level (multifidelity) on both, the expensive head deployed",
}
CLAIMS = {
    "a": "pre-training on many cheap labels, then fine-tuning on few expensive ones, beats training on the "
    "expensive ones alone at equal expensive data",
    "b": "the pre-trained model's error (cheap level, valid set) and the fine-tuned model's error (expensive "
    "test set) lie on a line on log-log axes, across amounts of pre-training data",
    "c": "force labels in pre-training matter: pre-training on energies only helps much less",
    "d": "multi-headed training is marginally less accurate than pre-train/fine-tune in most cases, but lets "
    "cheap labels stand in for part of the expensive ones",
    "e": "the cost axis: the study assumes xTB:CC and DFT:CC labelling costs of 1:1000 and 1:10 (xTB:DFT 1:100)",
}
STUDY_XTB_TO_DFT = 100.0  # from the study's assumed 1:1000 (xTB:CC) and 1:10 (DFT:CC)


@dataclass
class FidelitySettings:
    """One comparison: how much data at each level, the expensive level, the shared budget."""

    cheap_sizes: Sequence[int] = (50, 150, 400)  # pre-training frames (claim b); the largest for every arm
    expensive_sizes: Sequence[int] = (5, 10, 20)  # expensive training frames; the smallest for claims b and c
    n_cheap_valid: int = 40
    n_expensive_valid: int = 5  # picks the kept epoch of the expensive trainings
    n_test: int = 30
    max_waters: int = 3
    method: str = "PBE"
    basis: str = "def2-svp"
    pyscf_threads: int = 1  # PySCF's OpenMP threads while labelling: CPU-seconds are then one core's seconds
    seed: int = 0
    training: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            strategy="scratch",
            e0s="average",
            shape=ModelShape(num_channels=16, max_L=0, r_max=4.0, num_interactions=2, correlation=2),
            max_num_epochs=40,
            batch_size=5,
            dtype="float64",
            device="cpu",
        )
    )

    def __post_init__(self):
        for name, values in (("cheap_sizes", self.cheap_sizes), ("expensive_sizes", self.expensive_sizes)):
            if not values or min(values) < 1:
                raise ValueError(f"{name}: {list(values)}; expected one or more frame counts, each at least 1.")
        counts = {
            "n_cheap_valid": self.n_cheap_valid,
            "n_expensive_valid": self.n_expensive_valid,
            "n_test": self.n_test,
            "max_waters": self.max_waters,
        }
        if too_few := {name: n for name, n in counts.items() if n < 1}:
            raise ValueError(f"{too_few}: expected at least 1 each (valid frames pick the kept epoch).")
        if self.training.batch_size > min(self.expensive_sizes):
            raise ValueError(
                f"batch_size {self.training.batch_size} is more than the fewest expensive frames "
                f"({min(self.expensive_sizes)}): MACE drops a last incomplete batch, so that training would see no "
                "frame. Lower batch_size or raise expensive_sizes."
            )


# What `--quick` changes: minutes on 2 cores (CI), and a cheaper expensive level.
QUICK = {
    "cheap_sizes": (40, 80),
    "expensive_sizes": (4, 8),
    "n_cheap_valid": 10,
    "n_expensive_valid": 3,
    "n_test": 8,
    "basis": "6-31g",
}
QUICK_TRAINING = {"max_num_epochs": 3, "batch_size": 4}  # a batch no larger than the fewest expensive frames


def quick_settings() -> FidelitySettings:
    defaults = FidelitySettings()
    return replace(defaults, **QUICK, training=replace(defaults.training, **QUICK_TRAINING))


# --- the molecules -----------------------------------------------------------------------------


def _random_axis(rng: np.random.Generator) -> np.ndarray:
    axis = rng.normal(size=3)
    return axis / np.linalg.norm(axis)


def _water(rng: np.random.Generator) -> Atoms:
    """One water molecule, thermally distorted (O-H ± 0.03 Å, H-O-H ± 5°), randomly oriented,
    its oxygen at the origin."""
    bonds = 0.9572 + rng.normal(0, 0.03, size=2)
    angle = np.radians(104.52 + rng.normal(0, 5.0))
    water = Atoms(
        "OH2",
        positions=[[0, 0, 0], [bonds[0], 0, 0], [bonds[1] * np.cos(angle), bonds[1] * np.sin(angle), 0]],
    )
    water.rotate(rng.uniform(0, 360), _random_axis(rng))
    return water


def _cluster(n_waters: int, rng: np.random.Generator) -> Atoms:
    """`n_waters` molecules, each placed at an O-O distance in O_O_RANGE from one already placed,
    in a random direction, kept only when no atom comes within MIN_DISTANCE of another molecule."""
    cluster = _water(rng)
    while len(cluster) < 3 * n_waters:
        for _ in range(1000):
            anchor = cluster.positions[3 * rng.integers(len(cluster) // 3)]  # an oxygen: each water is O, H, H
            water = _water(rng)
            water.translate(anchor + rng.uniform(*O_O_RANGE) * _random_axis(rng))
            gaps = np.linalg.norm(cluster.positions[:, None] - water.positions[None], axis=-1)
            if gaps.min() >= MIN_DISTANCE:
                cluster += water
                break
        else:  # not reached with these distances: a water fits beside any cluster of a few
            raise RuntimeError(
                f"could not place water {len(cluster) // 3 + 1} without overlaps in 1000 tries; expected room at "
                f"O-O {O_O_RANGE} Å with atoms {MIN_DISTANCE} Å apart. Widen O_O_RANGE or lower max_waters."
            )
    cluster.center()
    cluster.pbc = False
    cluster.info[CONFIG_TYPE_KEY] = f"water_{n_waters}"
    return cluster


def water_clusters(n: int, seed: int, max_waters: int = 3) -> list[Atoms]:
    """`n` water clusters of 1 to `max_waters` molecules, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [_cluster(int(rng.integers(1, max_waters + 1)), rng) for _ in range(n)]


@dataclass
class Structures:
    """The unlabelled structures: the training pool (the expensive training frames are its
    first ones, so they are also labelled cheaply), the valid set (the expensive valid frames
    its first ones), and the test set (expensive only). Nested subsets: the first n."""

    train: list[Atoms]
    valid: list[Atoms]
    test: list[Atoms]


def structures(settings: FidelitySettings) -> Structures:
    if max(settings.expensive_sizes) > max(settings.cheap_sizes):
        raise ValueError(
            f"expensive_sizes {list(settings.expensive_sizes)} go beyond the training pool of "
            f"{max(settings.cheap_sizes)} frames (the largest of cheap_sizes): the expensive training frames are "
            "a subset of the pool. Raise cheap_sizes or lower expensive_sizes."
        )
    if settings.n_expensive_valid > settings.n_cheap_valid:
        raise ValueError(
            f"n_expensive_valid {settings.n_expensive_valid} is more than n_cheap_valid {settings.n_cheap_valid}: "
            "the expensive valid frames are a subset of the valid set. Raise n_cheap_valid."
        )
    n_train, n_valid = max(settings.cheap_sizes), settings.n_cheap_valid
    frames = water_clusters(n_train + n_valid + settings.n_test, settings.seed, settings.max_waters)
    return Structures(frames[:n_train], frames[n_train : n_train + n_valid], frames[n_train + n_valid :])


# --- labels, and what they cost ---------------------------------------------------------------


def label_options(settings: FidelitySettings) -> dict[str, LabelOptions]:
    """Each labeller's options: GFN2-xTB as tblite's defaults, the expensive level as set."""
    return {
        CHEAP: LabelOptions(),
        EXPENSIVE: LabelOptions(qm=QMOptions(method=settings.method, basis=settings.basis)),
    }


def pyscf_threads(threads: int) -> contextlib.AbstractContextManager:
    """PySCF's OpenMP threads for a while: the CPU-seconds measured depend on them."""
    from pyscf import lib

    return temporarily(lib.num_threads, lib.num_threads, threads)


def labels_key(frames: Sequence[Atoms], level: str) -> str:
    """Names a labelled set by what decides its labels: the structures and the level of theory."""
    h = hashlib.sha256(level.encode())
    for atoms in frames:
        h.update(fingerprint(atoms).encode())
    return h.hexdigest()


def labelled(
    frames: Sequence[Atoms], labeller: str, options: LabelOptions, cache: Path, threads: int, say: Callable
) -> list[Atoms]:
    """`frames` labelled by `labeller`, each stamped with its level and the CPU-seconds its
    labels took (time.process_time around the labeller's call, one frame per call, so every
    thread of this process counts); read back from `cache` when these structures were labelled
    at this level before. A frame the labeller left unlabelled stops the comparison."""
    level = level_of_theory(labeller, options)
    path = Path(cache) / f"{labeller}-{labels_key(frames, level)[:16]}.xyz"
    if path.is_file():
        say(f"{len(frames)} frames at {level}: labelled earlier ({path})")
        return read_frames(path)
    label = LABELLERS[labeller]
    out = []
    with pyscf_threads(threads) if labeller == EXPENSIVE else contextlib.nullcontext():
        for index, atoms in enumerate(frames):
            start = time.process_time()
            (done,) = label([atoms], options)
            cost = time.process_time() - start
            if get_label(done, "energy") is None:
                raise FrameError(
                    f"frame {index} ({atoms.get_chemical_formula()}) of {len(frames)}: {labeller} left it unlabelled "
                    f"({done.info.get('label_error', 'no reason given')}); expected every frame labelled. Try another "
                    "seed, or raise the SCF's cycles."
                )
            done.info[LEVEL_KEY], done.info[COST_KEY] = level, cost
            out.append(done)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_frames(path.with_suffix(".partial"), out)
    path.with_suffix(".partial").rename(path)  # a labelled file is whole or absent
    say(f"{len(frames)} frames at {level}: {sum(cpu_seconds(out)):.1f} CPU-s")
    return out


def cpu_seconds(frames: Sequence[Atoms]) -> list[float]:
    return [float(atoms.info[COST_KEY]) for atoms in frames]


@dataclass
class Data:
    """The labelled sets: the pool and valid set at both levels (expensive: their first frames),
    the test set at the expensive level."""

    cheap_train: list[Atoms]
    cheap_valid: list[Atoms]
    expensive_train: list[Atoms]
    expensive_valid: list[Atoms]
    test: list[Atoms]

    @property
    def levels(self) -> dict[str, str]:
        return {CHEAP: level_of(self.cheap_train[0]), EXPENSIVE: level_of(self.test[0])}

    def cost_per_frame(self) -> dict[str, float]:
        """Mean labelling CPU-seconds per frame at each level, over every frame labelled."""
        cheap = cpu_seconds(self.cheap_train + self.cheap_valid)
        expensive = cpu_seconds(self.expensive_train + self.expensive_valid + self.test)
        return {CHEAP: float(np.mean(cheap)), EXPENSIVE: float(np.mean(expensive))}


def label_data(settings: FidelitySettings, cache: Path, say: Callable) -> Data:
    made = structures(settings)
    options = label_options(settings)
    n_expensive = max(settings.expensive_sizes)

    def at(labeller, frames):
        return labelled(frames, labeller, options[labeller], cache, settings.pyscf_threads, say)

    return Data(
        cheap_train=at(CHEAP, made.train),
        cheap_valid=at(CHEAP, made.valid),
        expensive_train=at(EXPENSIVE, made.train[:n_expensive]),
        expensive_valid=at(EXPENSIVE, made.valid[: settings.n_expensive_valid]),
        test=at(EXPENSIVE, made.test),
    )


# --- the arms ----------------------------------------------------------------------------------


def train(
    settings: TrainSettings,
    train_frames: Sequence[Atoms],
    valid_frames: Sequence[Atoms],
    workdir: Path,
    on_output: Callable[[str], None],
    foundation: Path | None = None,
) -> TrainResult:
    """One MACE training from these frames in a fresh `workdir` (a rerun trains again: the
    training is the experiment); `foundation` is the model a naive fine-tuning starts from."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    files = {"train": workdir / "train.xyz", "valid": workdir / "valid.xyz"}
    write_frames(files["train"], train_frames)
    write_frames(files["valid"], valid_frames)
    inputs = TrainInputs(
        train_file=files["train"],
        valid_file=files["valid"],
        foundation_model=foundation,
        foundation={**describe_file(foundation), "origin": str(foundation), "sha256": file_sha256(foundation)}
        if foundation
        else None,
        data_labels=labels_present(train_frames),
        data_elements=elements([*train_frames, *valid_frames]),
        data_levels=dict(sorted(Counter(level_of(a) for a in train_frames).items())),
    )
    return get_trainer("mace").train(settings, inputs, Launch(), workdir / "run", on_output, "model")


def deployed(result: TrainResult, workdir: Path) -> Path:
    """The single-head model to score: the expensive head of a multihead model."""
    return get_trainer("mace").export(result.model_path, workdir / "deploy.model")


def errors_on(model_path: Path, frames: Sequence[Atoms]) -> dict[str, float]:
    """The model's energy and force RMSE on `frames`, in meV units as the tables show them."""
    overall = evaluate(load_model(model_path), frames).overall
    return {"rmse_e_mev_per_atom": to_mev(overall["rmse_e_per_atom"]), "rmse_f_mev_per_a": to_mev(overall["rmse_f"])}


def arm_settings(arm: str, base: TrainSettings, levels: dict[str, str]) -> TrainSettings:
    """Each arm's changes to the shared budget. Scratch trainings keep MACE's lr 1e-2; the
    fine-tuning starts at naive's 1e-3 from the pre-trained model with E0s fitted to the
    expensive frames (e0s average), not the cheap level's: xTB's and DFT's total energies differ
    by hundreds of eV per atom, an offset the network would otherwise have to learn."""
    if arm == EXPENSIVE_ONLY:
        return replace(base, strategy="scratch", e0s="average", level=levels[EXPENSIVE], lr=None)
    if arm in (PRETRAIN_FINETUNE, ENERGIES_FINETUNE):
        return replace(base, strategy="naive", e0s="average", level=levels[EXPENSIVE], lr=None)
    if arm == MULTIHEAD:
        return replace(base, strategy="multifidelity", e0s="average", level=levels[EXPENSIVE], lr=None)
    raise ValueError(f"unknown arm {arm!r}; expected one of {list(ARMS)}.")


def pretrain_settings(base: TrainSettings, levels: dict[str, str], forces: bool) -> TrainSettings:
    """Scratch on the cheap level; without `forces`, forces_weight 0: MACE's weighted loss is
    energy_weight * energy loss + forces_weight * force loss, so no force label moves a weight
    and the kept epoch is chosen on the energy loss alone (forces are still predicted, at the
    same cost)."""
    settings = replace(base, strategy="scratch", e0s="average", level=levels[CHEAP], lr=None)
    return settings if forces else replace(settings, forces_weight=0.0)


@dataclass(frozen=True)
class Plan:
    """Which models one comparison trains: pre-trainings at every cheap size (energies only at
    the largest), fine-tunings from the largest at every expensive size and from the others at
    the smallest (claim b), energies-only fine-tuned at the smallest (claim c), expensive_only
    and multihead at every expensive size."""

    cheap_sizes: tuple[int, ...]
    expensive_sizes: tuple[int, ...]

    @classmethod
    def of(cls, settings: FidelitySettings) -> Plan:
        return cls(tuple(sorted(set(settings.cheap_sizes))), tuple(sorted(set(settings.expensive_sizes))))

    def pretrainings(self) -> list[tuple[bool, int]]:
        """(with forces, cheap frames) of each pre-training."""
        return [(True, n) for n in self.cheap_sizes] + [(False, self.cheap_sizes[-1])]

    def models(self) -> list[tuple[str, int, int]]:
        """(arm, cheap frames, expensive frames) of each model scored on the test set."""
        most, fewest = self.cheap_sizes[-1], self.expensive_sizes[0]
        out = [(EXPENSIVE_ONLY, 0, n) for n in self.expensive_sizes]
        out += [(PRETRAIN_FINETUNE, most, n) for n in self.expensive_sizes]
        out += [(PRETRAIN_FINETUNE, c, fewest) for c in self.cheap_sizes[:-1]]
        out += [(ENERGIES_FINETUNE, most, fewest)]
        out += [(MULTIHEAD, most, n) for n in self.expensive_sizes]
        return out


def run_comparison(
    settings: FidelitySettings, data_dir: Path, say: Callable[[str], None], on_output: Callable[[str], None]
) -> dict:
    """Label (or read the cached labels), train every model of the plan, score each on the test
    set; return the results (rows, pre-trained rows, levels, costs, findings)."""
    started = time.monotonic()
    options = label_options(settings)
    problems = [problem for name in (CHEAP, EXPENSIVE) for problem in labeller_problems(name, options[name], ())]
    if problems:
        raise ValueError("the comparison cannot label its frames; nothing was run:\n" + "\n".join(problems))
    data_dir = Path(data_dir).absolute()  # MACE runs in its work directory
    data = label_data(settings, data_dir / "labels", say)
    levels, cost = data.levels, data.cost_per_frame()
    say(
        f"labelling cost per frame: {levels[CHEAP]} {cost[CHEAP] * 1000:.1f} CPU-ms, "
        f"{levels[EXPENSIVE]} {cost[EXPENSIVE]:.2f} CPU-s ({cost[EXPENSIVE] / cost[CHEAP]:.0f}x)"
    )
    plan, runs = Plan.of(settings), data_dir / "runs"
    pretrained: dict[tuple[bool, int], Path] = {}
    pretrained_rows = []
    for k, (forces, n) in enumerate(plan.pretrainings(), 1):
        name = f"pretrain{'' if forces else '_energies'}-c{n}"
        say(
            f"pre-training {k}/{len(plan.pretrainings())}: {n} cheap frames, {'energies and forces' if forces else 'energies only'}"
        )
        result = train(
            pretrain_settings(settings.training, levels, forces),
            data.cheap_train[:n],
            data.cheap_valid,
            runs / name,
            on_output,
        )
        pretrained[forces, n] = result.model_path
        errors = errors_on(result.model_path, data.cheap_valid)
        pretrained_rows.append(
            {"forces": forces, "n_cheap": n, **{f"cheap_valid_{key}": value for key, value in errors.items()}}
        )
        say(
            f"  {name}: cheap valid F {errors['rmse_f_mev_per_a']:.1f} meV/Å, E {errors['rmse_e_mev_per_atom']:.1f} meV/atom"
        )
    rows = []
    models = plan.models()
    for k, (arm, n_cheap, n_expensive) in enumerate(models, 1):
        name = f"{arm}-c{n_cheap}-e{n_expensive}"
        say(
            f"model {k}/{len(models)}: {arm}, {n_expensive} expensive frames"
            + (f", {n_cheap} cheap" if n_cheap else "")
        )
        arm_train = data.expensive_train[:n_expensive]
        valid = data.expensive_valid
        foundation = None
        if arm == MULTIHEAD:
            arm_train, valid = data.cheap_train[:n_cheap] + arm_train, data.cheap_valid + valid
        elif arm != EXPENSIVE_ONLY:
            foundation = pretrained[arm == PRETRAIN_FINETUNE, n_cheap]
        clock = time.monotonic()
        result = train(
            arm_settings(arm, settings.training, levels), arm_train, valid, runs / name, on_output, foundation
        )
        errors = errors_on(deployed(result, runs / name), data.test)
        labels = data.expensive_train[:n_expensive] + (data.cheap_train[:n_cheap] if n_cheap else [])
        rows.append(
            {
                "arm": arm,
                "n_expensive": n_expensive,
                "n_cheap": n_cheap,
                **{f"test_{key}": value for key, value in errors.items()},
                "label_cpu_s": round(sum(cpu_seconds(labels)), 2),
                "train_wall_s": round(time.monotonic() - clock, 1),
                "epochs_run": result.epochs_run,
            }
        )
        say(f"  {name}: test F {errors['rmse_f_mev_per_a']:.1f} meV/Å, E {errors['rmse_e_mev_per_atom']:.1f} meV/atom")
    return {
        "rows": rows,
        "pretrained": pretrained_rows,
        "levels": levels,
        "cost_per_frame_cpu_s": {levels[k]: v for k, v in cost.items()},
        "expensive_over_cheap_cost": cost[EXPENSIVE] / cost[CHEAP],
        "settings": json.loads(json.dumps(dataclasses.asdict(settings), default=str)),
        "findings": findings(rows, pretrained_rows, cost[EXPENSIVE] / cost[CHEAP]),
        "wall_s": round(time.monotonic() - started, 1),
    }


# --- what the numbers say ----------------------------------------------------------------------


def _row(rows: Sequence[dict], arm: str, n_expensive: int, n_cheap: int | None = None) -> dict | None:
    return next(
        (
            r
            for r in rows
            if r["arm"] == arm and r["n_expensive"] == n_expensive and (n_cheap is None or r["n_cheap"] == n_cheap)
        ),
        None,
    )


def _better(a: float, b: float) -> str:
    return "better" if a < b else "not better"


def _tally(hits: int, total: int) -> str:
    return "holds" if hits == total else "does not hold" if hits == 0 else f"holds at {hits} of {total} sizes"


F, E = "test_rmse_f_mev_per_a", "test_rmse_e_mev_per_atom"


def finding_a(rows: Sequence[dict]) -> str:
    """Pre-train/fine-tune against expensive_only at each expensive size (the most cheap frames)."""
    most = max((r["n_cheap"] for r in rows if r["arm"] == PRETRAIN_FINETUNE), default=None)
    pairs = [
        (n, p, e)
        for n in sorted({r["n_expensive"] for r in rows})
        if (p := _row(rows, PRETRAIN_FINETUNE, n, most)) and (e := _row(rows, EXPENSIVE_ONLY, n))
    ]
    if not pairs:
        return "not measured: no size has both pretrain_finetune and expensive_only."
    details = "; ".join(
        f"at {n} expensive frames {p[F]:.1f} against {e[F]:.1f} meV/Å ({_better(p[F], e[F])}), "
        f"{p[E]:.1f} against {e[E]:.1f} meV/atom ({_better(p[E], e[E])})"
        for n, p, e in pairs
    )
    on_forces = _tally(sum(p[F] < e[F] for _, p, e in pairs), len(pairs))
    on_energies = _tally(sum(p[E] < e[E] for _, p, e in pairs), len(pairs))
    return f"on forces {on_forces}, on energies {on_energies}: pretrain_finetune ({most} cheap frames) {details}."


def loglog_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Slope and Pearson correlation of log y against log x."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    slope = float(np.polyfit(lx, ly, 1)[0])
    return slope, float(np.corrcoef(lx, ly)[0, 1])


def pretrain_points(rows: Sequence[dict], pretrained: Sequence[dict]) -> list[tuple[int, float, float]]:
    """(cheap frames, pre-trained cheap-valid force RMSE, fine-tuned test force RMSE) at the
    smallest expensive size, one per amount of pre-training data (with forces)."""
    tuned = [r for r in rows if r["arm"] == PRETRAIN_FINETUNE]
    if not tuned:
        return []
    fewest = min(r["n_expensive"] for r in tuned)
    return [
        (p["n_cheap"], p["cheap_valid_rmse_f_mev_per_a"], r[F])
        for p in sorted(pretrained, key=lambda p: p["n_cheap"])
        if p["forces"] and (r := _row(rows, PRETRAIN_FINETUNE, fewest, p["n_cheap"]))
    ]


def finding_b(rows: Sequence[dict], pretrained: Sequence[dict]) -> str:
    points = pretrain_points(rows, pretrained)
    if len(points) < 2:
        return "not measured: it takes fine-tunings from at least two amounts of pre-training data."
    listed = ", ".join(f"{n} cheap frames: {pre:.1f} -> {tuned:.1f} meV/Å" for n, pre, tuned in points)
    slope, r = loglog_fit([p[1] for p in points], [p[2] for p in points])
    if len(points) == 2:
        return (
            f"not tested: two points lie on any line (log-log slope {slope:.2f}); it takes three or more amounts of "
            f"pre-training data. Pre-trained cheap-valid force RMSE -> fine-tuned test force RMSE: {listed}."
        )
    verdict = "holds" if r >= 0.9 and slope > 0 else "does not hold"
    return (
        f"{verdict}: log-log slope {slope:.2f}, correlation {r:.2f} over {len(points)} amounts of pre-training data "
        f"(holds: correlation 0.9 or more, positive slope). Pre-trained cheap-valid force RMSE -> fine-tuned test "
        f"force RMSE: {listed}."
    )


def finding_c(rows: Sequence[dict]) -> str:
    energies = next((r for r in rows if r["arm"] == ENERGIES_FINETUNE), None)
    forces = energies and _row(rows, PRETRAIN_FINETUNE, energies["n_expensive"], energies["n_cheap"])
    alone = energies and _row(rows, EXPENSIVE_ONLY, energies["n_expensive"])
    if not (energies and forces and alone):
        return "not measured: it takes pretrain_finetune, pretrain_energies_finetune and expensive_only at one size."
    verdict = "holds" if forces[F] < energies[F] else "does not hold"
    return (
        f"{verdict}: at {energies['n_expensive']} expensive frames, pre-trained on {energies['n_cheap']} cheap frames "
        f"with forces {forces[F]:.1f} meV/Å, on energies only {energies[F]:.1f}, expensive_only {alone[F]:.1f} "
        f"(expensive_only's error over theirs: {alone[F] / forces[F]:.2f}x with forces, {alone[F] / energies[F]:.2f}x "
        f"energies only); energies {forces[E]:.1f}, {energies[E]:.1f} and {alone[E]:.1f} meV/atom."
    )


def finding_d(rows: Sequence[dict]) -> str:
    """Multihead against pretrain_finetune (marginally worse?) and against expensive_only
    (do the cheap labels stand in for expensive ones?), at each expensive size."""
    sizes = sorted({r["n_expensive"] for r in rows if r["arm"] == MULTIHEAD})
    trios = [
        (n, m, _row(rows, PRETRAIN_FINETUNE, n, m["n_cheap"]), _row(rows, EXPENSIVE_ONLY, n))
        for n in sizes
        if (m := _row(rows, MULTIHEAD, n))
    ]
    against_tuned = [(n, m[F] / p[F]) for n, m, p, _ in trios if p]
    against_alone = [(n, m, e) for n, m, _, e in trios if e]
    if not against_tuned and not against_alone:
        return "not measured: no multihead model beside pretrain_finetune or expensive_only."
    out = []
    if against_tuned:
        worse = [ratio for _, ratio in against_tuned if ratio > 1]
        ratios = ", ".join(f"{ratio:.2f}x at {n}" for n, ratio in against_tuned)
        if len(worse) * 2 <= len(against_tuned):
            verdict = "does not hold"
        elif max(worse) <= 1.5:
            verdict = "holds"
        else:
            verdict = "holds only in part (worse by more than 1.5x, not marginally)"
        out.append(
            f"{verdict}: multihead is less accurate on forces than pretrain_finetune at {len(worse)} of "
            f"{len(against_tuned)} sizes (multihead over pretrain_finetune: {ratios} expensive frames)"
        )
    if against_alone:
        beats = sum(m[F] < e[F] for _, m, e in against_alone)
        listed = ", ".join(f"{m[F]:.1f} against {e[F]:.1f} at {n}" for n, m, e in against_alone)
        out.append(
            f"the cheap labels {'stand in for' if beats else 'do not stand in for'} expensive ones: multihead is better "
            f"than expensive_only on forces at {beats} of {len(against_alone)} sizes ({listed} expensive frames, meV/Å)"
        )
    return "; ".join(out) + "."


def finding_e(rows: Sequence[dict], expensive_over_cheap: float) -> str:
    """The measured cost ratio against the study's assumption, and the cheapest labels that
    reach expensive_only's best force error."""
    out = (
        f"measured: an expensive label costs {expensive_over_cheap:.0f}x a cheap one in CPU-seconds (the study "
        f"assumes {STUDY_XTB_TO_DFT:.0f}x from xTB to DFT)"
    )
    alone = [r for r in rows if r["arm"] == EXPENSIVE_ONLY]
    if not alone:
        return out + "."
    best = max(alone, key=lambda r: r["n_expensive"])
    reaching = [r for r in rows if r is not best and r[F] <= best[F]]
    if not reaching:
        return (
            out + f"; no model reached expensive_only's force error with all {best['n_expensive']} expensive frames "
            f"({best[F]:.1f} meV/Å, {best['label_cpu_s']:.1f} CPU-s of labels)."
        )
    cheapest = min(reaching, key=lambda r: r["label_cpu_s"])
    ratio = cheapest["label_cpu_s"] / best["label_cpu_s"]
    return (
        out + f"; the cheapest labels to reach expensive_only's force error with {best['n_expensive']} expensive "
        f"frames ({best[F]:.1f} meV/Å, {best['label_cpu_s']:.1f} CPU-s) are {cheapest['arm']}'s with "
        f"{cheapest['n_expensive']} expensive and {cheapest['n_cheap']} cheap frames ({cheapest[F]:.1f} meV/Å, "
        f"{cheapest['label_cpu_s']:.1f} CPU-s: {ratio:.2f}x the cost)."
    )


def findings(rows: Sequence[dict], pretrained: Sequence[dict], expensive_over_cheap: float) -> dict[str, str]:
    """Each claim of the study (CLAIMS) against what the rows show, said either way."""
    return {
        "a": finding_a(rows),
        "b": finding_b(rows, pretrained),
        "c": finding_c(rows),
        "d": finding_d(rows),
        "e": finding_e(rows, expensive_over_cheap),
    }


# --- tables, figure, files ---------------------------------------------------------------------


def _cells(values: Sequence) -> str:
    return "| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in values) + " |"


def table(rows: Sequence[dict]) -> str:
    """One line per model scored on the expensive test set (Markdown)."""
    lines = [
        "| arm | expensive frames | cheap frames | test E (meV/atom) | test F (meV/Å) | labelling CPU-s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        _cells((r["arm"], r["n_expensive"], r["n_cheap"], r[E], r[F], float(r["label_cpu_s"])))
        for r in sorted(rows, key=lambda r: (list(ARMS).index(r["arm"]), r["n_cheap"], r["n_expensive"]))
    ]
    return "\n".join(lines)


def pretrained_table(pretrained: Sequence[dict]) -> str:
    """One line per pre-trained model, scored on the cheap level's valid set (Markdown)."""
    lines = [
        "| pre-training | cheap frames | cheap valid E (meV/atom) | cheap valid F (meV/Å) |",
        "|---|---|---|---|",
    ]
    lines += [
        _cells(
            (
                "energies and forces" if p["forces"] else "energies only",
                p["n_cheap"],
                p["cheap_valid_rmse_e_mev_per_atom"],
                p["cheap_valid_rmse_f_mev_per_a"],
            )
        )
        for p in pretrained
    ]
    return "\n".join(lines)


def findings_text(found: dict[str, str]) -> str:
    return "\n".join(f"- ({claim}) {CLAIMS[claim]}: {found[claim]}" for claim in CLAIMS if claim in found)


def write_results(results: dict, directory: Path) -> dict[str, Path]:
    """fidelity.json (everything), fidelity.md (both tables and the findings) and fidelity.png."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {suffix: directory / f"fidelity.{suffix}" for suffix in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(results, indent=1))
    paths["md"].write_text(
        "\n\n".join(
            [table(results["rows"]), pretrained_table(results["pretrained"]), findings_text(results["findings"])]
        )
        + "\n"
    )
    points = pretrain_points(results["rows"], results["pretrained"])
    save_figure(fidelity_figure(results["rows"], points, results["levels"]), paths["png"])
    return paths
