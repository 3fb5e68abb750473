"""Parity plots and strategy-comparison figures: pictures only, no policy."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from traincraft_assets.core.frames import get_label
from traincraft_assets.core.metrics import Prediction, polarizability_parts


def _pairs(frames, predictions, quantity):
    """Reference and predicted values of `quantity` over the frames that have both."""
    ref, pred = [], []
    for atoms, p in zip(frames, predictions):
        label = get_label(atoms, quantity)
        predicted = getattr(p, quantity)
        if label is None or predicted is None:
            continue
        if quantity == "energy":
            ref.append(float(label) / len(atoms))
            pred.append(predicted / len(atoms))
        elif quantity == "polarizability":  # the six unique components
            ref.extend(polarizability_parts(label)[0])
            pred.extend(polarizability_parts(predicted)[0])
        else:
            ref.extend(np.ravel(label))
            pred.extend(np.ravel(predicted))
    return np.asarray(ref), np.asarray(pred)


PANELS = (
    ("energy", "energy / atom", "eV/atom"),
    ("forces", "force components", "eV/Å"),
    ("stress", "stress components", "eV/Å³"),
    ("dipole", "dipole components", "e·Å"),
    ("polarizability", "polarizability components", "e·Å²/V"),
)


def parity_figure(series: Sequence[tuple[str, Sequence[Atoms], Sequence[Prediction]]], title: str):
    """One row of parity panels, one colour per (label, frames, preds): energy and forces, then
    stress, dipoles and polarizabilities where some series has them; sized to fill the Dagster
    UI's dialog (1000 px at 80 dpi) with legends at 9 pt."""
    plt = _pyplot()
    present = {q for _, frames, preds in series for q, *_ in PANELS if len(_pairs(frames, preds, q)[0])}
    panels = [panel for panel in PANELS if panel[0] in ("energy", "forces") or panel[0] in present]
    fig, axes = plt.subplots(1, len(panels), figsize=(12.5 * max(3, len(panels)) / 3, 4.6))
    for ax, (quantity, name, unit) in zip(axes, panels):
        lo, hi = np.inf, -np.inf
        for colour, (label, frames, preds) in enumerate(series):
            ref, pred = _pairs(frames, preds, quantity)
            if len(ref) == 0:
                continue
            rmse = np.sqrt(np.mean((pred - ref) ** 2))
            ax.scatter(ref, pred, s=6, alpha=0.6, color=f"C{colour}", label=f"{label} (RMSE {rmse:.3g} {unit})")
            lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
        if np.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
            ax.legend(fontsize=9, loc="upper left", markerscale=2)
        else:
            ax.text(0.5, 0.5, "no reference labels", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name)
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_axes(ax, xticks=None) -> None:
    """Log-log axes labelled 20, 50, 100 rather than 2x10^1: error tables are read that way."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    if xticks:
        ax.set_xticks(sorted(xticks))
        ax.xaxis.set_minor_locator(NullLocator())


def error_vs_frames_figure(rows: Sequence[dict], zero_shot: str):
    """Valid force and energy RMSE against training frames, one line per arm; the zero-shot
    foundation as a horizontal line. Log-log, as learning curves are read."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    for ax, key, unit in (
        (axes[0], "valid_rmse_f_mev_per_a", "valid force RMSE (meV/Å)"),
        (axes[1], "valid_rmse_e_mev_per_atom", "valid energy RMSE (meV/atom)"),
    ):
        for arm in arms:
            points = sorted((r["n_train"], r[key]) for r in rows if r["arm"] == arm)
            if arm == zero_shot:
                ax.axhline(points[0][1], color="k", ls="--", lw=1, label="foundation, zero-shot")
            else:
                ax.plot(*zip(*points), marker="o", label=arm)
        _plain_log_axes(ax, xticks={r["n_train"] for r in rows if r["arm"] != zero_shot})
        ax.set_xlabel("target training frames")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("target accuracy vs training-set size (same epoch budget)")
    fig.tight_layout()
    return fig


