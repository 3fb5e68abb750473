"""Remake the shipped demo foundation: `python -m traincraft_assets.demo.make_foundation`.

Trains core.demo.DEMO_FOUNDATION on the demo pool (hours on 2 CPU cores, minutes on a GPU) and
writes foundation.model and manifest.json into --out (default: the package's demo/foundation).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from traincraft_assets.core import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=demo.SHIPPED_FOUNDATION_DIR)
    parser.add_argument("--device", default=demo.DEMO_FOUNDATION.device, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workdir", type=Path, help="keep MACE's logs and checkpoints here")
    args = parser.parse_args(argv)
    settings = replace(demo.DEMO_FOUNDATION, device=args.device)
    with tempfile.TemporaryDirectory(prefix="demo-foundation-") as scratch:
        manifest = demo.make_demo_foundation(args.out, (args.workdir or Path(scratch)).absolute(), settings)
    print(json.dumps({k: manifest[k] for k in ("heldout_errors", "wall_time_s", "sha256")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
