"""Small builders shared by the core tests: real ASE frames, real files, argv parsing."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

from traincraft_assets.core.frames import BATCH_INDEX_KEY, BATCH_KEY, CONFIG_TYPE_KEY, set_label


def cu_bulk(rattle: float = 0.0, seed: int = 0, repeat: int = 2, symbol: str = "Cu") -> Atoms:
    """A cubic fcc cell repeated `repeat` times, optionally rattled (Å, normal std)."""
    atoms = bulk(symbol, "fcc", cubic=True).repeat((repeat, repeat, repeat))
    if rattle:
        atoms.positions += np.random.default_rng(seed).normal(0.0, rattle, atoms.positions.shape)
    return atoms


def random_pair(seed: int, symbols: str = "CuCu") -> Atoms:
    """A distinct two-atom periodic frame per seed: cheap, unique structures for split tests."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(symbols, positions=rng.uniform(0.0, 3.0, size=(2, 3)), cell=[4.0, 4.0, 4.0], pbc=True)
    return atoms


def labelled(
    atoms: Atoms,
    energy: float | None = -1.0,
    forces=0.0,
    stress=None,
    batch: str | None = None,
    index: int | None = None,
    config_type: str | None = None,
) -> Atoms:
    """A copy of `atoms` with REF_* labels and provenance keys set."""
    atoms = atoms.copy()
    if energy is not None:
        set_label(atoms, "energy", energy)
    if forces is not None:
        set_label(atoms, "forces", np.array(np.broadcast_to(np.asarray(forces, dtype=float), (len(atoms), 3))))
    if stress is not None:
        set_label(atoms, "stress", stress)
    if batch is not None:
        atoms.info[BATCH_KEY] = batch
    if index is not None:
        atoms.info[BATCH_INDEX_KEY] = index
    if config_type is not None:
        atoms.info[CONFIG_TYPE_KEY] = config_type
    return atoms


def python_command(script: Path, *args: str) -> str:
    """A shell-words command line running `script` with this interpreter."""
    return shlex.join([sys.executable, str(script), *args])


def flags(argv: list[str]) -> dict[str, str | None]:
    """`--key value` / bare `--key` pairs of an argv, asserting that no flag appears twice."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        assert token.startswith("--"), f"expected a flag at position {i}, got {token!r} in {argv}"
        key = token[2:]
        assert key not in out, f"flag --{key} appears twice in {argv}"
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[key] = argv[i + 1]
            i += 2
        else:
            out[key] = None
            i += 1
    return out


def mace_eval_epochs(directory: Path) -> list[tuple[int, str]]:
    """(epoch, head) of every evaluation line MACE wrote under `directory`/results, repeats
    included: a resumed training appends, so an epoch trained twice shows twice."""
    import json

    lines = []
    for path in (Path(directory) / "results").glob("*_train.txt"):
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("mode") == "eval" and entry.get("epoch") is not None:
                lines.append((entry["epoch"], entry.get("head", "Default")))
    return lines


def merge_in_memory(batches):
    """core.dataset.merge_batches into a list: (merged frames, report)."""
    from traincraft_assets.core.dataset import merge_batches

    merged = []
    report = merge_batches(batches, merged.extend)
    return merged, report


# A `command` labeller program for chunk-step tests: EMT, with each run recorded in a folder
# (argv[1]: a file named after the run's first batch index and pid, holding its start time and,
# once it has written its output, its end time), a pause per frame (argv[3], seconds: a pod
# deleted mid-labelling) and one failure (argv[2]: the first run given that batch index exits 3,
# once).
CHUNK_LABELLER = """\
import os, sys, time
from pathlib import Path
from ase.calculators.emt import EMT
from ase.io import read, write
runs, fail_at, pause = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
frames = read(os.environ["TRAINCRAFT_INPUT"], ":")
indices = [atoms.info["batch_index"] for atoms in frames]
runs.mkdir(exist_ok=True)
record, partial = runs / f"{indices[0]}-{os.getpid()}", runs / f"{os.getpid()}.partial"
def note(text):  # whole or not at all, for a test reading it meanwhile
    partial.write_text(text)
    partial.replace(record)
note(f"{time.time()}")
if fail_at in indices and not (runs / "failed").exists():
    (runs / "failed").write_text("")
    sys.exit(3)
for atoms in frames:
    time.sleep(pause)
    atoms.calc = EMT()
    atoms.get_forces()
write(os.environ["TRAINCRAFT_OUTPUT"], frames, format="extxyz")
note(f"{record.read_text()} {time.time()}")
"""


def chunk_labeller(folder: Path, runs: Path, fail_at: int = -1, pause_s: float = 0.0) -> dict:
    """labelled_frames config running CHUNK_LABELLER (written into `folder`) as a `command`."""
    program = folder / "chunk_labeller.py"
    program.write_text(CHUNK_LABELLER)
    return {"labeller": "command", "command": python_command(program, str(runs), str(fail_at), str(pause_s))}


def most_at_once(runs: Path) -> int:
    """The most labeller runs (of `chunk_labeller`'s record folder) that were labelling at the
    same moment (a run that never wrote its end, lost with its pod, counts as labelling on)."""
    spans = [[*map(float, path.read_text().split()), math.inf][:2] for path in runs.glob("*-*")]
    return max(sum(start <= s < end for start, end in spans) for s, _ in spans)


def chunk_runs(runs: Path) -> dict[int, int]:
    """How many times the labeller program ran for each chunk (by its first batch index)."""
    counts: dict[int, int] = {}
    for path in runs.glob("*-*"):
        first = int(path.name.split("-")[0])
        counts[first] = counts.get(first, 0) + 1
    return counts
