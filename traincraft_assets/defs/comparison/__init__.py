"""Comparison: every fine-tuning strategy on the same data and budget, side by side."""

from traincraft_assets.defs.comparison.assets import strategy_arm, strategy_comparison

ASSETS = [strategy_arm, strategy_comparison]
