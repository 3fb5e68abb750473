"""The demo's shipped parts: its run config and the demo foundation (foundation/)."""

from pathlib import Path

RUN_CONFIG = Path(__file__).parent / "run_config.yaml"
LOOP_CONFIG = Path(__file__).parent / "loop.yaml"  # `traincraft explore`: the loop's entries
