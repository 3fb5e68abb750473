"""Reports: parity_report, the fine-tuned model against its foundation."""

import dagster as dg

from traincraft_assets.defs.reports.assets import parity_report

defs = dg.Definitions(assets=[parity_report])

__all__ = ["defs"]
