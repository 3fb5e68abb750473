"""Batched evaluation (core.evaluation.predict) vs a per-frame ASE MACECalculator loop.

Same model, same frames, same thread count, measured side by side; prints the speed ratio.
Usage: python bench/eval_batched_vs_calculator.py MODEL [N_FRAMES]
(MODEL: any MACE .model, e.g. the demo's .traincraft/store/foundation_model/*/foundation.model)
"""

import sys
import time

import numpy as np


def main(model_path: str, n_frames: int = 200) -> None:
    from mace.calculators import MACECalculator

    from traincraft_assets.core.demo import target_batches
    from traincraft_assets.core.evaluation import load_model, predict

    frames = [a for batch in target_batches(frames_per_kind=n_frames // 4 + 1).values() for a in batch][:n_frames]
    model = load_model(model_path)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    calc = MACECalculator(model_paths=model_path, device="cpu", default_dtype=dtype)

    predict(model, frames[:8])  # warm up both paths
    calc.get_potential_energy(frames[0].copy())

    t0 = time.perf_counter()
    batched = predict(model, frames, batch_size=32)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    looped = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        looped.append(atoms.get_potential_energy())
    t_loop = time.perf_counter() - t0

    diff = np.max(np.abs(np.array([p.energy for p in batched]) - np.array(looped)))
    print(f"{len(frames)} frames, {sum(len(a) for a in frames)} atoms, dtype {dtype}")
    print(f"batched:    {t_batched:7.2f} s  ({len(frames) / t_batched:6.1f} frames/s)")
    print(f"calculator: {t_loop:7.2f} s  ({len(frames) / t_loop:6.1f} frames/s)")
    print(f"speed-up batched/calculator: {t_loop / t_batched:.1f}x   max |dE| {diff:.2e} eV")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200)
