"""MACE training settings: every choice with its default, declared once.

The defaults follow the fine-tuning strategies study (design.md): E0s from the foundation,
multihead replay, no weight decay, EMA 0.995, energy and force weights 10. The Dagster config of
`finetuned_model` is derived from these fields; the `help` metadata becomes its description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from traincraft_assets.core.device import Device, DType
from traincraft_assets.core.frames import Label
from traincraft_assets.core.paths import input_path

Strategy = Literal["multihead", "naive", "scratch"]
Head = Label  # a head fits one label
E0sMode = Literal["foundation", "average", "dict", "file"]
ReplayLabels = Literal["reference", "pseudo"]

# Learning rate when none is given: multihead converges best near 1e-4 (and it is what MACE
# itself uses there), naive/LoRA/frozen fine-tuning tolerates 1e-3, scratch needs MACE's 1e-2.
DEFAULT_LR = {"multihead": 1e-4, "naive": 1e-3, "scratch": 1e-2}


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class ModelShape:
    """Architecture for a model trained from scratch (fine-tuning keeps the foundation's)."""

    num_channels: int = field(default=128, metadata=_help("architecture, when training from scratch"))
    max_L: int = field(default=1, metadata=_help("architecture, when training from scratch"))
    r_max: float = field(default=5.0, metadata=_help("cutoff (Å), when training from scratch"))
    num_interactions: int = field(default=2, metadata=_help("architecture, when training from scratch"))
    correlation: int = field(default=3, metadata=_help("architecture, when training from scratch"))


@dataclass
class TrainSettings:
    strategy: Strategy = "multihead"
    freeze: int | None = field(
        default=None, metadata=_help("MACE --freeze N: 1-4 embedding, 5 + interactions, 6 + products")
    )
    lora: bool = False
    lora_rank: int = 4
    lora_alpha: float = 1.0
    replay_labels: ReplayLabels = "reference"
    heads: Sequence[Head] = field(
        default=("energy", "forces"),
        metadata=_help(f"any of {', '.join(get_args(Head))}"),
    )
    e0s: E0sMode = "foundation"
    e0s_dict: dict[str, float] | None = field(default=None, metadata=_help("element symbol -> eV"))
    e0s_file: str | None = field(default=None, metadata=input_path("JSON: atomic number -> eV"))
    weight_decay: float = 0.0
    ema_decay: float = 0.995
    energy_weight: float = 10.0
    forces_weight: float = 10.0
    stress_weight: float = 1.0
    dipole_weight: float = 1.0
    polarizability_weight: float = 1.0
    lr: float | None = field(default=None, metadata=_help("default: multihead 1e-4, naive 1e-3, scratch 1e-2"))
    batch_size: int = 10
    valid_batch_size: int | None = None
    max_num_epochs: int = 30
    device: Device = field(default="auto", metadata=_help("auto: cuda when the step's machine has one"))
    dtype: DType = "float64"
    seed: int = 0
    shape: ModelShape = field(default_factory=ModelShape)
    extra: dict[str, str] = field(
        default_factory=dict, metadata=_help('any other mace_run_train flag, e.g. {"scheduler_patience": "5"}')
    )

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.strategy]
