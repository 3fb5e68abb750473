"""The demo's shipped parts: its run config and the demo foundation (foundation/)."""

from pathlib import Path

RUN_CONFIG = Path(__file__).parent / "run_config.yaml"
