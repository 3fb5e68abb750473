"""The environment, read in one place.

Every `TRAINCRAFT_*` variable the project understands is read here, and nowhere else, so a
newcomer (or a Helm values file) finds them all in one list. `load_settings()` reads the
environment at call time: the CLI, the Dagster resources and the training backend each call it
when they start, so a changed variable is seen by the next run, not frozen at import.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

Deployment = Literal["local", "k8s"]

STORE_ENV = "TRAINCRAFT_STORE"
INBOX_ENV = "TRAINCRAFT_INBOX"
DEPLOYMENT_ENV = "TRAINCRAFT_DEPLOYMENT"
TRAIN_COMMAND_ENV = "TRAINCRAFT_MACE_TRAIN_COMMAND"
POD_PROFILES_ENV = "TRAINCRAFT_POD_PROFILES"
TRAINING_PROCESSES_ENV = "TRAINCRAFT_TRAINING_PROCESSES"
INBOX_SETTLE_ENV = "TRAINCRAFT_INBOX_SETTLE_S"
RUN_CONFIG_ENV = "TRAINCRAFT_RUN_CONFIG"
RETRAIN_DEBOUNCE_ENV = "TRAINCRAFT_RETRAIN_DEBOUNCE_S"
NIGHTLY_RETRAIN_CRON_ENV = "TRAINCRAFT_NIGHTLY_RETRAIN_CRON"
DATA_ROOTS_ENV = "TRAINCRAFT_DATA_ROOTS"
LOOP_ENV = "TRAINCRAFT_LOOP"

DEFAULT_STORE = ".traincraft/store"
DEFAULT_INBOX = ".traincraft/inbox"
DEFAULT_INBOX_SETTLE_S = 10.0
DEFAULT_RETRAIN_DEBOUNCE_S = 600.0
DEFAULT_NIGHTLY_RETRAIN_CRON = "0 2 * * *"


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
    run_config: Path | None  # YAML run config for runs nobody configures by hand (defs/jobs.py)
    retrain_debounce_s: float  # retrain once labelled batches have been quiet this long
    nightly_retrain_cron: str  # when the nightly_retrain schedule (off by default) looks for changes
    # besides the store and the inbox, where config may point at input files (core/paths.py)
    data_roots: tuple[Path, ...]
    loop: bool  # the active-learning loop's sensor starts running (defs/automation/loop.py)


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
    settle_s = _seconds(
        env, INBOX_SETTLE_ENV, DEFAULT_INBOX_SETTLE_S, "a file in the inbox must stay unchanged before it is taken"
    )
    debounce_s = _seconds(
        env, RETRAIN_DEBOUNCE_ENV, DEFAULT_RETRAIN_DEBOUNCE_S, "labelled batches must stay unchanged before retraining"
    )
    run_config = env.get(RUN_CONFIG_ENV)
    processes = env.get(TRAINING_PROCESSES_ENV) or "1"
    if not processes.isdigit() or int(processes) < 1:
        raise SettingsError(
            f"{TRAINING_PROCESSES_ENV} must be a whole number of processes (one per GPU), 1 or more; got {processes!r}."
        )
    loop = (env.get(LOOP_ENV) or "off").lower()
    if loop not in ("on", "off"):
        raise SettingsError(f"{LOOP_ENV} must be 'on' or 'off' (whether the loop sensor starts running); got {loop!r}.")
    return Settings(
        store=Path(env.get(STORE_ENV) or DEFAULT_STORE).absolute(),
        inbox=Path(env.get(INBOX_ENV) or DEFAULT_INBOX).absolute(),
        inbox_settle_s=settle_s,
        deployment=deployment,
        train_command=tuple(shlex.split(command)) if command else None,
        pod_profiles=Path(profiles).absolute() if profiles else None,
        training_processes=int(processes),
        run_config=Path(run_config).absolute() if run_config else None,
        retrain_debounce_s=debounce_s,
        nightly_retrain_cron=env.get(NIGHTLY_RETRAIN_CRON_ENV) or DEFAULT_NIGHTLY_RETRAIN_CRON,
        # default: the working directory, where a local project keeps its files
        data_roots=tuple(Path(p).absolute() for p in (env.get(DATA_ROOTS_ENV) or ".").split(os.pathsep) if p),
        loop=loop == "on",
    )


def _seconds(env: Mapping[str, str], name: str, default: float, meaning: str) -> float:
    value = env.get(name) or str(default)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise SettingsError(f"{name} must be a number of seconds >= 0 (how long {meaning}); got {value!r}.")
    return seconds
