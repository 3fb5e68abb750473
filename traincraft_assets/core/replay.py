"""Replay subset selection from the pretraining pool.

MACE uses a `--pt_train_file` whole (its num_samples/subselect/filter flags act only on its
named sets), so the subset is chosen here, with MACE's own element filter, descriptors and
farthest-point sampling. Forgetting is measured on held-out frames: those the foundation never
trained on when the pool comes with them, else frames that pass the filter but are not selected
(a foundation trained on its whole pool has seen those, so they understate forgetting).

A pool may be far larger than memory (MACE's `mp` set: 1.5 million frames), so nothing here
holds it: one pass over the file records where each frame starts and which pass the filter (16
bytes a frame), the chosen frames are then read from their byte ranges, and FPS descriptors are
computed a chunk at a time into a file kept beside the store (`descriptor_cache`), keyed by the
foundation's and the pool's sha256, which a second selection from the same pool reuses.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import ase.io
import numpy as np
from ase import Atoms

from traincraft_assets.core.device import Device, resolve_device
from traincraft_assets.core.frames import FrameError, chunks
from traincraft_assets.core.store import file_sha256

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
    notes: list[str] = field(default_factory=list)  # what the descriptor cache did, for the run log


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


@dataclass
class PoolIndex:
    """An extxyz pool file without its frames: where each frame starts, which frames pass the
    element filter, and their elements."""

    path: Path
    offsets: np.ndarray  # n_frames + 1 byte offsets: frame i is bytes offsets[i]:offsets[i + 1]
    passing: np.ndarray  # positions in the file of the frames that pass the filter, in file order
    species: list[str]  # elements of the passing frames, sorted as MACE's FPS lays them out

    @property
    def n_frames(self) -> int:
        return len(self.offsets) - 1


def _species_column(comment: bytes, columns: dict[bytes, int]) -> int:
    """The column of an extxyz frame's atom lines that holds the element symbol, from the
    comment line's Properties (cached in `columns` by Properties: comments differ every frame)."""
    found = re.search(rb"Properties=(\S+)", comment)
    properties = found.group(1) if found else b"species:S:1"
    if properties not in columns:
        fields, column = properties.split(b":"), 0
        for name, count in zip(fields[0::3], fields[2::3]):
            if name == b"species":
                break
            column += int(count)
        else:
            raise ValueError(f"its Properties {properties.decode()!r} have no species column")
        columns[properties] = column
    return columns[properties]


def index_pool(path: str | Path, target_elements: Sequence[str], filtering: Filtering) -> PoolIndex:
    """One pass over an extxyz pool, keeping per frame its byte offset and whether it passes
    MACE's element filter (decided once per set of elements), never the frames."""
    from mace.cli.fine_tuning_select import FilteringType, filter_atoms

    path, kind = Path(path), FilteringType(filtering)
    passes: dict[frozenset, bool] = {}
    columns: dict[bytes, int] = {}
    offsets, passing, species = array("q", [0]), array("q"), set()  # 8 bytes a frame, not a Python int
    with open(path, "rb") as handle:
        while line := handle.readline():
            frame = len(offsets) - 1
            if not line.strip():  # blank lines between or after frames
                offsets[-1] = handle.tell()
                continue
            try:
                n_atoms = int(line)
                column = _species_column(handle.readline(), columns)
            except ValueError as exc:
                raise FrameError(
                    f"{path}, frame {frame} (byte {offsets[-1]}): expected an extxyz frame, an atom count then "
                    f"a comment line with its Properties; found {line[:60]!r} ({exc}). The pool is staged by "
                    "pretraining_frames as extxyz: stage it again."
                ) from exc
            symbols = set()
            for read in range(n_atoms):
                atom = handle.readline()
                if not atom.endswith(b"\n"):
                    raise FrameError(
                        f"{path}: the file ends inside its last frame (frame {frame}: expected {n_atoms} atom "
                        f"lines, found {read}{' and a cut one' if atom else ''}). It is incomplete: an interrupted "
                        "write or copy? Stage the pool again (materialize pretraining_frames)."
                    )
                symbols.add(atom.split(None, column + 1)[column])
            key = frozenset(symbols)
            if key not in passes:
                names = sorted(s.decode() for s in key)
                passes[key] = bool(filter_atoms(Atoms(names), list(target_elements), kind))
            if passes[key]:
                passing.append(frame)
                species |= key
            offsets.append(handle.tell())
    if len(offsets) == 1:
        raise FrameError(f"{path}: contains no frames. Expected a pool of extxyz frames.")
    return PoolIndex(
        path,
        np.frombuffer(offsets, dtype=np.int64),
        np.frombuffer(passing, dtype=np.int64),
        sorted({s.decode() for s in species}),
    )


