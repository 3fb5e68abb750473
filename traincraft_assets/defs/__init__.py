"""Dagster wrappers around traincraft_assets.core; `defs` is the one Definitions object."""

from traincraft_assets.defs.definitions import defs

__all__ = ["defs"]
