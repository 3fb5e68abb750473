"""The MACE training backend: settings, command rendering, the run, its results, export."""

from traincraft_assets.core.training.mace.settings import ModelShape, TrainSettings
from traincraft_assets.core.training.mace.trainer import MaceTrainer

__all__ = ["MaceTrainer", "ModelShape", "TrainSettings"]
