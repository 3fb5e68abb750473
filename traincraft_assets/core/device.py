"""Where tensors run: the one place 'auto' is turned into a torch device."""

from __future__ import annotations

from typing import Literal

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["float32", "float64"]


def resolve_device(device: str) -> str:
    """'auto' means the GPU when the step's machine has one (a GPU pod), else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
