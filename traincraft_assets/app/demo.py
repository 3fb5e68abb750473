"""`traincraft demo`: the whole graph on this machine, from generated data to a gated model.

Demo batches at the target's level of theory are written, ingested and labelled (one run per
batch), the foundation is staged, then one `finetune` run fine-tunes, reports and gates. The
closing summary says, in words, what to read first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from traincraft_assets.app.batches import ingest
from traincraft_assets.core.artifacts import FinetunedModel, ParityReport
from traincraft_assets.core.demo import write_target_batches
from traincraft_assets.defs import instance
from traincraft_assets.defs.deploy.checks import gate_verdicts
from traincraft_assets.defs.jobs import FINETUNE, LABEL_BATCH, STAGE_FOUNDATION, run_config_for

Say = Callable[[str], None]


def run_job(
    defs: dg.Definitions,
    name: str,
    dagster_instance: dg.DagsterInstance,
    run_config: dict,
    partition: str | None = None,
    say: Say = print,
) -> dg.ExecuteInProcessResult:
    """Run one of the project's jobs in this process with its part of a whole-graph config."""
    job = defs.resolve_job_def(name)
    result = job.execute_in_process(
        instance=dagster_instance,
        run_config=run_config_for(job, run_config),
        partition_key=partition,
        raise_on_error=True,
    )
    say(f"{name}{f' [{partition}]' if partition else ''} run {result.run_id} succeeded")
    return result


def prepare(
    dagster_instance: dg.DagsterInstance,
    defs: dg.Definitions,
    run_config: dict,
    batches_dir: Path,
    inbox: Path,
    frames_per_kind: int,
    say: Say = print,
) -> None:
    """Write the demo batches, ingest them, label each (one run per partition) and stage the
    foundation: everything a fine-tuning or a comparison starts from."""
    paths = write_target_batches(batches_dir, frames_per_kind)
    batches = ingest(dagster_instance, inbox, paths)
    for path, batch in zip(paths, batches):
        say(f"ingested {path} ({batch.n_frames} frames) as batch {batch.name!r}")
    label = defs.resolve_job_def(LABEL_BATCH)
    for batch in batches:  # with the job's own config: its labeller, as the inbox sensor's runs
        result = label.execute_in_process(instance=dagster_instance, partition_key=batch.name, raise_on_error=True)
        say(f"labelled batch {batch.name!r} (run {result.run_id})")
    run_job(defs, STAGE_FOUNDATION, dagster_instance, run_config, say=say)


def run(
    dagster_instance: dg.DagsterInstance,
    defs: dg.Definitions,
    run_config: dict,
    batches_dir: Path,
    inbox: Path,
    frames_per_kind: int = 30,
    say: Say = print,
) -> dict:
    """Prepare the demo (batches labelled, foundation staged), then fine-tune, report and gate
    in one run; return parity_report's metadata."""
    prepare(dagster_instance, defs, run_config, batches_dir, inbox, frames_per_kind, say)
    run_job(defs, FINETUNE, dagster_instance, run_config, say=say)
    return instance.latest_metadata(dagster_instance, ParityReport.asset)


def verdicts(dagster_instance: dg.DagsterInstance) -> list[dict] | None:
    """The quality gates' verdicts on the latest fine-tuned model (None: not all have judged)."""
    model = instance.latest_data_version(dagster_instance, FinetunedModel.asset)
    return gate_verdicts(dagster_instance, model) if model else None


def _versus(error: float, baseline: float) -> str:
    """'3.1x better' or '1.4x WORSE': the factor is always >= 1, so it reads the same both ways."""
    if error == baseline:
        return "the same"
    word = "better" if error < baseline else "WORSE"
    low, high = sorted((error, baseline))
    return f"{high / low:.1f}x {word}" if low > 0 else word


def summary(report: dict, gates: list[dict] | None) -> str:
    """The demo's closing lines, in the order to read them: the fine-tuned model against the
    zero-shot foundation; what it kept of the foundation's knowledge (a multihead model's replay
    head, which predicts the foundation's theory); the gates' verdicts; then, explained, the
    fine-tuned head's errors on the foundation's own frames, which also hold the change of
    theory it was trained to learn; and where to look next."""
    f, f0 = report["rmse_f_mev_per_a"], report["foundation_rmse_f_mev_per_a"]
    e, e0 = report["rmse_e_mev_per_atom"], report["foundation_rmse_e_mev_per_atom"]
    n_heldout = report["n_replay_heldout"]
    lines = [
        f"Fine-tuned vs zero-shot foundation on the valid set ({report['n_valid']} frames):",
        f"  forces    {f:7.1f} vs {f0:7.1f} meV/Å      ({_versus(f, f0)})",
        f"  energies  {e:7.1f} vs {e0:7.1f} meV/atom   ({_versus(e, e0)})",
    ]
    replay_head = "replay_head_forgetting_f_ratio" in report
    if replay_head:
        lines.append(
            f"Forgetting, on {n_heldout} held-out frames of the foundation's own distribution, judged on the "
            f"replay head (it predicts the foundation's level of theory, as those frames are labelled): "
            f"{report['replay_head_forgetting_f_ratio']:.2f}x the foundation's force error and "
            f"{report['replay_head_forgetting_e_ratio']:.2f}x its energy error; 1x forgets nothing."
        )
    if gates is None:
        lines.append("Quality gates: not all have judged this model yet.")
    else:
        failed = [v for v in gates if not v["passed"]]
        lines.append(f"Quality gates: {len(gates) - len(failed)} of {len(gates)} passed.")
        lines += [f"  {v['gate']} failed: {v['reason']}" for v in failed]
    head = "Its fine-tuned head" if replay_head else "The fine-tuned model"
    lines.append(
        f"{head} predicts the target's level of theory, so on those {n_heldout} frames (labelled at the "
        "foundation's) its errors hold the change of theory it learned as well as anything it forgot: "
        f"{report['forgetting_f_ratio']:.2f}x (forces) and {report['forgetting_e_ratio']:.2f}x (energies) "
        "the foundation's."
    )
    lines += [
        f"Report: {report['report_path']}",
        "Plots and every asset: .venv/bin/traincraft ui, then http://127.0.0.1:3000 (parity_report's page).",
    ]
    return "\n".join(lines)
