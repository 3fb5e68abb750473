"""Reports: parity_report, the fine-tuned model against its foundation."""

from traincraft_assets.defs.reports.assets import parity_report

ASSETS = [parity_report]
