"""Rows 4, 7, 10 and 12: labelling in parallel, labelling's memory against the batch file's
size, each labeller's throughput, and a batch labelled as several chunk steps.

Row 4: label_batch with `workers: 2` vs `workers: 1`, EMT and xTB (tblite), same file.
Row 7: peak resident memory of labelling and of merging two batches, each in a fresh process,
above that process's memory after its imports (the kernel's peak is reset through
/proc/self/clear_refs, so the imports' own transient peak does not hide a small file's), against
reading the whole file at once (what labelling did before it streamed).
Row 10: frames per second per core of label_batch for EMT, xTB and PySCF (PBE/sto-3g on water
dimers), and PySCF with `workers: 2` vs `workers: 1`.
Row 12: wall time of one labelled_frames run with `chunk_steps: 2` and `4` vs `1` on the
Kubernetes stand-in (traincraft_assets_tests/k8s): `traincraft submit` to a real K8sRunLauncher and
k8s_job_executor, a pod per step, each pod a process on this machine.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import Row, median, side_by_side, timed

# Frames per labeller (several chunks of 500, so 2 workers have work to share).
PARALLEL_FRAMES = {"quick": {"emt": 1000, "xtb": 1000}, "full": {"emt": 8000, "xtb": 2000}}
MEMORY_FILE_MB = {"quick": 50.0, "full": 200.0}

MEMORY_WAYS = {
    "read the whole file (ase.io.read)": "frames = ase.io.read(src, ':')",
    "label_batch (prelabelled, streamed)": "label_batch(Path(src), 'b', 'prelabelled', LabelOptions(), Path(out) / 'l.xyz')",
    "merge two batches (streamed)": (
        "with frame_writer(Path(out) / 'd.xyz') as write:\n"
        "    merge_batches([iter_frames(src), iter_frames(src2)], write)"
    ),
}
PRELUDE = (
    "import sys\nfrom pathlib import Path\nimport ase.io\n"
    "from traincraft_assets.core.dataset import merge_batches\n"
    "from traincraft_assets.core.frames import frame_writer, iter_frames\n"
    "from traincraft_assets.core.labelling import LabelOptions, label_batch\n"
    "src, src2, out = sys.argv[1:4]\n"
    "def kib(field):\n"
    "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(field))\n"
    "open('/proc/self/clear_refs', 'w').write('5')  # peak RSS from here on, not the imports'\n"
    "base = kib('VmRSS:')\n"
)
EPILOGUE = "\nprint(kib('VmHWM:') - base)\n"  # peak resident memory above that after the imports, KiB


def rattled_cells(n: int, seed: int, repeat: int) -> list:
    """`n` distinct rattled fcc Cu supercells (4 x repeat**3 atoms), unlabelled."""
    from ase.build import bulk

    template = bulk("Cu", "fcc", cubic=True).repeat((repeat,) * 3)
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = template.copy()
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    return frames


def water_clusters(n: int, seed: int) -> list:
    """`n` distinct clusters of 8 randomly oriented water molecules (24 atoms, about 15 ms of
    GFN2-xTB each here), rattled, unlabelled, not periodic: a small molecular system of the kind
    xTB labels, not a 3-atom molecule whose few milliseconds are all Python overhead."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    sites = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(2)]) * 2.9  # Å apart
    frames = []
    for _ in range(n):
        cluster = Atoms()
        for site in sites:
            water = molecule("H2O")
            water.positions = Rotation.random(random_state=rng.integers(2**31)).apply(water.positions) + site
            cluster += water
        cluster.positions += rng.normal(0, 0.03, cluster.positions.shape)
        frames.append(cluster)
    return frames


def make_batch(path: Path, megabytes: float, seed: int) -> int:
    """Rattled 108-atom Cu cells carrying one EMT-labelled cell's labels, until the file reaches
    `megabytes`; returns frames. Memory is about sizes, so the labels need not fit the positions;
    the positions differ, so merging keeps every frame."""
    from traincraft_assets.core.frames import frame_writer
    from traincraft_assets.core.labelling import LabelOptions, emt

    (template,) = emt(rattled_cells(1, seed, 3), LabelOptions())
    rng = np.random.default_rng(seed)
    n = 0
    with frame_writer(path) as write:
        while path.stat().st_size < megabytes * 1e6:
            chunk = []
            for _ in range(50):
                atoms = template.copy()
                atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
                chunk.append(atoms)
            write(chunk)
            n += len(chunk)
    return n


