"""MkDocs hooks: the parts of the documentation site that are generated, not written.

Registered under `hooks:` in mkdocs.yml. `on_page_markdown` replaces these placeholders, each a
line of its own, in any page before it is rendered:

- `<!-- config-reference: STEP -->`: the configuration table of one step (an asset, or an op
  of asset checks), built from the Dagster config schema of the project's own definitions, so
  each field's type, default and help text exist once, in the code.
- `<!-- config-reference -->`: every configurable step the same page did not place by name, then
  the steps that take no config. A page holding it therefore always covers every step.
- `<!-- bench-results -->`: the benchmark tables, rendered from `bench/results/*.json`.

The rendering functions (`render_config_reference`, `render_bench_results`, `expand`) are plain
functions, importable without MkDocs (traincraft_assets_tests/test_docs.py calls them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_RESULTS = ROOT / "bench" / "results"

# A placeholder is a line of its own (one quoted in running text or code is left alone).
CONFIG_PLACEHOLDER = re.compile(r"^<!--\s*config-reference(?:\s*:\s*([A-Za-z0-9_]+))?\s*-->[ \t]*$", re.M)
BENCH_PLACEHOLDER = re.compile(r"^<!--\s*bench-results\s*-->[ \t]*$", re.M)
TIMES = "\N{MULTIPLICATION SIGN}"


# ---------------------------------------------------------------------------------------------
# Markdown helpers


def cell(text: object) -> str:
    """`text` made safe for one Markdown table cell: one line, `|` escaped outside code spans,
    `<` escaped so that text such as `<store>` is not taken for HTML."""
    parts = re.split(r"(`+[^`]*`+)", " ".join(str(text).split()))
    return "".join(p if p.startswith("`") else p.replace("|", "\\|").replace("<", "&lt;") for p in parts)


def _code(text: str) -> str:
    return f"`{text}`" if text else '`""`'


# ---------------------------------------------------------------------------------------------
# Configuration reference


@dataclasses.dataclass(frozen=True)
class ConfigField:
    name: str
    type_text: str  # the type, or the choices of an Enum
    default_text: str
    description: str  # empty where the code has no help text yet


@dataclasses.dataclass(frozen=True)
class Step:
    name: str  # the op's name: run config goes under `ops: <name>: config:`
    what: str  # "asset `x`" or "checks `a`, `b` on `x`"
    description: str
    fields: tuple[ConfigField, ...]  # empty: the step takes no config


_SCALARS = {"Int": "int", "Float": "float", "Bool": "bool", "String": "string", "Any": "any"}


def type_text(config_type) -> str:
    """A Dagster config type in words: Noneable unwrapped, an Enum as its choices."""
    kind = config_type.kind.name
    if kind == "NONEABLE":
        return type_text(config_type.inner_type)
    if kind == "ENUM":
        return " \\| ".join(_code(v.config_value) for v in config_type.enum_values)
    if kind == "ARRAY":
        return f"list of {type_text(config_type.inner_type)}"
    if kind == "MAP":
        return f"mapping of {type_text(config_type.key_type)} to {type_text(config_type.inner_type)}"
    if kind == "SCALAR_UNION":  # IntSource, StringSource, ...: the scalar, or an env var
        return type_text(config_type.scalar_type)
    if kind in ("SCALAR", "ANY"):
        name = config_type.given_name or config_type.key
        return _SCALARS.get(name, name)
    if kind in ("STRICT_SHAPE", "SHAPE", "PERMISSIVE_SHAPE", "SELECTOR"):
        return "mapping"
    return config_type.given_name or config_type.key


def value_text(value) -> str:
    """A default as it is written in YAML run config."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _fields(config_schema) -> tuple[ConfigField, ...]:
    config_type = config_schema.config_type if config_schema is not None else None
    fields = getattr(config_type, "fields", None) if config_type is not None else None
    out = []
    for name, field in (fields or {}).items():
        default = f"`{value_text(field.default_value)}`" if field.default_provided else "required"
        out.append(ConfigField(name, type_text(field.config_type), default, field.description or ""))
    return tuple(out)


