"""`traincraft compare --fidelity`: the molecular multi-fidelity comparison (core/fidelity.py)
on this machine, no Dagster run: water clusters labelled with GFN2-xTB (cheap) and PySCF DFT
(expensive), tiny MACE models trained arm by arm, a line of progress after each, the table,
figure and findings against the study's claims written to the data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from traincraft_assets.core.fidelity import (
    FidelitySettings,
    findings_text,
    pretrained_table,
    quick_settings,
    run_comparison,
    table,
    write_results,
)

Say = Callable[[str], None]


def run(data_dir: Path, quick: bool, say: Say = print) -> dict:
    """Label (or reuse the labels cached in `data_dir`), train, score, write
    fidelity.{json,md,png} to `data_dir`; returns the results with the files' paths."""
    settings = quick_settings() if quick else FidelitySettings()
    say(
        f"multi-fidelity comparison{' (--quick)' if quick else ''}: water clusters, cheap GFN2-xTB on "
        f"{max(settings.cheap_sizes)} frames, expensive {settings.method}/{settings.basis} on "
        f"{max(settings.expensive_sizes)}, test set of {settings.n_test}; {settings.training.max_num_epochs} epochs "
        f"per training; data in {data_dir}"
    )
    results = run_comparison(settings, data_dir, say, on_output=lambda line: None)
    return {**results, "paths": write_results(results, data_dir)}


def text(results: dict) -> str:
    """The comparison as the terminal shows it: both tables, the findings, where the files are."""
    sections = (
        ("models on the expensive test set (labelling CPU-s: the frames each trained on):", table(results["rows"])),
        ("pre-trained models on the cheap level's valid set:", pretrained_table(results["pretrained"])),
        ("the study's claims against this run:", findings_text(results["findings"])),
    )
    paths = results["paths"]
    where = (
        f"{results['wall_s']:.0f} s in all. Table, findings and figure: {paths['md']}, {paths['json']}, {paths['png']}"
    )
    return "\n" + "\n\n".join(f"{title}\n{body}" for title, body in sections) + "\n\n" + where
