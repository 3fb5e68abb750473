"""Deployable models: one head, the one that was fine-tuned."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from traincraft_assets.core.models import TARGET_HEAD, load_model, model_heads


def import_export_modules() -> threading.Thread:
    """Start importing what `deployable_model` needs, in the background: mace.tools pulls in
    matplotlib, torchmetrics and more, most of the export's time (bench/README.md, row 1), which
    would otherwise sit between MACE's end and the published model. Call it as training starts."""
    thread = threading.Thread(
        target=importlib.import_module, args=("mace.tools.scripts_utils",), name="export-imports", daemon=True
    )
    thread.start()
    return thread


def deployable_model(model_path: Path, deploy_path: Path) -> Path:
    """The model to run MD with: a multihead model reduced to its target head by MACE's own
    `remove_pt_head` (what `mace_select_head` does) and saved at `deploy_path`; a single-head
    model is already that, and is returned as it is."""
    import torch
    from mace.tools.scripts_utils import remove_pt_head

    model = load_model(model_path, inference=False)
    if len(model_heads(model)) <= 1:
        return Path(model_path)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(next(model.parameters()).dtype)  # remove_pt_head builds new layers
    try:
        torch.save(remove_pt_head(model, TARGET_HEAD), deploy_path)
    finally:
        torch.set_default_dtype(previous)
    return Path(deploy_path)
