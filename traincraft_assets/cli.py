"""`traincraft`: ingest data batches, run the demo, compare strategies, choose the champion,
verify the store, open the UI, submit runs to a deployment.

This module parses arguments and calls one function of the application layer (app/) per verb;
the heavy imports happen inside the verb, so `traincraft --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from traincraft_assets.demo import LOOP_CONFIG, RUN_CONFIG

DEMO_BATCHES = Path(".traincraft/demo_batches")


def say(line: str) -> None:
    print(line, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traincraft", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="copy batch files into the inbox and register them")
    p.add_argument("paths", nargs="+", type=Path)
    p = sub.add_parser("retire", help="take a batch out of future datasets, with the reason")
    p.add_argument("batch", help="the batch (partition) name: its file name")
    p.add_argument("--reason", required=True, help="why, kept with the batch and shown in the UI")
    p = sub.add_parser("promote", help="make a fine-tuned model the champion by hand")
    p.add_argument("model", help="the finetuned_model version (sha256) or the run that made it")
    p.add_argument("--reason", required=True, help="why, kept in the champion's history")
    p = sub.add_parser("rollback", help="make the previous champion the champion again")
    p.add_argument("--reason", required=True, help="why, kept in the champion's history")
    p = sub.add_parser("demo", help="generate demo data and materialize the whole graph")
    p.add_argument("--config", type=Path, default=RUN_CONFIG, help="run config YAML")
    p.add_argument("--batches-dir", type=Path, default=DEMO_BATCHES)
    p = sub.add_parser(
        "compare", help="train every strategy at several target-set sizes on one budget; table and plots"
    )
    p.add_argument("--config", type=Path, default=RUN_CONFIG, help="run config YAML (strategy_arm: budget)")
    p.add_argument("--quick", action="store_true", help="two small sizes, 3 epochs: minutes on a laptop")
    p.add_argument("--arms", help="comma-separated subset of the arms (default: all)")
    p.add_argument("--batches-dir", type=Path, default=DEMO_BATCHES)
    p.add_argument(
        "--fidelity",
        action="store_true",
        help="instead: cheap (xTB) and expensive (DFT) labels on water clusters, pre-train/fine-tune, multihead",
    )
    p.add_argument("--data-dir", type=Path, default=Path(".traincraft/fidelity"), help="--fidelity: labels, results")
    p = sub.add_parser("explore", help="the active-learning loop on demo data: committee, MD, selection, retraining")
    p.add_argument("--config", type=Path, default=RUN_CONFIG, help="run config YAML (the loop's entries laid over it)")
    p.add_argument("--loop", type=Path, default=LOOP_CONFIG, help="the loop's entries (committee, exploration, ...)")
    p.add_argument("--quick", action="store_true", help="a committee of 2, short walks and trainings, 3 iterations")
    p.add_argument("--no-random-arm", action="store_true", help="skip the control arm (half the training time)")
    p.add_argument("--data-dir", type=Path, default=Path(".traincraft/loop_data"))
    p = sub.add_parser(
        "spectra", help="worked example: water's dipoles, IR and Raman spectra against xTB's harmonic modes"
    )
    p.add_argument("--quick", action="store_true", help="few frames, short trainings and trajectories: a few minutes")
    p.add_argument("--data-dir", type=Path, default=Path(".traincraft/spectra"), help="labels, models and results")
    sub.add_parser("verify", help="re-hash every artifact in the store; report changes and orphans")
    p = sub.add_parser("ui", help="the Dagster UI (dagster dev) on this directory's instance")
    p.add_argument("--port", type=int, default=3000)
    p = sub.add_parser("submit", help="launch a run on a Dagster deployment (e.g. the cluster)")
    p.add_argument("--url", required=True, help="the Dagster webserver, e.g. http://localhost:3000")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--select", help="asset names, comma-separated, e.g. finetuned_model,parity_report")
    what.add_argument("--job", help="a job by name: label_batch, stage_foundation, finetune, train_committee, ...")
    p.add_argument("--partition", help="a batch (labelled_frames), member (committee) or walk (exploration)")
    p.add_argument("-c", "--config", type=Path, help="run config YAML (examples/*.yaml)")
    p.add_argument("--wait", action="store_true", help="follow the run; exit 1 if it fails")
    return parser


def _words(text: str | None) -> list[str]:
    return [word.strip() for word in text.split(",")] if text else []


def _yaml(path: Path | None) -> dict | None:
    import yaml

    return yaml.safe_load(path.read_text()) if path else None


def ingest(args, instance, settings, defs) -> int:
    from traincraft_assets.app.batches import ingest

    for path, batch in zip(args.paths, ingest(instance, settings.inbox, args.paths)):
        say(f"ingested {path} ({batch.n_frames} frames) as batch {batch.name!r}")
    return 0


def retire(args, instance, settings, defs) -> int:
    from traincraft_assets.app.batches import retire

    moved = retire(instance, settings.inbox, args.batch, args.reason)
    say(f"retired batch {args.batch!r} ({args.reason}); its file is kept at {moved}. The next dataset leaves it out.")
    return 0


def promote(args, instance, settings, defs) -> int:
    from traincraft_assets.app.champion import decide

    return _decided(decide(instance, defs(), args.model, args.reason))


def rollback(args, instance, settings, defs) -> int:
    from traincraft_assets.app.champion import decide, previous_champion

    return _decided(decide(instance, defs(), previous_champion(instance), f"rollback: {args.reason}"))


def _decided(decision: dict) -> int:
    say(f"{'promoted' if decision['promoted'] else 'not promoted'}: {decision['reason']}")
    return 0


def demo(args, instance, settings, defs) -> int:
    from traincraft_assets.app import demo

    report = demo.run(instance, defs(), _yaml(args.config), args.batches_dir, settings.inbox, say=say)
    say("\n" + demo.summary(report, demo.verdicts(instance)))
    return 0


def compare(args, instance, settings, defs) -> int:
    from traincraft_assets.app import comparison

    arms = _words(args.arms) or None
    content = comparison.run(
        instance, defs(), _yaml(args.config), args.batches_dir, settings.inbox, args.quick, arms, say=say
    )
    say(comparison.text(content))
    return 0


def fidelity(args) -> int:
    from traincraft_assets.app import fidelity

    if args.arms:
        raise ValueError(
            f"--arms {args.arms!r} chooses strategy arms; --fidelity runs all of its own. Leave --arms out."
        )
    say(fidelity.text(fidelity.run(args.data_dir, args.quick, say=say)))
    return 0


def spectra(args) -> int:
    from traincraft_assets.app import spectra

    say(spectra.text(spectra.run(args.data_dir, args.quick, say=say), args.data_dir))
    return 0


def explore(args, instance, settings, defs) -> int:
    from traincraft_assets.app import explore

    structures = args.data_dir / "loop_structures.xyz"
    config = explore.loop_config(_yaml(args.config), _yaml(args.loop), structures, args.quick)
    results = explore.run(instance, defs(), settings, config, args.data_dir, not args.no_random_arm, say=say)
    say("\n" + explore.table(results["rows"]) + "\n")
    for line in results["findings"]:
        say(f"- {line}")
    say(f"Table, findings and figure: {args.data_dir}/loop_vs_random.{{md,json,png}}")
    return 0


def verify(args, instance, settings, defs) -> int:
    from traincraft_assets.app.store import verify

    checked, problems = verify(instance, settings.store)
    for path, why in problems:
        say(f"{path}: {why}")
    say(f"checked {checked} artifacts in {settings.store}: {len(problems) or 'no'} problem(s)")
    return 1 if problems else 0


ON_THE_LOCAL_INSTANCE = {f.__name__: f for f in (ingest, retire, promote, rollback, demo, compare, explore, verify)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ui":
        from traincraft_assets.app import local, ui

        return ui.run(args.port, local.local_home())
    if args.command == "submit":
        from traincraft_assets.app.submit import submit

        return submit(args.url, _words(args.select), args.job, args.partition, _yaml(args.config), args.wait, say=say)

    from traincraft_assets.app.local import local_instance
    from traincraft_assets.core.champion import ChampionError
    from traincraft_assets.core.frames import FrameError
    from traincraft_assets.core.settings import SettingsError, load_settings
    from traincraft_assets.defs.definitions import build_defs

    try:
        if args.command == "compare" and args.fidelity:  # trains in this process: no Dagster instance
            return fidelity(args)
        if args.command == "spectra":  # likewise
            return spectra(args)
        settings = load_settings()
        with local_instance() as instance:
            return ON_THE_LOCAL_INSTANCE[args.command](args, instance, settings, lambda: build_defs(settings))
    except (FrameError, FileNotFoundError, SettingsError, ChampionError, ValueError) as exc:
        print(f"traincraft: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
