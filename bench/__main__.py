"""python -m bench [--quick] [--rows 1,2]: run the rows, print the table, write
bench/results/<date>-<host>-<cpu>.json (bench/README.md says what each row measures)."""

from __future__ import annotations

import argparse
import fcntl
import json
import re
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import evaluation, exploration, gpu, incremental, labelling, orchestration, replay, replay_pool, scaling
from bench.common import Row, machine, not_measured

REPEATS = 3  # every figure is a median of this many side-by-side measurements

# row -> (what it measures, how to run it: (scratch directory, mode, repeats) -> rows)
ROWS = {
    1: ("orchestration overhead", lambda tmp, mode, n: orchestration.measure(tmp, mode, n)),
    2: ("evaluation speed", lambda tmp, mode, n: evaluation.measure(mode, n)),
    3: ("incremental labelling", lambda tmp, mode, n: incremental.measure(mode, n)),
    4: ("labelling parallelism", lambda tmp, mode, n: labelling.parallel(mode, n)),
    5: ("replay selection", lambda tmp, mode, n: replay.measure(mode, n)),
    6: ("scaling", lambda tmp, mode, n: scaling.measure(mode, n)),
    7: ("labelling memory", lambda tmp, mode, n: labelling.memory(mode, n)),
    8: ("GPU", lambda tmp, mode, n: gpu.measure(tmp, mode, n)),
    9: ("exploration throughput", lambda tmp, mode, n: exploration.measure(mode, n)),
    10: ("labelling throughput per labeller", lambda tmp, mode, n: labelling.throughput(mode, n)),
    11: ("replay from a million-frame pool", lambda tmp, mode, n: replay_pool.measure(mode, n)),
    12: ("labelling fan-out over chunk steps", lambda tmp, mode, n: labelling.fan_out(mode, n)),
}
RESULTS = Path(__file__).parent / "results"


def parse_rows(text: str) -> list[int]:
    try:
        rows = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        rows = []
    if not rows or any(r not in ROWS for r in rows):
        raise argparse.ArgumentTypeError(
            f"expected row numbers from {sorted(ROWS)}, comma-separated (e.g. 1,2); got {text!r}"
        )
    return rows


def machine_name(host: dict) -> str:
    """The results file's machine: host name and CPU model (VMs of one name may be different
    hardware, and a day's file merges the rows of its runs, which must share a machine)."""
    cpu = re.sub(r"\(R\)|\(TM\)|processor|cpu|@.*", "", host["cpu"], flags=re.IGNORECASE)
    return "-".join(re.findall(r"[a-z0-9]+", f"{host['hostname']} {cpu}".lower())) or "unknown"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def table(rows: list[Row]) -> str:
    header = ("row", "what", "anchor", "target", "anchor fig.", "target fig.", "unit", "ratio", "goal", "met?")
    lines = [header]
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        lines.append(
            (
                r.row,
                r.what,
                r.anchor,
                r.target,
                _figure(r.anchor_value),
                _figure(r.target_value),
                r.unit,
                _figure(r.ratio),
                r.goal,
                met,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    notes = [f"  {r.row}: {r.what}: {r.note}" for r in rows if r.note]
    return "\n".join([*out, "notes:", *notes])


def save(path: Path, record: dict) -> None:
    """Write `record` to today's results file after each row (an interrupted run keeps what it
    measured), keeping the rows that earlier runs of the day measured and this one did not
    (`--rows`); a lock lets runs of different rows share the file."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        earlier = json.loads(text) if text else {"rows": [], "row_wall_s": {}}
        numbers = {str(n) for n in record["row_wall_s"]}
        rows = [r for r in earlier["rows"] if r["row"] not in numbers] + record["rows"]
        walls = {
            **{k: v for k, v in earlier["row_wall_s"].items() if k not in numbers},
            **{str(k): v for k, v in record["row_wall_s"].items()},
        }
        merged = {
            **record,
            "rows": sorted(rows, key=lambda r: int(r["row"])),
            "row_wall_s": walls,
            "wall_s": sum(walls.values()),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(merged, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, every row: 7.7-16 minutes on 2 idle CPU cores, by machine"
    )
    parser.add_argument("--rows", type=parse_rows, default=sorted(ROWS), help="comma-separated rows, e.g. 1,2")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    host = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in host.items()), flush=True)
    rows, seconds, failed = [], {}, []
    now = datetime.now(UTC)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{now:%Y-%m-%d}-{machine_name(host)}{'-quick' if args.quick else ''}.json"
    for number in args.rows:
        name, run = ROWS[number]
        print(f"row {number}: {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix=f"bench-row{number}-") as tmp:
                rows += run(Path(tmp), mode, REPEATS)
        except Exception as exc:  # one broken row must not lose the others' figures
            traceback.print_exc()
            rows.append(not_measured(str(number), name, f"failed: {type(exc).__name__}: {exc}"))
            failed.append(number)
        seconds[number] = time.perf_counter() - t0
        print(f"row {number}: {seconds[number]:.0f} s", flush=True)
        save(
            path,
            {
                "date": now.isoformat(timespec="seconds"),
                "mode": mode,
                "repeats": REPEATS,
                "machine": host,
                "row_wall_s": seconds,
                "rows": [r.as_dict() for r in rows],
            },
        )
    print(table(rows))
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
