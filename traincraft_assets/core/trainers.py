"""Trainer registry: one entry per training backend.

A backend is an object with `check(settings, inputs)` (raise before anything starts) and
`train(settings, inputs, workdir, on_line) -> TrainResult`. Adding SevenNet, MatterSim or Orb is
a new module implementing those two methods and one line here; today's settings, the
`finetuned.model` file name and parity evaluation are still MACE's, so a second backend also
brings its own settings and an evaluation path.
"""

from __future__ import annotations

from traincraft_assets.core.mace_train import MaceTrainer

TRAINERS = {
    "mace": MaceTrainer(),
}


def get_trainer(name: str):
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; expected one of {sorted(TRAINERS)}.")
    return TRAINERS[name]
