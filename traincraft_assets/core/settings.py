"""The environment, read in one place.

Every `TRAINCRAFT_*` variable the project understands is read here, and nowhere else, so a
newcomer (or a Helm values file) finds them all in one list. `load_settings()` reads the
environment at call time: the CLI, the Dagster resources and the training backend each call it
when they start, so a changed variable is seen by the next run, not frozen at import.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, get_args

Deployment = Literal["local", "k8s"]

STORE_ENV = "TRAINCRAFT_STORE"
INBOX_ENV = "TRAINCRAFT_INBOX"
DEPLOYMENT_ENV = "TRAINCRAFT_DEPLOYMENT"
TRAIN_COMMAND_ENV = "TRAINCRAFT_MACE_TRAIN_COMMAND"
POD_PROFILES_ENV = "TRAINCRAFT_POD_PROFILES"
TRAINING_PROCESSES_ENV = "TRAINCRAFT_TRAINING_PROCESSES"
INBOX_SETTLE_ENV = "TRAINCRAFT_INBOX_SETTLE_S"

DEFAULT_STORE = ".traincraft/store"
DEFAULT_INBOX = ".traincraft/inbox"
DEFAULT_INBOX_SETTLE_S = 10.0


class SettingsError(ValueError):
    """An environment variable with a value the project cannot use."""


@dataclass(frozen=True)
class Settings:
    store: Path  # artifact store root (a ReadWriteMany volume on Kubernetes)
    inbox: Path  # one file per data batch; the file name is the batch name
    inbox_settle_s: float  # the inbox sensor takes a file once unchanged this long (core/inbox.py)
    deployment: Deployment  # local: one process; k8s: a pod per step
    train_command: tuple[str, ...] | None  # replaces `<python> -m mace.cli.run_train`
    pod_profiles: Path | None  # YAML overriding the Kubernetes pod profiles (defs/k8s/profiles.py)
    training_processes: int  # ranks per training, one per GPU (set in GPU pods by their profile)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `environ` (default: this process's environment); relative paths are taken
    from the working directory."""
    env = os.environ if environ is None else environ
    deployment = env.get(DEPLOYMENT_ENV) or "local"
    if deployment not in get_args(Deployment):
        raise SettingsError(
            f"{DEPLOYMENT_ENV} must be one of {list(get_args(Deployment))}; got {deployment!r}. "
            f"Unset it on a laptop, or set it to 'k8s' inside the cluster."
        )
    command = env.get(TRAIN_COMMAND_ENV)
    profiles = env.get(POD_PROFILES_ENV)
    settle = env.get(INBOX_SETTLE_ENV) or str(DEFAULT_INBOX_SETTLE_S)
    try:
        settle_s = float(settle)
    except ValueError:
        settle_s = -1.0
    if not settle_s >= 0:
        raise SettingsError(
            f"{INBOX_SETTLE_ENV} must be a number of seconds >= 0 (how long a file in the inbox must "
            f"stay unchanged before it is taken); got {settle!r}."
        )
    processes = env.get(TRAINING_PROCESSES_ENV) or "1"
    if not processes.isdigit() or int(processes) < 1:
        raise SettingsError(
            f"{TRAINING_PROCESSES_ENV} must be a whole number of processes (one per GPU), 1 or more; "
            f"got {processes!r}."
        )
    return Settings(
        store=Path(env.get(STORE_ENV) or DEFAULT_STORE).absolute(),
        inbox=Path(env.get(INBOX_ENV) or DEFAULT_INBOX).absolute(),
        inbox_settle_s=settle_s,
        deployment=deployment,
        train_command=tuple(shlex.split(command)) if command else None,
        pod_profiles=Path(profiles).absolute() if profiles else None,
        training_processes=int(processes),
    )