@functools.cache
def config_steps() -> tuple[Step, ...]:
    """Every step of the project's global asset job, in the graph's order, with its config.
    Cached for the process: `mkdocs serve` shows a change to the code's settings once restarted."""
    from traincraft_assets.defs.definitions import build_defs

    defs = build_defs()
    job = defs.resolve_implicit_global_asset_job_def()
    what: dict[str, str] = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if not assets_def.is_executable:
            continue
        keys = [_code(k.to_user_string()) for k in assets_def.keys]
        checks = [_code(c.name) for c in assets_def.check_keys]
        if keys:
            what[assets_def.node_def.name] = ("asset " if len(keys) == 1 else "assets ") + ", ".join(keys)
        elif checks:
            targets = sorted({_code(c.asset_key.to_user_string()) for c in assets_def.check_keys})
            label = "check " if len(checks) == 1 else "checks "
            what[assets_def.node_def.name] = label + ", ".join(sorted(checks)) + " on " + ", ".join(targets)
    graph = job.graph
    nodes = getattr(graph, "nodes_in_topological_order", None) or graph.nodes
    return tuple(
        Step(
            name=node.name,
            what=what.get(node.name, "step"),
            description=" ".join((node.definition.description or "").split()),
            fields=_fields(node.definition.config_schema),
        )
        for node in nodes
    )


def render_step(step: Step) -> str:
    """One step's heading, what it is, and its table of config fields."""
    lines = [f"## `{step.name}`", "", f"{step.what[0].upper()}{step.what[1:]}."]
    if step.description:
        lines[-1] += " " + cell(step.description)
    lines.append("")
    if not step.fields:
        lines += ["This step takes no config.", ""]
        return "\n".join(lines)
    lines += ["| field | type or choices | default | meaning |", "|---|---|---|---|"]
    for f in step.fields:
        lines.append(f"| `{f.name}` | {f.type_text} | {cell(f.default_text)} | {cell(f.description)} |")
    lines.append("")
    return "\n".join(lines)


def render_unconfigured(steps: Iterable[Step]) -> str:
    steps = list(steps)
    if not steps:
        return ""
    lines = ["## Steps without config", ""]
    lines += [f"- `{s.name}`: {s.what}." for s in steps]
    return "\n".join(lines) + "\n"


def render_config_reference(exclude: Iterable[str] = ()) -> str:
    """Every configurable step's table (but those in `exclude`), then the steps with no config."""
    exclude = set(exclude)
    steps = config_steps()
    parts = [render_step(s) for s in steps if s.fields and s.name not in exclude]
    parts.append(render_unconfigured(s for s in steps if not s.fields))
    return "\n".join(p for p in parts if p)


def _expand_config(markdown: str) -> str:
    by_name = {s.name: s for s in config_steps()}
    placed: list[str] = []

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)  # the catch-all, filled in below
        if name not in by_name:
            raise ValueError(f"config-reference: no step {name!r}; steps: {', '.join(sorted(by_name))}")
        if name in placed:
            raise ValueError(f"config-reference: step {name!r} placed twice")
        placed.append(name)
        return render_step(by_name[name])

    markdown = CONFIG_PLACEHOLDER.sub(one, markdown)
    return CONFIG_PLACEHOLDER.sub(lambda _: render_config_reference(exclude=placed), markdown)


# ---------------------------------------------------------------------------------------------
# Benchmark results


def load_bench_results(results_dir: Path = BENCH_RESULTS) -> list[tuple[Path, dict]]:
    """Every results file, oldest first."""
    files = [(p, json.loads(p.read_text())) for p in sorted(results_dir.glob("*.json"))]
    return sorted(files, key=lambda item: item[1]["date"])


def machine_key(result: dict) -> tuple:
    m = result["machine"]
    return (m.get("hostname"), m.get("cpu"), m.get("cores"), m.get("gpu"))


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:#.3g}".rstrip(".")  # three significant figures, trailing zeros kept
    return str(value)


def _goal(goal: str) -> str:
    return goal.replace("<=", "≤").replace(">=", "≥")


def _met(met) -> str:
    return "yes" if met is True else "**no**" if met is False else "-"


def bench_row(row: dict) -> str:
    unit = f" {row['unit']}" if row.get("unit") else ""
    if row.get("anchor_value") is None and row.get("target_value") is None:
        measured = "not measured"
    else:
        measured = (
            f"{row['anchor']}: {_number(row['anchor_value'])}{unit} → "
            f"{row['target']}: {_number(row['target_value'])}{unit}"
        )
    ratio = "-" if row.get("ratio") is None else f"{_number(row['ratio'])}{TIMES}"
    cells = [row["row"], row["what"], measured, ratio, _goal(row.get("goal") or "-")]
    return "| " + " | ".join(cell(c) for c in cells) + f" | {_met(row.get('met'))} | {cell(row.get('note') or '')} |"


