"""Remake the shipped demo foundation: `python -m traincraft_assets.demo.make_foundation`.

Trains core.demo.DEMO_FOUNDATION on the demo pool (hours on 2 CPU cores, minutes on a GPU) and
writes foundation.model and manifest.json into --out (default: the package's demo/foundation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from traincraft_assets.core import demo
from traincraft_assets.core.device import resolve_device
from traincraft_assets.core.evaluation import evaluate
from traincraft_assets.core.foundation import train_from_scratch
from traincraft_assets.core.frames import write_frames
from traincraft_assets.core.manifest import utc_now, write_manifest
from traincraft_assets.core.metrics import to_mev
from traincraft_assets.core.models import load_model
from traincraft_assets.core.settings import load_settings
from traincraft_assets.core.store import file_sha256
from traincraft_assets.core.training import Launch
from traincraft_assets.core.training.mace import TrainSettings


def make_demo_foundation(
    out: Path,
    workdir: Path,
    settings: TrainSettings = demo.DEMO_FOUNDATION,
    launch: Launch | None = None,
    on_output: Callable[[str], None] = print,
) -> dict:
    """Train the demo foundation on the demo pool and write `out`/foundation.model and
    `out`/manifest.json: how it was made and how accurate it is on held-out frames of its own
    distribution. Returns the manifest."""
    import torch

    started, clock = utc_now(), time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    pool_path = workdir / "pool.xyz"
    write_frames(pool_path, demo.pretraining_frames())
    result = train_from_scratch(pool_path, settings, launch or Launch(), workdir, on_output)
    wall_s = time.monotonic() - clock
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.model_path, out / "foundation.model")
    heldout = demo.pretraining_frames(demo.HELDOUT_FRAMES_PER_METAL, heldout=True)
    accuracy = evaluate(load_model(out / "foundation.model"), heldout).overall
    manifest = {
        "remake": "python -m traincraft_assets.demo.make_foundation",
        "pool": {
            "generator": "traincraft_assets.core.demo.pretraining_frames",
            "frames_per_metal": demo.POOL_FRAMES_PER_METAL,
            "seed": 0,
            "metals": list(demo.PRETRAINING_METALS),
            "kinds": list(demo.POOL_KINDS),
        },
        "settings": asdict(settings),
        "argv": result.argv,
        "effective": result.effective,
        "best_epoch": result.best,
        "heldout_errors": {
            "n_frames": len(heldout),
            "rmse_e_mev_per_atom": to_mev(accuracy["rmse_e_per_atom"]),
            "rmse_f_mev_per_a": to_mev(accuracy["rmse_f"]),
            "rmse_s_mev_per_a3": to_mev(accuracy["rmse_s"]),
        },
        "started": started,
        "wall_time_s": round(wall_s, 1),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": resolve_device(settings.device),
        },
        "sha256": file_sha256(out / "foundation.model"),
    }
    write_manifest(out / "manifest.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=demo.SHIPPED_FOUNDATION_DIR)
    parser.add_argument("--device", default=demo.DEMO_FOUNDATION.device, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workdir", type=Path, help="keep MACE's logs and checkpoints here")
    args = parser.parse_args(argv)
    settings = replace(demo.DEMO_FOUNDATION, device=args.device)
    with tempfile.TemporaryDirectory(prefix="demo-foundation-") as scratch:
        workdir = (args.workdir or Path(scratch)).absolute()
        manifest = make_demo_foundation(args.out, workdir, settings, Launch.from_settings(load_settings()))
    print(json.dumps({k: manifest[k] for k in ("heldout_errors", "wall_time_s", "sha256")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
