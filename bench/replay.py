"""Row 5: our replay selection (core.replay.select_replay, FPS on the foundation's descriptors)
vs MACE's own `fine_tuning_select`, on the same pool file, model and sample count.

Both read the pool file, keep the frames of the target's elements (Cu) and pick by FPS; the
figure is pool frames per second. MACE writes its descriptors next to the working directory,
so it runs in a scratch one.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from bench.common import DEMO_FOUNDATION, Row, median, side_by_side, timed

POOL_FRAMES = {"quick": 1400, "full": 50000}
NUM_SAMPLES = {"quick": 50, "full": 500}
DTYPE = "float64"


def make_pool(path: Path, n_frames: int) -> None:
    """Rattled 32-atom cells of the demo foundation's seven metals in turn, unlabelled: FPS
    reads structures only."""
    import numpy as np
    from ase.build import bulk

    from traincraft_assets.core.demo import PRETRAINING_METALS
    from traincraft_assets.core.frames import write_frames

    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_frames):
        atoms = bulk(PRETRAINING_METALS[i % len(PRETRAINING_METALS)], "fcc", cubic=True).repeat((2, 2, 2))
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    write_frames(path, frames)


def _cu_target() -> list:
    """A few Cu frames: the fine-tuning data MACE reads its elements from."""
    from ase.build import bulk

    return [bulk("Cu", "fcc", cubic=True)]


def ours(pool: Path, out: Path, num_samples: int) -> None:
    from traincraft_assets.core.frames import write_frames
    from traincraft_assets.core.replay import ReplaySettings, select_replay

    settings = ReplaySettings(
        num_samples=num_samples, subselect="fps", filtering="combinations", num_heldout=0, device="cpu"
    )
    selection = select_replay(pool, ["Cu"], settings, str(DEMO_FOUNDATION), DTYPE)  # descriptors cold: no cache
    write_frames(out, selection.selected)


def mace_select(pool: Path, target: Path, out: Path, num_samples: int) -> None:
    from mace.cli.fine_tuning_select import SelectionSettings, select_samples

    settings = SelectionSettings(
        configs_pt=str(pool),
        configs_ft=str(target),
        output=str(out),
        num_samples=num_samples,
        model=str(DEMO_FOUNDATION),
        default_dtype=DTYPE,
        seed=0,
    )
    with contextlib.chdir(out.parent):
        select_samples(settings)


def measure(mode: str, repeats: int) -> list[Row]:
    from traincraft_assets.core.frames import write_frames

    n_pool, n = POOL_FRAMES[mode], NUM_SAMPLES[mode]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pool, target = tmp / "pool.xyz", tmp / "target.xyz"
        make_pool(pool, n_pool)
        write_frames(target, _cu_target())
        anchors, targets = side_by_side(
            lambda: n_pool / timed(lambda: mace_select(pool, target, tmp / "mace.xyz", n)),
            lambda: n_pool / timed(lambda: ours(pool, tmp / "ours.xyz", n)),
            repeats,
        )
    anchor, target_fps = median(anchors), median(targets)
    ratio = target_fps / anchor
    return [
        Row(
            "5",
            f"replay FPS, {n_pool} pool frames -> {n}",
            "mace fine_tuning_select",
            "core.replay.select_replay",
            anchor,
            target_fps,
            "pool frames/s",
            ratio,
            ">= 1 (not slower)",
            ratio >= 1.0,
            f"{n_pool // 7} Cu frames pass the filter; demo foundation descriptors, {DTYPE}, CPU",
            {"anchor_frames_per_s": anchors, "target_frames_per_s": targets},
        )
    ]