def _bench_table(rows: list[dict], indent: str = "") -> list[str]:
    lines = ["| row | what | anchor → target | ratio | goal | met | note |", "|---|---|---|---|---|---|---|"]
    lines += [bench_row(r) for r in rows]
    return [indent + line for line in lines]


def machine_text(machine: dict) -> str:
    parts = [f"host `{machine.get('hostname')}`", str(machine.get("cpu")), f"{machine.get('cores')} cores"]
    if machine.get("ram_gib"):
        parts.append(f"{machine['ram_gib']} GiB")
    parts.append(f"GPU: {machine['gpu']}" if machine.get("gpu") else "no GPU")
    names = {"python": "Python", "torch": "torch", "mace-torch": "mace-torch", "dagster": "dagster", "ase": "ase"}
    versions = [f"{name} {machine[k]}" for k, name in names.items() if machine.get(k)]
    return ", ".join(parts) + ("; " + ", ".join(versions) if versions else "")


def _date_text(date: str) -> str:
    try:
        when = datetime.fromisoformat(date)
    except ValueError:
        return date
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M")
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def bench_caption(path: Path, result: dict, rows: list[dict] | None = None) -> str:
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    caption = f"**`{rel}`**, {_date_text(result['date'])}, {machine_text(result['machine'])}"
    if result.get("repeats"):
        caption += f"; median of {result['repeats']}"
    if rows is not None:
        caption += "; rows " + ", ".join(sorted({r["row"] for r in rows}, key=lambda r: (len(r), r)))
    caption += "."
    if result.get("composed"):
        caption += " " + cell(result["composed"])
    return caption


_MODES = {"full": "full sizes", "quick": "`--quick`"}


def render_bench_results(results_dir: Path = BENCH_RESULTS) -> str:
    """For each machine and mode, the latest file's rows; then the rows of earlier files that no
    later file measured again; then, folded away, the earlier rows that were measured again."""
    results = load_bench_results(results_dir)
    groups: dict[tuple, list[tuple[Path, dict]]] = {}
    for path, result in results:
        groups.setdefault((machine_key(result), result["mode"]), []).append((path, result))

    def order_key(group: tuple) -> tuple:  # by CPU, host, then full before quick
        (host, cpu, *_), mode = group
        return (cpu or "", host or "", list(_MODES).index(mode) if mode in _MODES else len(_MODES), mode)

    order = sorted(groups, key=order_key)
    out: list[str] = []
    for key in order:
        newest_first = list(reversed(groups[key]))
        latest_path, latest = newest_first[0]
        machine = latest["machine"]
        out += [f"### {machine.get('cpu')}, {machine.get('cores')} cores: {_MODES.get(key[1], key[1])}", ""]
        out += ["Latest: " + bench_caption(latest_path, latest), ""]
        out += [*_bench_table(latest["rows"]), ""]
        measured = {r["row"] for r in latest["rows"]}
        superseded: list[tuple[Path, dict, list[dict]]] = []
        for path, result in newest_first[1:]:
            kept = [r for r in result["rows"] if r["row"] not in measured]
            again = [r for r in result["rows"] if r["row"] in measured]
            if kept:
                out += ["From an earlier file, rows no later file measured: " + bench_caption(path, result, kept), ""]
                out += [*_bench_table(kept), ""]
            if again:
                superseded.append((path, result, again))
            measured |= {r["row"] for r in result["rows"]}
        if superseded:
            out += ['??? note "Earlier measurements of the same rows, superseded by the tables above"', ""]
            for path, result, rows in superseded:
                out += ["    " + bench_caption(path, result, rows), ""]
                out += [*_bench_table(rows, indent="    "), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The hook


def expand(markdown: str) -> str:
    """A page's Markdown with every placeholder replaced by what it stands for."""
    if CONFIG_PLACEHOLDER.search(markdown):
        markdown = _expand_config(markdown)
    if BENCH_PLACEHOLDER.search(markdown):
        markdown = BENCH_PLACEHOLDER.sub(lambda _: render_bench_results(), markdown)
    return markdown


def on_page_markdown(markdown: str, page, config, files) -> str:
    try:
        return expand(markdown)
    except ValueError as exc:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{page.file.src_uri}: {exc}") from exc
