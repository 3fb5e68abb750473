"""Row 11: replay selection from a pool of a million frames: peak memory and time of our random
and FPS selections (core.replay.select_replay, which streams) against MACE's own
`fine_tuning_select` (`python -m mace.cli.fine_tuning_select`, which reads the pool whole),
side by side on the same pool file, model, sample count and method.

Each selection is a fresh process; its peak is the kernel's maximum resident set (wait4), less
that of a process that only imports what both import (torch, MACE), so the figure is what the
selection itself holds. Both run with one torch thread (OMP_NUM_THREADS=1): MACE's per-frame
descriptors ran 10x slower on two threads of a loaded 2-core machine. Our descriptors start cold
(a fresh cache directory each run, as MACE computes its own each time); a second selection from
the cache is timed beside it. The pool: 2-4-atom periodic cells of the demo foundation's seven
metals at fcc density, one metal per frame in turn, labelled; filtered to Cu (a seventh).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import DEMO_FOUNDATION, Row, median, side_by_side

POOL_FRAMES = {"quick": 14_000, "full": 1_000_000}
NUM_SAMPLES = {"quick": 1_000, "full": 10_000}
# MACE's run is stopped past this and reported as not finished: its FPS descriptors of the full
# pool's 142,857 Cu frames, one frame at a time at ~70 frames/s on one thread, take ~35 minutes
MACE_CAP_S = 90 * 60
DTYPE = "float32"  # the demo foundation's own

OURS = (
    "import sys\n"
    "from traincraft_assets.core.frames import write_frames\n"
    "from traincraft_assets.core.replay import ReplaySettings, select_replay\n"
    "pool, model, subselect, n, out, cache = sys.argv[1:]\n"
    "settings = ReplaySettings(num_samples=int(n), subselect=subselect, num_heldout=0, device='cpu')\n"
    f"write_frames(out, select_replay(pool, ['Cu'], settings, model, {DTYPE!r}, cache_dir=cache).selected)\n"
)
IMPORTS_ONLY = "import mace.cli.fine_tuning_select, traincraft_assets.core.replay"


def make_pool(path: Path, n_frames: int) -> None:
    """`n_frames` rattled 2-4-atom cells at fcc density (11.8 A^3 an atom), written a chunk at a
    time, with energy and forces as a real pool carries them."""
    from ase import Atoms

    from traincraft_assets.core.demo import PRETRAINING_METALS
    from traincraft_assets.core.frames import chunks, frame_writer

    rng = np.random.default_rng(0)

    def frames():
        for i in range(n_frames):
            n_atoms = 2 + i % 3
            edge = (11.8 * n_atoms) ** (1 / 3)
            atoms = Atoms(
                PRETRAINING_METALS[i % len(PRETRAINING_METALS)] * n_atoms,
                positions=rng.uniform(0, edge, (n_atoms, 3)),
                cell=np.eye(3) * edge,
                pbc=True,
            )
            atoms.info["REF_energy"] = float(rng.normal())
            atoms.arrays["REF_forces"] = rng.normal(size=(n_atoms, 3))
            yield atoms

    with frame_writer(path) as write:
        for chunk in chunks(frames(), 10_000):
            write(chunk)


def _run(argv: list[str], cwd: Path, cap_s: float | None = None) -> tuple[float | None, float]:
    """(seconds, peak resident MiB) of one process; seconds None when it ran past `cap_s`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with open(cwd / "log.txt", "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        timer = threading.Timer(cap_s, process.kill) if cap_s else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if timer:
            timer.cancel()
    if cap_s and seconds >= cap_s:
        return None, usage.ru_maxrss / 1024
    if process.returncode:
        raise RuntimeError(f"{argv[:3]} failed ({process.returncode}): {(cwd / 'log.txt').read_text()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def _mace(pool: Path, target: Path, subselect: str, n: int, scratch: Path) -> tuple[float | None, float]:
    work = Path(tempfile.mkdtemp(dir=scratch))  # MACE writes its descriptors in its working directory
    argv = [sys.executable, "-m", "mace.cli.fine_tuning_select", "--configs_pt", str(pool)]
    argv += ["--configs_ft", str(target), "--num_samples", str(n), "--subselect", subselect]
    argv += ["--model", str(DEMO_FOUNDATION), "--output", str(work / "mace.xyz"), "--device", "cpu"]
    argv += ["--filtering_type", "combinations", "--default_dtype", DTYPE, "--seed", "0"]
    return _run(argv, work, MACE_CAP_S)


def _ours(pool: Path, subselect: str, n: int, cache: Path) -> tuple[float, float]:
    cache.mkdir(exist_ok=True)
    argv = [sys.executable, "-c", OURS, str(pool), str(DEMO_FOUNDATION), subselect, str(n), str(cache / "ours.xyz")]
    return _run([*argv, str(cache)], cache)


def measure(mode: str, repeats: int) -> list[Row]:
    from ase.build import bulk

    from traincraft_assets.core.frames import write_frames

    n = NUM_SAMPLES[mode]
    repeats = repeats if mode == "quick" else 1  # full: MACE's FPS alone takes ~35 minutes
    rows, n_pool = [], POOL_FRAMES[mode]
    with tempfile.TemporaryDirectory(prefix="bench-row11-") as tmp:
        tmp = Path(tmp)
        target, pool = tmp / "target.xyz", tmp / f"pool-{n_pool}.xyz"
        write_frames(target, [bulk("Cu", "fcc", cubic=True)])
        make_pool(pool, n_pool)
        _, imports_mib = _run([sys.executable, "-c", IMPORTS_ONLY], tmp)
        for subselect in ("random", "fps"):
            caches = []  # a fresh descriptor cache per run: cold, as MACE's

            def ours(pool=pool, subselect=subselect, caches=caches):
                caches.append(Path(tempfile.mkdtemp(dir=tmp)))
                return _ours(pool, subselect, n, caches[-1])

            anchors, targets = side_by_side(
                lambda pool=pool, subselect=subselect: _mace(pool, target, subselect, n, tmp), ours, repeats
            )
            cached = _ours(pool, subselect, n, caches[-1])[0] if subselect == "fps" else None
            rows += _rows(subselect, n_pool, n, anchors, targets, imports_mib, pool.stat().st_size / 2**20, cached)
    return rows


def _rows(subselect, n_pool, n, anchors, targets, imports_mib, pool_mib, cached_s) -> list[Row]:
    finished = [a for a in anchors if a[0] is not None]
    mace_s = median([a[0] for a in finished]) if finished else None
    mace_mib = median([a[1] for a in anchors]) - imports_mib
    ours_s, ours_mib = median([t[0] for t in targets]), median([t[1] for t in targets]) - imports_mib
    what = f"replay {subselect}, {n_pool} pool frames -> {n}"
    context = (
        f"pool file {pool_mib:.0f} MiB, {n_pool // 7} Cu frames pass the filter; peaks are MiB above a process "
        f"that only imports torch and MACE ({imports_mib:.0f} MiB); one torch thread each"
    )
    if mace_s is None:
        context += f"; MACE did not finish in {MACE_CAP_S // 60} min (its peak so far)"
    if cached_s is not None:
        context += f"; ours again from the descriptor cache: {cached_s:.1f} s"
    details = {"anchor_s_mib": anchors, "target_s_mib": targets, "imports_mib": imports_mib, "cached_s": cached_s}
    return [
        Row(
            "11",
            f"{what}: peak memory",
            "mace fine_tuning_select",
            "core.replay.select_replay",
            mace_mib,
            ours_mib,
            "MiB",
            ours_mib / mace_mib,
            "<= 0.1",
            ours_mib <= 0.1 * mace_mib,
            context,
            details,
        ),
        Row(
            "11",
            f"{what}: time",
            "mace fine_tuning_select",
            "core.replay.select_replay",
            mace_s,
            ours_s,
            "s",
            None if mace_s is None else ours_s / mace_s,
            "<= 1 (not slower)",
            True if mace_s is None else ours_s <= mace_s,
            context,
        ),
    ]
