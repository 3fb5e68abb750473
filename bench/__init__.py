"""Benchmarks: every figure a ratio of a target to an anchor measured side by side in one run.

Run `python -m bench` (or `--quick`, `--rows 1,2`) from the repository root; see bench/README.md.
"""
