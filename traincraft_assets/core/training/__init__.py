"""Training backends behind one interface (base.Trainer), and the registry that names them.

Adding a backend is a subpackage implementing `Trainer` plus one line in TRAINERS. Everything
outside core/training talks to the interface and this registry, never to a backend module.
"""

from __future__ import annotations

from traincraft_assets.core.training.base import (
    Launch,
    TrainConfigError,
    Trainer,
    TrainingDiverged,
    TrainingFailed,
    TrainInputs,
    TrainResult,
    Uses,
)
from traincraft_assets.core.training.mace import MaceTrainer

TRAINERS: dict[str, Trainer] = {
    "mace": MaceTrainer(),
}
DEFAULT_TRAINER = "mace"


def get_trainer(name: str) -> Trainer:
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; expected one of {sorted(TRAINERS)}.")
    return TRAINERS[name]


__all__ = [
    "DEFAULT_TRAINER",
    "TRAINERS",
    "Launch",
    "TrainConfigError",
    "TrainInputs",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingFailed",
    "Uses",
    "get_trainer",
]
