"""Comparison: every fine-tuning strategy on the same data and budget, side by side."""

import dagster as dg

from traincraft_assets.defs.comparison.assets import strategy_arm, strategy_arms, strategy_comparison

defs = dg.Definitions(assets=[strategy_arm, strategy_comparison])

__all__ = ["defs", "strategy_arm", "strategy_arms", "strategy_comparison"]
