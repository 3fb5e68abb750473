"""Parity plots: pictures only, no policy."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import get_label
from traincraft_assets.core.metrics import Prediction


def _pairs(frames, predictions, quantity):
    ref, pred = [], []
    for atoms, p in zip(frames, predictions):
        if quantity == "energy":
            e = get_label(atoms, "energy")
            if e is not None:
                ref.append(float(e) / len(atoms))
                pred.append(p.energy / len(atoms))
        elif quantity == "forces":
            f = get_label(atoms, "forces")
            if f is not None:
                ref.extend(f.ravel())
                pred.extend(p.forces.ravel())
        else:
            s = get_label(atoms, "stress")
            if s is not None and p.stress is not None:
                ref.extend(s.ravel())
                pred.extend(p.stress.ravel())
    return np.asarray(ref), np.asarray(pred)


PANELS = (
    ("energy", "energy / atom", "eV/atom"),
    ("forces", "force components", "eV/Å"),
    ("stress", "stress components", "eV/Å³"),
)


def parity_figure(series: Sequence[tuple[str, Sequence[Atoms], Sequence[Prediction]]], title: str):
    """One row of energy/forces/stress parity panels, one colour per (label, frames, preds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (quantity, name, unit) in zip(axes, PANELS):
        lo, hi = np.inf, -np.inf
        for label, frames, preds in series:
            ref, pred = _pairs(frames, preds, quantity)
            if len(ref) == 0:
                continue
            rmse = np.sqrt(np.mean((pred - ref) ** 2))
            ax.scatter(ref, pred, s=6, alpha=0.6, label=f"{label} (RMSE {rmse:.3g} {unit})")
            lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
        if np.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no reference labels", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name)
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def figure_thumbnail_base64(fig, dpi: int = 40) -> str:
    """A small PNG of the figure, base64, for embedding in Dagster metadata (kept in the DB)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode()
