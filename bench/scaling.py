"""Row 6: the demo end to end (`traincraft demo`'s code: label, stage the foundation, dataset, split, replay,
fine-tune, parity report) at 1x, 4x and 16x its target data, each on a fresh project. The ratio
is wall time against the 1x run; the exponent b in time ~ size^b says how it grows."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from bench.common import Project, Row, demo_config, median, timed

BASE_FRAMES_PER_KIND = {"quick": 1, "full": 30}
EPOCHS = {"quick": 1, "full": 5}
SCALES = (1, 4, 16)


def end_to_end(config: dict, frames_per_kind: int) -> float:
    from traincraft_assets.app import demo

    with tempfile.TemporaryDirectory() as tmp, Project(Path(tmp)) as project:
        batches = project.root / "batches"
        return timed(lambda: demo.run(project.instance, project.defs, config, batches, project.inbox, frames_per_kind))


def measure(mode: str, repeats: int) -> list[Row]:
    config = demo_config(EPOCHS[mode], mode)
    base = BASE_FRAMES_PER_KIND[mode]
    times = {scale: [] for scale in SCALES}
    for _ in range(repeats):  # scales interleaved: load drift hits each alike
        for scale in SCALES:
            times[scale].append(end_to_end(config, base * scale))
    one = median(times[1])
    rows = []
    for scale in SCALES[1:]:
        t = median(times[scale])
        exponent = math.log(t / one) / math.log(scale)
        rows.append(
            Row(
                "6",
                f"end to end, {scale}x the demo's target data",
                f"1x ({base * 4} frames)",
                f"{scale}x ({base * 4 * scale} frames)",
                one,
                t,
                "s",
                t / one,
                "-",
                None,
                f"time ~ size^{exponent:.2f}; fine-tuning {EPOCHS[mode]} epochs",
                {"seconds": {str(k): v for k, v in times.items()}},
            )
        )
    return rows
