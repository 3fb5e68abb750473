"""Row 9: exploration throughput: MD steps per second of a committee of K models driving the
walk (core.exploration.run_walk, MACE's committee calculator) against one model in the same
Langevin MD, same structure, device and threads. The members are K copies of the demo
foundation: the cost of a step does not depend on the weights.
"""

from __future__ import annotations

import time

from bench.common import DEMO_FOUNDATION, Row, median, side_by_side

STEPS = {"quick": 40, "full": 200}
MEMBERS = 4


def measure(mode: str, repeats: int, device: str = "cpu") -> list[Row]:
    import numpy as np
    from ase import units
    from ase.md.langevin import Langevin
    from mace.calculators import MACECalculator

    from traincraft_assets.core.committee import TrustLevels
    from traincraft_assets.core.demo import loop_starts
    from traincraft_assets.core.exploration import ExploreSettings, committee_calculator, run_walk

    start = loop_starts()[1]  # the 16-atom Cu(111) slab
    steps = STEPS[mode]
    settings = ExploreSettings(structures="-", steps=steps, save_interval=steps, trust=TrustLevels(0.0, 1e9))
    committee = committee_calculator([str(DEMO_FOUNDATION)] * MEMBERS, device)
    single = MACECalculator(model_paths=str(DEMO_FOUNDATION), device=device, default_dtype="float32")

    def one_model() -> float:
        atoms = start.copy()
        atoms.calc = single
        dynamics = Langevin(
            atoms, timestep=2 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=np.random.default_rng(0)
        )
        began = time.perf_counter()
        dynamics.run(steps)
        return steps / (time.perf_counter() - began)

    def with_committee() -> float:
        began = time.perf_counter()
        run_walk(start, 1, 300.0, committee, settings)
        return steps / (time.perf_counter() - began)

    one_model()  # warm up both
    run_walk(start, 1, 300.0, committee, ExploreSettings(structures="-", steps=2, save_interval=1))
    anchors, targets = side_by_side(one_model, with_committee, repeats)
    anchor, target = median(anchors), median(targets)
    ratio = target / anchor
    return [
        Row(
            "9",
            f"exploration, {len(start)}-atom slab, {steps} MD steps ({device})",
            "one model, ASE Langevin",
            f"committee of {MEMBERS}, run_walk",
            anchor,
            target,
            "steps/s",
            ratio,
            f">= 1/{MEMBERS}",
            ratio >= 1 / MEMBERS,
            "a committee step evaluates every member; at >= 1/K it costs no more than K separate runs",
            {"anchor_steps_per_s": anchors, "target_steps_per_s": targets},
        )
    ]
