"""The champion: the fine-tuned model that serves, and the rule that changes it.

A challenger replaces the champion only on evidence: every quality gate passed (core/gates.py)
AND, on the valid frames both models were validated on (neither trained on them), its force
RMSE is lower and its energy RMSE no higher than the champion's. Otherwise the champion stays,
and the decision says why. A person can override (promote a given model, roll back), and that
is recorded the same way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ase import Atoms

from traincraft_assets.core.artifacts import ChampionModel, FinetunedModel, ParityReport
from traincraft_assets.core.dataset import FINGERPRINT_KEY
from traincraft_assets.core.frames import frames_at_level
from traincraft_assets.core.manifest import utc_now
from traincraft_assets.core.metrics import to_mev


class ChampionError(ValueError):
    """A champion decision that cannot be made (nothing to roll back to, an unknown model)."""


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    challenger: str  # sha256 of the fine-tuned model judged (or chosen by hand)
    serving: str  # sha256 of the fine-tuned model that serves after the decision ("" if none)
    by: str = "rule"  # "rule", or "hand" for promote/rollback
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def common_valid(
    challenger_valid: Sequence[Atoms], champion_valid: Sequence[Atoms], level: str | None = None
) -> list[Atoms]:
    """The challenger's valid frames at its level of theory that were also valid for the
    champion (by fingerprint)."""
    theirs = {a.info.get(FINGERPRINT_KEY) for a in champion_valid} - {None}
    return [a for a in frames_at_level(challenger_valid, level) if a.info.get(FINGERPRINT_KEY) in theirs]


def head_to_head(challenger: FinetunedModel, champion: FinetunedModel, frames: Sequence[Atoms], device: str) -> dict:
    """Both models on the same frames: RMSEs in meV units."""
    from traincraft_assets.core.evaluation import evaluate
    from traincraft_assets.core.models import load_model

    numbers = {"n_common_valid": len(frames)}
    for name, model in (("challenger", challenger), ("champion", champion)):
        overall = evaluate(load_model(model.model_path, device), frames, device=device).overall
        numbers[f"{name}_rmse_f_mev_per_a"] = to_mev(overall["rmse_f"])
        numbers[f"{name}_rmse_e_mev_per_atom"] = to_mev(overall["rmse_e_per_atom"])
    return numbers


def decide(challenger: str, verdicts: list[dict] | None, champion: str | None, compared: dict | None) -> Decision:
    """The rule. `verdicts`: the gates' verdicts on this challenger (None if not evaluated);
    `compared`: head_to_head's numbers (None when there is no champion)."""
    keep = champion or ""
    if challenger == champion:
        return Decision(False, "this model is already the champion", challenger, keep)
    if verdicts is None:
        return Decision(
            False,
            "the quality gates have not been evaluated on this challenger (they run with finetuned_model)",
            challenger,
            keep,
        )
    failed = [v for v in verdicts if not v["passed"]]
    if failed:
        return Decision(
            False, "gate(s) failed: " + "; ".join(f"{v['gate']}: {v['reason']}" for v in failed), challenger, keep
        )
    if champion is None:
        return Decision(True, "first champion: every gate passed", challenger, challenger)
    if not compared or not compared["n_common_valid"]:
        return Decision(
            False,
            "no valid frames common to both models, so nothing shows the challenger is better; the champion stays",
            challenger,
            keep,
            numbers=compared or {},
        )
    f, f0 = compared["challenger_rmse_f_mev_per_a"], compared["champion_rmse_f_mev_per_a"]
    e, e0 = compared["challenger_rmse_e_mev_per_atom"], compared["champion_rmse_e_mev_per_atom"]
    versus = (
        f"on {compared['n_common_valid']} common valid frames: force RMSE {f:.1f} vs champion {f0:.1f} meV/Å, "
        f"energy RMSE {e:.2f} vs {e0:.2f} meV/atom"
    )
    if f < f0 and e <= e0:
        return Decision(
            True, f"every gate passed and it beats the champion {versus}", challenger, challenger, numbers=compared
        )
    return Decision(
        False, f"every gate passed but it does not beat the champion {versus}", challenger, keep, numbers=compared
    )


def by_hand(model: str, reason: str, current: str | None) -> Decision:
    """A person's decision (promote, rollback): recorded like the rule's."""
    return Decision(model != current, f"by hand: {reason}", model, model, by="hand")


def fill_champion(out: ChampionModel, model: FinetunedModel, report: ParityReport | None, decision: Decision) -> None:
    """The champion directory, deployable as is."""
    shutil.copy2(model.deploy_model_path, out.model_path)
    shutil.copy2(model.manifest_path, out.manifest_path)
    if report is not None:
        shutil.copy2(report.report_path, out.parity_path)
    out.record_path.write_text(
        json.dumps(
            {
                "finetuned_model": model.sha256,
                "data_versions": model.manifest["data_versions"],
                "promoted_at": utc_now(),
                "decided_by": decision.by,
                "reason": decision.reason,
            },
            indent=1,
        )
    )


@dataclass(frozen=True)
class HandDecision:
    promote: str = field(
        default="",
        metadata={"help": "a finetuned_model version (sha256) or the run that made it; empty: the rule decides"},
    )
    reason: str = field(default="", metadata={"help": "why, for a decision by hand (kept in the champion's history)"})
