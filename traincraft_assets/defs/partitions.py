"""Partitions more than one module reads: one data batch per file taken into the inbox; the
active-learning loop's committee members and exploration walks (registered by whoever starts
an iteration: `traincraft explore` or the loop sensor)."""

import dagster as dg

data_batches = dg.DynamicPartitionsDefinition(name="data_batches")
committee_members = dg.DynamicPartitionsDefinition(name="committee_members")  # member-0, member-1, ...
exploration_walks = dg.DynamicPartitionsDefinition(name="exploration_walks")  # <structure>@<T>K
