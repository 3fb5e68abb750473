"""Warnings from dependencies that tell a user of this tool nothing they can act on, filtered
once, by message, when the package is imported: a new or different warning still shows."""

import os
import warnings

UNACTIONABLE = (
    # MACE sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD itself, to load its own pickled models
    (UserWarning, r"Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected"),
    # inside MACE's model constructor and its TorchScript compilation
    (UserWarning, r"To copy construct from a tensor"),
    (UserWarning, r"The TorchScript type system doesn't support instance-level annotations"),
)


def silence_unactionable_warnings() -> None:
    for category, message in UNACTIONABLE:
        warnings.filterwarnings("ignore", message=message, category=category)


def child_warning_filters() -> str:
    """The same filters for a child Python process (MACE's training), as its PYTHONWARNINGS;
    the user's own PYTHONWARNINGS comes first and still applies."""
    ours = [f"ignore:{message}:{category.__name__}" for category, message in UNACTIONABLE]
    return ",".join(filter(None, [os.environ.get("PYTHONWARNINGS", ""), *ours]))