def read_pool_frames(index: PoolIndex, positions: Sequence[int]) -> list[Atoms]:
    """The frames at `positions` of the pool file, in that order, each parsed from its own byte
    range (memory holds the frames asked for, and one frame's text)."""
    frames = []
    with open(index.path, "rb") as handle:
        for position in positions:
            handle.seek(index.offsets[position])
            text = handle.read(index.offsets[position + 1] - index.offsets[position]).decode()
            frames.append(ase.io.read(io.StringIO(text), format="extxyz"))
    return frames


def descriptor_cache(store_root: Path) -> Path:
    """Where FPS descriptors are kept between selections: beside the store's artifacts, not one."""
    return Path(store_root) / ".cache" / "replay-descriptors"


@dataclass
class _Descriptors:
    """MACE's FPS descriptors of the passing frames: per frame, the mean invariant node
    descriptor of each element's atoms, one block per element of `species` (zeros where the
    frame lacks the element, which `present` records)."""

    values: np.ndarray  # (n_frames, len(species) * dim) float32, memory-mapped from the cache
    present: np.ndarray  # (n_frames, len(species)) bool


def _model_descriptors(
    frames: list[Atoms], model, species: list[str], head: str, dtype: str, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """MACE's `calculate_descriptors` for a chunk of frames, batched through MACE's own data
    pipeline (MACECalculator.get_descriptors runs one frame at a time)."""
    import torch
    from e3nn import o3
    from mace import data
    from mace.modules.utils import extract_invariant
    from mace.tools import torch_geometric, torch_tools, utils

    from traincraft_assets.core.models import model_heads

    torch_tools.set_default_dtype(dtype)
    keyspec = data.KeySpecification(info_keys={}, arrays_keys={})
    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    graphs = [
        data.AtomicData.from_config(
            data.config_from_atoms(atoms, key_specification=keyspec, head_name=head),
            z_table=z_table,
            cutoff=float(model.r_max),
            heads=model_heads(model),
        )
        for atoms in frames
    ]
    # which node features are invariant, as MACECalculator.get_descriptors takes them
    irreps = o3.Irreps(str(model.products[0].linear.irreps_out))
    n_invariant = irreps.dim // (irreps.lmax + 1) ** 2
    n_layers = int(model.num_interactions)
    dim = irreps.dim * (n_layers - 1) + n_invariant
    column = {element: k for k, element in enumerate(species)}
    values = np.zeros((len(frames), len(species) * dim), dtype=np.float32)
    present = np.zeros((len(frames), len(species)), dtype=bool)
    start = 0
    batch_size = max(1, DESCRIPTOR_ATOMS * len(frames) // sum(len(atoms) for atoms in frames))
    loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            nodes = model(batch.to_dict(), training=False, compute_force=False)["node_feats"]
            nodes = extract_invariant(nodes, num_layers=n_layers, num_features=n_invariant, l_max=irreps.lmax)
            nodes = nodes[:, :dim].detach().cpu().numpy()
            for k, per_frame in enumerate(np.split(nodes, batch.ptr[1:-1].cpu().numpy())):
                symbols = frames[start + k].symbols
                for element in np.unique(symbols):
                    block = column[element]
                    values[start + k, block * dim : (block + 1) * dim] = per_frame[symbols == element].mean(axis=0)
                    present[start + k, block] = True
            start += batch.num_graphs
    return values, present


# atoms per model call when computing descriptors: a batch's memory grows with its edges, and on
# 2 CPU cores 3-atom frames ran at 440 frames/s in batches of 8, 530 in batches of 64, 45 alone
DESCRIPTOR_ATOMS = 32
_CACHE_VERSION = 1  # bumped when what the cache holds changes


def _cache_key(index: PoolIndex, target_elements: Sequence[str], filtering: str, model_path: str, dtype: str) -> str:
    blob = {
        "version": _CACHE_VERSION,
        "foundation_sha256": file_sha256(Path(model_path)),
        "pool_sha256": file_sha256(index.path),
        "filtering": filtering,
        "elements": sorted(target_elements),
        "dtype": dtype,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _open_cached(folder: Path, index: PoolIndex) -> _Descriptors:
    """The descriptors kept in `folder`, checked against the index and their recorded sha256:
    ValueError (or OSError) says what is wrong with them."""
    meta = json.loads((folder / "meta.json").read_text())
    for name in ("descriptors.npy", "present.npy"):
        if file_sha256(folder / name) != meta["sha256"][name]:
            raise ValueError(f"{name} does not match the sha256 recorded when it was written")
    values = np.load(folder / "descriptors.npy", mmap_mode="r")
    present = np.load(folder / "present.npy")
    expected = (len(index.passing), len(index.species))
    if meta["species"] != index.species or values.shape[0] != expected[0] or present.shape != expected:
        raise ValueError(
            f"they hold {values.shape[0]} frames of {meta['species']}; the pool has {expected[0]} of {index.species}"
        )
    return _Descriptors(values, present)


def _compute_descriptors(index: PoolIndex, folder: Path, model_path: str, dtype: str, device: str) -> None:
    """Descriptors of the passing frames, a chunk at a time, written to `folder` (filled under
    a temporary name, then renamed: a folder of that name is always complete)."""
    import torch

    from traincraft_assets.core.models import describe_file, load_model

    head = describe_file(Path(model_path))["head"]
    model = load_model(model_path, device).to(getattr(torch, dtype))  # as MACECalculator's default_dtype
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        present, shape = [], None
        with open(partial / "descriptors.npy", "wb") as handle:
            for positions in chunks(index.passing):
                values, chunk_present = _model_descriptors(
                    read_pool_frames(index, positions), model, index.species, head, dtype, device
                )
                if shape is None:
                    shape = (len(index.passing), values.shape[1])
                    np.lib.format.write_array_header_1_0(
                        handle, {"descr": "<f4", "fortran_order": False, "shape": shape}
                    )
                handle.write(values.astype("<f4").tobytes())
                present.append(chunk_present)
        np.save(partial / "present.npy", np.concatenate(present))
        sha = {name: file_sha256(partial / name) for name in ("descriptors.npy", "present.npy")}
        (partial / "meta.json").write_text(json.dumps({"species": index.species, "shape": shape, "sha256": sha}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _descriptors(
    index: PoolIndex,
    target_elements: Sequence[str],
    filtering: str,
    model_path: str,
    dtype: str,
    device: str,
    cache_dir: Path,
    notes: list[str],
) -> _Descriptors:
    """The passing frames' descriptors from the cache, computed (again) when it lacks them or
    holds a broken copy."""
    folder = Path(cache_dir) / _cache_key(index, target_elements, filtering, model_path, dtype)
    if folder.is_dir():
        try:
            found = _open_cached(folder, index)
            notes.append(f"reused the FPS descriptors in {folder} (same foundation, pool and filter)")
            return found
        except (OSError, ValueError, KeyError) as exc:
            notes.append(f"the FPS descriptors in {folder} are unusable ({exc}); computing them again")
    _compute_descriptors(index, folder, model_path, dtype, device)
    notes.append(f"computed FPS descriptors of {len(index.passing)} frames into {folder}")
    return _open_cached(folder, index)


# rows of descriptors per product in farthest-point sampling (~8 MB of float32 at 64 columns)
FPS_ROWS = 32768


def _farthest_points(descriptors: _Descriptors, n: int, start: int) -> list[int]:
    """Exact farthest-point sampling from `start` over memory-mapped descriptors: memory holds
    a few numbers per frame (nearest-pick distance, block norms), never a frames x frames matrix.

    Distances are MACE's FPS distances: squared Euclidean over the element blocks both frames
    have; a frame lacking an element the other has is farther than any two frames that share
    their elements (MACE fills the missing block with 1e11), by the count of such elements."""
    values, present = descriptors.values, descriptors.present.astype(np.float64)
    n_frames, n_blocks = present.shape
    dim = values.shape[1] // max(n_blocks, 1)
    norms = np.empty((n_frames, n_blocks))
    for a in range(0, n_frames, FPS_ROWS):
        block = np.asarray(values[a : a + FPS_ROWS], dtype=np.float64).reshape(-1, n_blocks, dim)
        norms[a : a + FPS_ROWS] = (block**2).sum(axis=2)
    counts = present.sum(axis=1)
    apart = 4.0 * n_blocks * norms.max() + 1.0  # above any squared distance within shared elements
    nearest = np.full(n_frames, np.inf)
    picks = [int(start)]
    while len(picks) < n:
        j = picks[-1]
        pick, pick_present = np.asarray(values[j], dtype=np.float32), present[j]
        distance = norms @ pick_present + present @ (norms[j] * pick_present)
        for a in range(0, n_frames, FPS_ROWS):
            distance[a : a + FPS_ROWS] -= 2.0 * (values[a : a + FPS_ROWS] @ pick)
        np.maximum(distance, 0.0, out=distance)
        distance += (counts + pick_present.sum() - 2.0 * (present @ pick_present)) * apart
        np.minimum(nearest, distance, out=nearest)
        nearest[j] = -1.0  # never picked twice, even among identical frames (distances are >= 0)
        picks.append(int(np.argmax(nearest)))
    return picks


def _check_foundation_knows(index: PoolIndex, model_path: str, filtering: str) -> None:
    from traincraft_assets.core.models import describe_file

    known = describe_file(Path(model_path))["elements"]
    unknown = [element for element in index.species if element not in known]
    if unknown:
        raise ValueError(
            f"{index.path}: frames that pass filtering {filtering!r} contain {unknown}, which the foundation "
            f"({model_path}) does not know (it knows {known}); it cannot compute their descriptors or replay "
            "them. Use filtering 'combinations' (only the dataset's elements), a pool without them, or a "
            "foundation trained on them."
        )


def select_replay(
    pool: str | Path,
    target_elements: Sequence[str],
    settings: ReplaySettings,
    foundation_model: str | None,
    dtype: str = "float64",
    heldout_pool: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> ReplaySelection:
    """Filter the extxyz `pool` file to the target elements and select `num_samples` frames
    (FPS on the foundation's descriptors, kept in `cache_dir`, or random). Hold out up to
    `num_heldout` frames of the `heldout_pool` file that pass the filter, or without one, of
    the unselected rest. Memory holds the sample and a few numbers per pool frame."""
    num_samples, subselect, filtering = settings.num_samples, settings.subselect, settings.filtering
    if filtering != "none" and not target_elements:
        raise ValueError(f"filtering {filtering!r} needs the dataset's elements; the dataset has none.")
    index = index_pool(pool, target_elements, filtering)
    n_filtered = len(index.passing)
    if not n_filtered:
        raise ValueError(
            f"no pretraining frame passes filtering {filtering!r} for elements "
            f"{list(target_elements)} (pool of {index.n_frames} frames). Use filtering 'none' or "
            "'inclusive', or a pretraining set that covers these elements."
        )
    if foundation_model is not None:
        _check_foundation_knows(index, foundation_model, filtering)
    rng = np.random.default_rng(settings.seed)
    notes: list[str] = []
    n = min(num_samples, n_filtered)
    if n == n_filtered:
        chosen = list(range(n_filtered))
    elif subselect == "fps":
        if foundation_model is None:
            raise ValueError("subselect 'fps' needs the foundation model for descriptors.")
        with tempfile.TemporaryDirectory(prefix="replay-descriptors-") as scratch:
            descriptors = _descriptors(
                index,
                target_elements,
                filtering,
                foundation_model,
                dtype,
                resolve_device(settings.device),
                Path(cache_dir or scratch),
                notes,
            )
            # MACE's start point: the second draw of numpy's legacy RNG seeded with `seed` (its FPS
            # class draws one it does not use, then fpsample draws the start)
            legacy = np.random.RandomState(settings.seed)
            legacy.randint(0, n_filtered)
            chosen = _farthest_points(descriptors, n, legacy.randint(0, n_filtered))
            del descriptors  # the memory map closes before a scratch cache is removed
    else:
        chosen = sorted(int(i) for i in rng.choice(n_filtered, size=n, replace=False))
    if heldout_pool:
        held = index_pool(heldout_pool, target_elements, filtering)
        candidates, source = held.passing, "never trained on"
    else:
        held, unselected = index, np.ones(n_filtered, dtype=bool)
        unselected[chosen] = False
        candidates, source = index.passing[unselected], "unselected pool frames"
    keep = sorted(rng.permutation(len(candidates))[: settings.num_heldout].tolist()) if len(candidates) else []
    return ReplaySelection(
        selected=read_pool_frames(index, index.passing[chosen]),
        heldout=read_pool_frames(held, candidates[keep]),
        n_pool=index.n_frames,
        n_filtered=n_filtered,
        heldout_source=source,
        notes=notes,
    )
