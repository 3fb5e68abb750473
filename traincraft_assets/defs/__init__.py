"""Dagster wrappers around traincraft_assets.core, one package per domain; definitions.py builds
the one Definitions object from them (`traincraft_assets.defs`, the package attribute, is it)."""
