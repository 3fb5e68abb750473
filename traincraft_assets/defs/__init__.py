"""Dagster wrappers around traincraft_assets.core, one package per domain; definitions.py builds
the one Definitions object from them (what `traincraft_assets.definitions` gives Dagster)."""
