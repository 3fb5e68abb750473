"""Paths typed into config: resolved, and read only from inside the project's roots.

A settings field that names an input file says so once, with `input_path(help)` as its
metadata; `path_problems` then checks every such field of a settings object: the file exists,
is readable, and resolves (after `..` and symlinks) inside the store, the inbox or a data root
(TRAINCRAFT_DATA_ROOTS). A run on a shared cluster cannot be pointed at files it has no
business reading, and a typo is reported before any step does work.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from traincraft_assets.core.settings import DATA_ROOTS_ENV, Settings

INPUT_PATH = "input_path"  # metadata key marking a settings field as an input file


def input_path(help_text: str) -> dict:
    """Metadata for a settings field that names an input file."""
    return {"help": help_text, INPUT_PATH: True}


def allowed_roots(store: Path, settings: Settings) -> list[Path]:
    """Where config may point at input files: the store, the inbox and the data roots."""
    return [Path(store), settings.inbox, *settings.data_roots]


def path_fields(settings, prefix: str = "") -> dict[str, str]:
    """{field name: value} of every input-path field that is set, nested settings included."""
    found = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            found.update(path_fields(value, f"{prefix}{f.name}."))
        elif f.metadata.get(INPUT_PATH) and value:
            found[f"{prefix}{f.name}"] = value
    return found


def path_problem(name: str, value: str, roots: Sequence[Path]) -> str | None:
    """What is wrong with input path `value` of field `name`, or None."""
    resolved = Path(value).expanduser().resolve()  # follows symlinks and `..`
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        return (
            f"{name} {value!r} resolves to {resolved}, outside the directories this project reads "
            f"({', '.join(str(r) for r in roots)}). Move the file under one of them, or add its "
            f"directory to {DATA_ROOTS_ENV} ({os.pathsep}-separated)."
        )
    if not resolved.is_file():
        return f"{name} {value!r}: no such file ({resolved})."
    if not os.access(resolved, os.R_OK):
        return f"{name} {value!r}: this process may not read it (permissions of {resolved})."
    return None


def path_problems(settings, roots: Sequence[Path]) -> list[str]:
    """path_problem for every input-path field of `settings` that is set."""
    return [p for name, value in path_fields(settings).items() if (p := path_problem(name, value, roots))]
