"""CUDA smoke test, for a machine with a GPU: the tiny demo graph (the tests' settings) with
`device: auto` everywhere, on a throwaway instance; exits 0 only if the fine-tune and the
parity report ran on CUDA. Usage: python bench/cuda_smoke.py
"""

import sys
import tempfile
from pathlib import Path

import dagster as dg


def main() -> int:
    import torch

    from traincraft_assets.app import demo
    from traincraft_assets.defs.definitions import build_defs
    from traincraft_assets.defs.instance import latest_metadata
    from traincraft_assets.defs.resources import InboxResource, StoreResource
    from traincraft_assets_tests.conftest import TINY_RUN_CONFIG

    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}", flush=True)
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp) as instance:
        root = Path(tmp)
        defs = build_defs(
            resources={
                "store": StoreResource(root=str(root / "store")),
                "inbox": InboxResource(path=str(root / "inbox")),
            }
        )
        report = demo.run(instance, defs, TINY_RUN_CONFIG, root / "batches", root / "inbox", frames_per_kind=4)
        device = latest_metadata(instance, "finetuned_model")["device"]
        print(f"finetuned_model trained on: {device}; parity_report keys: {sorted(report)[:5]}...")
    return 0 if device == "cuda" else 1


if __name__ == "__main__":
    sys.exit(main())