def parallel(mode: str, repeats: int) -> list[Row]:
    from traincraft_assets.core.frames import write_frames
    from traincraft_assets.core.labelling import LabelOptions, label_batch

    rows = []
    for labeller, n_frames in PARALLEL_FRAMES[mode].items():
        what = f"labelling {labeller}, 2 workers vs 1"
        if labeller == "xtb" and importlib.util.find_spec("tblite") is None:
            rows.append(
                Row(
                    "4",
                    what,
                    "workers 1",
                    "workers 2",
                    None,
                    None,
                    "s",
                    None,
                    ">= 1.8",
                    note="not measured (tblite not installed: pip install 'traincraft_assets[xtb]')",
                )
            )
            continue
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "batch.xyz"
            # xTB: water clusters (its SCF does not converge on rattled metal cells); EMT: 32-atom Cu
            # cells, so labelling outweighs file I/O
            write_frames(src, water_clusters(n_frames, 0) if labeller == "xtb" else rattled_cells(n_frames, 0, 2))

            def run(workers: int, src: Path = src, labeller: str = labeller) -> float:
                return timed(
                    lambda: label_batch(src, "b", labeller, LabelOptions(workers=workers), Path(tmp) / "out.xyz")
                )

            anchors, targets = side_by_side(lambda: run(1), lambda: run(2), repeats)
        rows.append(workers_row("4", what, anchors, targets, f"{n_frames} frames ({n_frames // 500} chunks)"))
    return rows


def workers_row(row: str, what: str, anchors: list[float], targets: list[float], sizes: str) -> Row:
    """A row of `workers: 2` against `workers: 1` seconds: the speed-up, against 1.8x."""
    anchor, target = median(anchors), median(targets)
    ratio = anchor / target
    return Row(
        row,
        what,
        "workers 1",
        "workers 2",
        anchor,
        target,
        "s",
        ratio,
        ">= 1.8",
        ratio >= 1.8,
        f"{sizes}; speed-up = anchor s / target s",
        {"anchor_s": anchors, "target_s": targets},
    )


def peak_kib(code: str, *args: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", PRELUDE + code + EPILOGUE, *args], capture_output=True, text=True, check=True
    )
    return int(run.stdout.split()[-1])


