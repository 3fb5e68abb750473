"""The science core: plain Python, no Dagster import."""