def forgetting_vs_accuracy_figure(rows: Sequence[dict], zero_shot: str):
    """Each model as a point: target accuracy (valid force RMSE) against what it forgot
    (forgetting-set force RMSE); larger markers for more training frames. Bottom left is best."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    sizes = sorted({r["n_train"] for r in rows if r["arm"] != zero_shot}) or [1]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        points = [r for r in rows if r["arm"] == arm]
        marker_sizes = [
            30 + 120 * sizes.index(r["n_train"]) / max(1, len(sizes) - 1) if r["n_train"] in sizes else 80
            for r in points
        ]
        ax.scatter(
            [r["valid_rmse_f_mev_per_a"] for r in points],
            [r["forgetting_rmse_f_mev_per_a"] for r in points],
            s=marker_sizes,
            marker="*" if arm == zero_shot else "o",
            color="k" if arm == zero_shot else None,
            label="foundation, zero-shot" if arm == zero_shot else arm,
            alpha=0.8,
        )
    _plain_log_axes(ax)
    ax.set_xlabel("valid force RMSE on the target (meV/Å)")
    ax.set_ylabel("forgetting-set force RMSE (meV/Å)")
    ax.set_title(f"forgetting vs target accuracy (marker size: {', '.join(map(str, sizes))} frames)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curve_figure(curve: Sequence[dict], title: str = "learning curve"):
    """Loss (train, and valid per head) and valid energy/force RMSE per head against epochs
    trained (0: before the first update), log scale: still learning, flat, or diverging."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 4.2))
    heads = list(dict.fromkeys(row["head"] for row in curve))
    train = sorted((row["epoch"] + 1, row["train_loss"]) for row in curve if "train_loss" in row)
    if train:
        axes[0].plot(*zip(*train), color="k", ls="--", label="train")
    for head in heads:
        rows = sorted((r for r in curve if r["head"] == head), key=lambda r: r["epoch"])
        for ax, key, scale in (
            (axes[0], "loss", 1.0),
            (axes[1], "rmse_e_per_atom", 1000.0),
            (axes[2], "rmse_f", 1000.0),
        ):
            points = [(r["epoch"] + 1, r[key] * scale) for r in rows if key in r and r[key] > 0]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=f"valid, {head}")
    for ax, name in zip(axes, ("loss", "valid energy RMSE (meV/atom)", "valid force RMSE (meV/Å)")):
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epochs trained")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def deviation_histogram_figure(convergence: dict, title: str):
    """The committee's force deviation over every explored frame, log axis, with the trust
    levels drawn: left of trust_lo accurate, between them candidates, right of trust_hi failed."""
    plt = _pyplot()
    hist = convergence["histogram"]
    edges = hist["edges_ev_per_a"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.stairs(hist["counts"], edges, fill=True, alpha=0.6)
    ax.set_xscale("log")
    for level, name in ((convergence["trust_lo"], "trust_lo"), (convergence["trust_hi"], "trust_hi")):
        ax.axvline(level, color="k", ls="--", lw=1)
        ax.text(level, ax.get_ylim()[1] * 0.95, f" {name}", va="top", fontsize=9)
    fractions = ", ".join(f"{b} {100 * convergence[f'{b}_fraction']:.0f}%" for b in ("accurate", "candidate", "failed"))
    ax.set_title(f"{title}: {convergence['n_frames']} frames ({fractions})", fontsize=10)
    ax.set_xlabel("max atomic force deviation (eV/Å)")
    ax.set_ylabel("frames")
    fig.tight_layout()
    return fig


def loop_figure(rows: Sequence[dict]):
    """The loop against its control: test-set force and energy RMSE against labelled frames for
    committee selection and random picks from the same walks, and the explored frames' accurate
    fraction per iteration (the convergence the loop stops on)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, unit in (
        (axes[0], "rmse_f_mev_per_a", "test force RMSE (meV/Å)"),
        (axes[1], "rmse_e_mev_per_atom", "test energy RMSE (meV/atom)"),
    ):
        for arm, style in (("loop", "o-"), ("random", "s--")):
            points = [(r["n_labelled"], r[arm][key]) for r in rows if r.get(arm)]
            if points:
                ax.plot(*zip(*points), style, label="committee selection" if arm == "loop" else "random picks")
        ax.set_xlabel("labelled frames")
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9)
    judged = [(r["iteration"], r["accurate_fraction"]) for r in rows if r.get("accurate_fraction") is not None]
    if judged:
        axes[2].plot(*zip(*judged), "o-")
        axes[2].set_xticks([i for i, _ in judged])
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("iteration")
    axes[2].set_ylabel("accurate fraction of explored frames")
    axes[2].grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def figure_thumbnail_base64(fig, dpi: int = 80) -> str:
    """A PNG of the figure, base64, for embedding in Dagster metadata (kept in the DB): at the
    default 80 dpi a 12.5-inch figure is 1000 px wide, the width of the UI's dialog."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode()


def fidelity_figure(rows: Sequence[dict], pretrain_points: Sequence[tuple[int, float, float]], levels: dict):
    """The multi-fidelity comparison: test force and energy RMSE against expensive training
    frames, test force RMSE against labelling CPU-seconds (one line per arm and amount of cheap
    data), and each pre-trained model's cheap-valid force RMSE against its fine-tuned test force
    RMSE, annotated with its cheap frames. Log-log throughout."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["arm"], row["n_cheap"]), []).append(row)
    for ax, x, y, xlabel, ylabel in (
        (axes[0, 0], "n_expensive", "test_rmse_f_mev_per_a", "expensive training frames", "test force RMSE (meV/Å)"),
        (
            axes[0, 1],
            "n_expensive",
            "test_rmse_e_mev_per_atom",
            "expensive training frames",
            "test energy RMSE (meV/atom)",
        ),
        (axes[1, 0], "label_cpu_s", "test_rmse_f_mev_per_a", "labelling CPU-seconds", "test force RMSE (meV/Å)"),
    ):
        for (arm, n_cheap), members in groups.items():
            points = sorted((r[x], r[y]) for r in members)
            label = f"{arm} ({n_cheap} cheap)" if n_cheap else arm
            ax.plot(*zip(*points), marker="o" if len(points) > 1 else "s", label=label)
        _plain_log_axes(ax, xticks={r["n_expensive"] for r in rows} if x == "n_expensive" else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9)
    ax = axes[1, 1]
    if pretrain_points:
        ax.plot([p[1] for p in pretrain_points], [p[2] for p in pretrain_points], "o-")
        for n_cheap, pre, tuned in pretrain_points:
            ax.annotate(f"{n_cheap} cheap", (pre, tuned), textcoords="offset points", xytext=(5, 5), fontsize=8)
        _plain_log_axes(ax)
    ax.set_xlabel("pre-trained: cheap-level valid force RMSE (meV/Å)")
    ax.set_ylabel("fine-tuned: test force RMSE (meV/Å)")
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"cheap: {levels.get('xtb', '?')}; expensive: {levels.get('pyscf', '?')}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend below
    return fig


def spectrum_figure(parts: dict, references: dict, broadening_cm: float, title: str):
    """MD spectra (name -> core.spectra.Spectrum) as lines, harmonic references (name ->
    core.vibrations.HarmonicModes) as sticks broadened onto the same grid, each normalised to 1
    and offset, so peak positions are compared by eye; intensities are arbitrary units."""
    from traincraft_assets.core.vibrations import broaden, stick_spectrum

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12.5, 4.6))
    grid = next(iter(parts.values())).wavenumbers_cm
    curves = [(name, spectrum.intensities) for name, spectrum in parts.items()]
    curves += [(name, broaden(stick_spectrum(modes), grid, broadening_cm)) for name, modes in references.items()]
    for offset, (name, curve) in enumerate(curves):
        ax.plot(grid, curve + 1.1 * offset, lw=1.2, color=f"C{offset}", label=name)
    for offset, modes in enumerate(references.values(), start=len(parts)):
        for wavenumber in modes.wavenumbers_cm:
            ax.axvline(wavenumber, ymin=0, ymax=0.03, color=f"C{offset}")
    ax.set_xlabel("wavenumber (cm⁻¹)")
    ax.set_ylabel("intensity (normalised, offset)")
    ax.set_yticks([])
    ax.legend(fontsize=9, loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    return fig