def memory(mode: str, repeats: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(2) as pool:
        src, src2 = Path(tmp) / "batch.xyz", Path(tmp) / "batch2.xyz"
        n, _ = pool.map(make_batch, (src, src2), (MEMORY_FILE_MB[mode],) * 2, (0, 10**6))
        size_mib = src.stat().st_size / 2**20
        args = (str(src), str(src2), tmp)
        # two processes at a time: a peak of resident memory does not depend on CPU contention
        # (24 GiB here is far above two peaks), and the parsing takes minutes one at a time
        jobs = [
            (name, pool.submit(peak_kib, code, *args)) for _ in range(repeats) for name, code in MEMORY_WAYS.items()
        ]
        peaks = {name: [] for name in MEMORY_WAYS}
        for name, job in jobs:
            peaks[name].append(job.result() / 1024)
    whole = median(peaks["read the whole file (ase.io.read)"])
    rows = []
    for name in ("label_batch (prelabelled, streamed)", "merge two batches (streamed)"):
        mib = median(peaks[name])
        rows.append(
            Row(
                "7",
                f"peak memory: {name}",
                "read whole file",
                name.split(" (")[0],
                whole / size_mib,
                mib / size_mib,
                "x file",
                mib / whole,
                "< 1 (bounded)",
                mib < whole,
                f"{size_mib:.0f} MiB file, {n} frames of 108 atoms; figures are peak MiB above the "
                "process after its imports / file MiB",
                {"file_mib": size_mib, "peak_mib": peaks},
            )
        )
    return rows


# Row 10: what each labeller costs, and whether a second worker pays for PySCF.
THROUGHPUT_FRAMES = {
    "quick": {"emt": 200, "xtb": 100, "pyscf": 8},
    "full": {"emt": 1000, "xtb": 500, "pyscf": 32},
}
PYSCF_BENCH = {"method": "PBE", "basis": "sto-3g"}


def water_dimers(n: int, seed: int) -> list:
    """`n` distinct water dimers about 2.9 Å apart (6 atoms), randomly oriented, unlabelled."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        dimer = Atoms()
        for site in ((0, 0, 0), (2.9, 0, 0)):
            water = molecule("H2O")
            water.positions = Rotation.random(random_state=rng.integers(2**31)).apply(water.positions) + site
            dimer += water
        frames.append(dimer)
    return frames


def _label_seconds(src: Path, labeller: str, options) -> float:
    from traincraft_assets.core.labelling import label_batch

    return timed(lambda: label_batch(src, "b", labeller, options, src.with_suffix(".out.xyz")))


def throughput(mode: str, repeats: int) -> list[Row]:
    """Frames per second per core of label_batch for each computing labeller (one process, the
    median of `repeats`; the first run pays the imports), then PySCF with 2 workers against 1."""
    from traincraft_assets.core.frames import write_frames
    from traincraft_assets.core.labelling import LabelOptions, _thread_budget, level_of_theory
    from traincraft_assets.core.qm import QMOptions

    threads, sizes = _thread_budget(), THROUGHPUT_FRAMES[mode]
    batches = {
        "emt": ("32-atom Cu cells", rattled_cells(sizes["emt"], 1, 2), LabelOptions()),
        "xtb": ("clusters of 8 waters", water_clusters(sizes["xtb"], 1), LabelOptions()),
        "pyscf": ("water dimers", water_dimers(sizes["pyscf"], 1), LabelOptions(qm=QMOptions(**PYSCF_BENCH))),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for labeller, (what, frames, options) in batches.items():
            src = Path(tmp) / f"{labeller}.xyz"
            write_frames(src, frames)
            seconds = [_label_seconds(src, labeller, options) for _ in range(repeats)]
            rows.append(
                Row(
                    "10",
                    f"labelling throughput, {labeller} ({what})",
                    "-",
                    "workers 1",
                    None,
                    len(frames) / median(seconds) / threads,
                    "frames/s per core",
                    None,
                    note=f"{len(frames)} frames in {median(seconds):.3g} s on {threads} threads; "
                    f"{level_of_theory(labeller, options)}",
                    details={"seconds": seconds, "threads": threads},
                )
            )
        src, qm = Path(tmp) / "pyscf.xyz", QMOptions(**PYSCF_BENCH)
        anchors, targets = side_by_side(
            lambda: _label_seconds(src, "pyscf", LabelOptions(qm=qm, workers=1)),
            lambda: _label_seconds(src, "pyscf", LabelOptions(qm=qm, workers=2)),
            repeats,
        )
    what = f"{sizes['pyscf']} water dimers, an equal share per worker"
    return [*rows, workers_row("10", "labelling pyscf, 2 workers vs 1", anchors, targets, what)]


# Row 12: a batch labelled as 1, 2 and 4 chunk steps. (frames, seconds a frame): a labeller slow
# enough that the steps' start-up (a fresh Python loading the definitions) does not decide it.
FAN_OUT = {"quick": (8, 1.0), "full": (16, 5.0)}
FAN_OUT_STEPS = (1, 2, 4)
# EMT after a pause per frame: the pause stands in for a DFT code's work on its pod's own cores,
# which a 2-core machine cannot give four chunks at once.
SLOW_EMT = (
    "import os, sys, time\n"
    "from traincraft_assets.core.frames import read_frames, write_frames\n"
    "from traincraft_assets.core.labelling import LabelOptions, emt\n"
    "frames = read_frames(os.environ['TRAINCRAFT_INPUT'])\n"
    "time.sleep(float(sys.argv[1]) * len(frames))\n"
    "write_frames(os.environ['TRAINCRAFT_OUTPUT'], emt(frames, LabelOptions()))\n"
)


def fan_out(mode: str, repeats: int) -> list[Row]:
    """One batch labelled as 1, 2 and 4 chunk steps in turn (1-2-4, then 4-2-1, ...) on the
    Kubernetes stand-in: each run `traincraft submit --wait`, timed from the submit to the end
    Dagster records for the run; the figures are the medians."""
    import shlex

    from traincraft_assets.app.batches import ingest
    from traincraft_assets.core.frames import write_frames
    from traincraft_assets_tests.k8s.deployment import deployed

    n_frames, pause = FAN_OUT[mode]
    seconds: dict[int, list[float]] = {steps: [] for steps in FAN_OUT_STEPS}
    batches = []

    def add_batch(instance, store: Path) -> None:
        src = store.parent / "fan_out.xyz"
        write_frames(src, rattled_cells(n_frames, 2, 1))
        batches.extend(ingest(instance, store / "inbox", [src]))

    with tempfile.TemporaryDirectory() as tmp, deployed(Path(tmp), add_batch) as deployment:
        program = deployment.store / "slow_emt.py"  # on the store volume, as a team's DFT wrapper
        program.write_text(SLOW_EMT)
        command = shlex.join([sys.executable, str(program), str(pause)])

        def run(steps: int) -> float:
            config = {"labeller": "command", "command": command, "chunk_steps": steps}
            start = time.time()
            proc = deployment.submit(
                "--job",
                "label_batch",
                "--partition",
                batches[0].name,
                "--wait",
                config={"ops": {"labelled_frames": {"config": config}}},
            )
            out, _ = proc.communicate()
            if proc.returncode:
                raise RuntimeError(f"the {steps}-step labelling run failed: {out[-2000:]}")
            return deployment.instance.get_run_record_by_id(deployment.run_id(out)).end_time - start

        for i in range(repeats):
            for steps in FAN_OUT_STEPS if i % 2 == 0 else FAN_OUT_STEPS[::-1]:
                seconds[steps].append(run(steps))
    one = median(seconds[1])
    return [
        Row(
            "12",
            f"labelling fan-out, {steps} chunk steps vs 1",
            "1 step",
            f"{steps} steps",
            one,
            median(seconds[steps]),
            "s",
            one / median(seconds[steps]),
            note=f"{n_frames} frames, the labeller {pause:g} s a frame (a pause: work on other pods' cores); "
            f"Kubernetes stand-in, a pod per step (its pods are processes on this machine's cores); "
            f"speed-up = anchor s / target s, {steps}x at best",
            details={"seconds": seconds},
        )
        for steps in FAN_OUT_STEPS[1:]
    ]
