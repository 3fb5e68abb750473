"""Warnings and log lines from dependencies that tell a user of this tool nothing
they can act on, filtered once, by message, when the package is imported: a new or different
warning still shows."""

import logging
import os
import re
import warnings

UNACTIONABLE = (
    # MACE sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD itself, to load its own pickled models
    (UserWarning, r"Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected"),
    # inside MACE's model constructor and its TorchScript compilation
    (UserWarning, r"To copy construct from a tensor"),
    (UserWarning, r"The TorchScript type system doesn't support instance-level annotations"),
)

UNACTIONABLE_LOGS = (
    # MACECalculator, when the quality gates run their MD in float64 on a float32 model: on purpose
    r"^Default dtype float64 does not match model dtype float32, converting models to float64",
)


class _DropUnactionableLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let logging's handler report it, as without this filter
            return True
        return not any(re.search(pattern, message) for pattern in UNACTIONABLE_LOGS)


def silence_unactionable_warnings() -> None:
    for category, message in UNACTIONABLE:
        warnings.filterwarnings("ignore", message=message, category=category)
    root = logging.getLogger()  # MACE logs through the root logger
    if not any(isinstance(f, _DropUnactionableLogs) for f in root.filters):
        root.addFilter(_DropUnactionableLogs())


def child_warning_filters() -> str:
    """The same filters for a child Python process (MACE's training), as its PYTHONWARNINGS;
    the user's own PYTHONWARNINGS comes first and still applies."""
    ours = [f"ignore:{message}:{category.__name__}" for category, message in UNACTIONABLE]
    return ",".join(filter(None, [os.environ.get("PYTHONWARNINGS", ""), *ours]))
