"""MACE training settings: every choice with its default, declared once.

The defaults follow the fine-tuning strategies study (docs: Training, why these defaults): E0s from the foundation,
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

Strategy = Literal["multihead", "naive", "scratch", "multifidelity"]
Head = Label  # a head fits one label
E0sMode = Literal["foundation", "average", "dict", "file"]
ReplayLabels = Literal["reference", "pseudo"]

# Learning rate when none is given: multihead converges best near 1e-4 (and it is what MACE
# itself uses there), naive/LoRA/frozen fine-tuning tolerates 1e-3, scratch needs MACE's 1e-2.
# multifidelity trains a new model (one head per level of theory), so it starts like scratch;
# with a replay head it fine-tunes the foundation as multihead does.
DEFAULT_LR = {"multihead": 1e-4, "naive": 1e-3, "scratch": 1e-2, "multifidelity": 1e-2}


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
    strategy: Strategy = field(
        default="multihead",
        metadata=_help(
            "multihead: replay the foundation's data on a second head; naive: fine-tune all weights; scratch: no "
            "foundation; multifidelity: a new model with one head per level of theory in the data"
        ),
    )
    level: str | None = field(
        default=None,
        metadata=_help(
            "the level of theory to train on (single-head strategies) or to deploy (multifidelity: its head "
            "picks the kept epoch); unset: the data's only level"
        ),
    )
    merge_levels: bool = field(
        default=False,
        metadata=_help(
            "single-head strategies: train frames of every level of theory as one head; off, data at several "
            "levels is refused (one head fitting two levels learns neither)"
        ),
    )
    replay_head: bool = field(
        default=False,
        metadata=_help(
            "multifidelity: fine-tune the foundation instead of training a new model, its replay subset on one more "
            "head (MACE's pt_head, as in multihead), so the foundation's own level is one more level"
        ),
    )
    freeze: int | None = field(
        default=None, metadata=_help("MACE --freeze N: 1-4 embedding, 5 + interactions, 6 + products")
    )
    lora: bool = field(
        default=False, metadata=_help("MACE --lora: train low-rank adapters, merged into the saved model")
    )
    lora_rank: int = field(default=4, metadata=_help("MACE --lora_rank"))
    lora_alpha: float = field(default=1.0, metadata=_help("MACE --lora_alpha"))
    replay_labels: ReplayLabels = field(
        default="reference",
        metadata=_help("pseudo: replay frames relabelled by the foundation itself (multihead only)"),
    )
    heads: Sequence[Head] = field(
        default=("energy", "forces"),
        metadata=_help(f"any of {', '.join(get_args(Head))}"),
    )
    e0s: E0sMode = field(
        default="foundation",
        metadata=_help("isolated-atom energies: the foundation's, averaged from the data, e0s_dict or e0s_file"),
    )
    e0s_dict: dict[str, float] | None = field(default=None, metadata=_help("element symbol -> eV"))
    e0s_file: str | None = field(default=None, metadata=input_path("JSON: atomic number -> eV"))
    weight_decay: float = field(default=0.0, metadata=_help("0: no pull away from the pretrained weights"))
    ema_decay: float = field(default=0.995, metadata=_help("exponential moving average of the weights (always on)"))
    energy_weight: float = field(default=10.0, metadata=_help("loss weight, passed with the energy and forces heads"))
    forces_weight: float = field(default=10.0, metadata=_help("loss weight, passed with the energy and forces heads"))
    stress_weight: float = field(default=1.0, metadata=_help("loss weight, passed with the stress head"))
    dipole_weight: float = field(default=1.0, metadata=_help("loss weight, passed with the dipole head"))
    polarizability_weight: float = field(
        default=1.0, metadata=_help("loss weight, passed with the polarizability head")
    )
    lr: float | None = field(default=None, metadata=_help("default: multihead 1e-4, naive 1e-3, scratch 1e-2"))
    batch_size: int = field(default=10, metadata=_help("frames per batch, per process when several GPUs train"))
    valid_batch_size: int | None = field(default=None, metadata=_help("frames per validation batch; unset: batch_size"))
    max_num_epochs: int = field(default=30, metadata=_help("epochs to train; the kept model is the best on valid"))
    device: Device = field(default="auto", metadata=_help("auto: cuda when the step's machine has one"))
    dtype: DType = field(default="float64", metadata=_help("MACE --default_dtype"))
    seed: int = field(default=0, metadata=_help("MACE --seed: initialisation, shuffling"))
    shape: ModelShape = field(default_factory=ModelShape)
    extra: dict[str, str] = field(
        default_factory=dict, metadata=_help('any other mace_run_train flag, e.g. {"scheduler_patience": "5"}')
    )

    @property
    def replays(self) -> bool:
        """MACE's multihead fine-tuning: the foundation's replay frames on a head of their own."""
        return self.strategy == "multihead" or (self.strategy == "multifidelity" and self.replay_head)

    @property
    def fine_tunes(self) -> bool:
        """Starts from the foundation's weights (otherwise a new model)."""
        return self.strategy == "naive" or self.replays

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR["multihead" if self.replays else self.strategy]
