"""Partitions more than one asset group reads: one data batch per file taken into the inbox."""

import dagster as dg

data_batches = dg.DynamicPartitionsDefinition(name="data_batches")
