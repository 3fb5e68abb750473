"""Replay subset selection from the pretraining pool.

MACE uses a `--pt_train_file` whole (its num_samples/subselect/filter flags act only on its
named sets), so the subset is chosen here, with MACE's own element filter, descriptors and
farthest-point sampling. Forgetting is measured on held-out frames: those the foundation never
trained on when the pool comes with them, else frames that pass the filter but are not selected
(a foundation trained on its whole pool has seen those, so they understate forgetting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms

from traincraft_assets.core.device import Device, resolve_device

Subselect = Literal["fps", "random"]
Filtering = Literal["combinations", "exclusive", "inclusive", "none"]


@dataclass
class ReplaySettings:
    num_samples: int = field(default=10000, metadata={"help": "MACE's guide: as many as affordable (~30000 with mp)"})
    subselect: Subselect = field(
        default="fps", metadata={"help": "fps: farthest-point sampling on the foundation's descriptors; or random"}
    )
    filtering: Filtering = field(
        default="combinations",
        metadata={
            "help": "MACE's element filter: combinations (only dataset elements), exclusive (exactly the "
            "dataset's set), inclusive (all dataset elements, others allowed), none"
        },
    )
    num_heldout: int = field(
        default=200, metadata={"help": "held-out frames (of the target's elements) to measure forgetting on"}
    )
    seed: int = field(default=0, metadata={"help": "FPS start point and random choices"})
    device: Device = field(default="auto", metadata={"help": "where FPS descriptors are computed; auto: cuda if there"})


@dataclass
class ReplaySelection:
    selected: list[Atoms]
    heldout: list[Atoms]
    n_pool: int
    n_filtered: int
    heldout_source: str


def replay_shortfall(n_replay: int, n_train: int) -> str | None:
    """Advice when multihead replay trains on fewer replay frames than target frames: each epoch
    then updates the replay head less often than the shared layers move toward the target, and
    it forgets. On the demo (docs: Overview), 24 replay frames for 94 target training frames ended at
    1.46x the foundation's force error on its held-out frames, 96 at 0.79x."""
    if n_replay >= n_train:
        return None
    return (
        f"{n_replay} replay frames for {n_train} target training frames: with fewer replay frames than target "
        "frames, multihead replay updates its replay head less often than the shared layers move, and it forgets "
        "(the demo: 24 replay frames for 94 training frames ended at 1.46x the foundation's force error on "
        "held-out frames, 96 at 0.79x). MACE's guide: replay as many frames as you can afford; raise "
        "replay_subset's num_samples, or give it a larger pool."
    )


def filter_pool(pool: Sequence[Atoms], target_elements: Sequence[str], filtering: Filtering) -> list[Atoms]:
    from mace.cli.fine_tuning_select import FilteringType, filter_atoms

    kind = FilteringType(filtering)
    return [atoms for atoms in pool if filter_atoms(atoms, list(target_elements), kind)]


def _fps_indices(frames: list[Atoms], n: int, model_path: str, device: str, dtype: str) -> list[int]:
    try:
        import fpsample  # noqa: F401  (MACE's FPS needs it and falls back to random without it)
    except ImportError as exc:
        raise RuntimeError(
            "subselect 'fps' needs the fpsample package (pip install 'mace-torch[fpsample]'); "
            "without it MACE silently falls back to random selection. Install it or choose "
            "subselect: random."
        ) from exc
    from mace.calculators import MACECalculator
    from mace.cli import fine_tuning_select
    from mace.cli.fine_tuning_select import FPS, calculate_descriptors

    from traincraft_assets.core.models import describe_file
    from traincraft_assets.core.quiet import without_progress_bars

    head = describe_file(Path(model_path))["head"]
    calc = MACECalculator(model_paths=model_path, device=device, default_dtype=dtype, head=head)
    work = [atoms.copy() for atoms in frames]
    with without_progress_bars(fine_tuning_select):
        calculate_descriptors(work, calc)
        return [int(i) for i in FPS(work, n).run()]


def select_replay(
    pool: Sequence[Atoms],
    target_elements: Sequence[str],
    settings: ReplaySettings,
    foundation_model: str | None,
    dtype: str = "float64",
    heldout_pool: Sequence[Atoms] = (),
) -> ReplaySelection:
    """Filter `pool` to the target elements and select `num_samples` frames (FPS on the
    foundation's descriptors, or random). Hold out up to `num_heldout` frames of `heldout_pool`
    that pass the filter, or without one, of the unselected rest."""
    num_samples, subselect, filtering = settings.num_samples, settings.subselect, settings.filtering
    seed = settings.seed
    if filtering != "none" and not target_elements:
        raise ValueError(f"filtering {filtering!r} needs the dataset's elements; the dataset has none.")
    filtered = filter_pool(pool, target_elements, filtering)
    if not filtered:
        raise ValueError(
            f"no pretraining frame passes filtering {filtering!r} for elements "
            f"{list(target_elements)} (pool of {len(pool)} frames). Use filtering 'none' or "
            "'inclusive', or a pretraining set that covers these elements."
        )
    np.random.seed(seed)  # MACE's FPS picks its start point with numpy's global RNG
    rng = np.random.default_rng(seed)
    n = min(num_samples, len(filtered))
    if n == len(filtered):
        chosen = list(range(len(filtered)))
    elif subselect == "fps":
        if foundation_model is None:
            raise ValueError("subselect 'fps' needs the foundation model for descriptors.")
        chosen = _fps_indices(filtered, n, foundation_model, resolve_device(settings.device), dtype)
    else:
        chosen = sorted(int(i) for i in rng.choice(len(filtered), size=n, replace=False))
    if heldout_pool:
        candidates, source = filter_pool(heldout_pool, target_elements, filtering), "never trained on"
    else:
        chosen_set = set(chosen)
        candidates = [atoms for i, atoms in enumerate(filtered) if i not in chosen_set]
        source = "unselected pool frames"
    keep = sorted(rng.permutation(len(candidates))[: settings.num_heldout].tolist()) if candidates else []
    return ReplaySelection(
        selected=[filtered[i] for i in chosen],
        heldout=[candidates[i] for i in keep],
        n_pool=len(pool),
        n_filtered=len(filtered),
        heldout_source=source,
    )
