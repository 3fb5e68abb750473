"""Row 2: the parity report's batched evaluation (core.evaluation.predict) vs a per-frame ASE
MACECalculator loop, on the same frames, model, device and thread count.
Both compute energies and forces; the model is the shipped demo foundation.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import DEMO_FOUNDATION, Row, median, side_by_side

N_FRAMES = {"quick": 200, "full": 2000}


def demo_frames(n_frames: int) -> list:
    """`n_frames` of the demo's target data (Cu surfaces, adatoms, vacancies, hot rattles)."""
    from traincraft_assets.core.demo import target_batches

    return [a for batch in target_batches(frames_per_kind=n_frames // 4 + 1).values() for a in batch][:n_frames]


def measure(
    mode: str, repeats: int, device: str = "cpu", model_path: str = str(DEMO_FOUNDATION), label: str = "2"
) -> list[Row]:
    from mace.calculators import MACECalculator

    from traincraft_assets.core.evaluation import predict
    from traincraft_assets.core.models import load_model

    frames = demo_frames(N_FRAMES[mode])
    model = load_model(model_path, device)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    calc = MACECalculator(model_paths=model_path, device=device, default_dtype=dtype)
    predict(model, frames[:8], device=device)  # warm up both paths
    calc.get_potential_energy(frames[0].copy())
    energies = {}

    def batched() -> float:
        start = time.perf_counter()
        energies["batched"] = [p.energy for p in predict(model, frames, batch_size=32, device=device)]
        return len(frames) / (time.perf_counter() - start)

    def calculator_loop() -> float:
        start = time.perf_counter()
        looped = []
        for atoms in frames:
            atoms = atoms.copy()
            atoms.calc = calc
            looped.append(atoms.get_potential_energy())
            atoms.get_forces()
        energies["calculator"] = looped
        return len(frames) / (time.perf_counter() - start)

    anchors, targets = side_by_side(calculator_loop, batched, repeats)
    anchor, target = median(anchors), median(targets)
    ratio = target / anchor
    max_de = float(np.max(np.abs(np.array(energies["batched"]) - np.array(energies["calculator"]))))
    atoms_per_frame = sum(len(a) for a in frames) / len(frames)
    return [
        Row(
            label,
            f"evaluation, {len(frames)} frames ({device})",
            "MACECalculator per frame",
            "core.evaluation.predict",
            anchor,
            target,
            "frames/s",
            ratio,
            ">= 5",
            ratio >= 5,
            f"{atoms_per_frame:.0f} atoms/frame, batch 32, {dtype}; max |dE| {max_de:.1e} eV",
            {"anchor_frames_per_s": anchors, "target_frames_per_s": targets, "max_abs_de_ev": max_de},
        )
    ]
