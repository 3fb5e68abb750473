"""The documentation's promises, checked without building the site (CI runs `mkdocs build
--strict` separately):

- the configuration reference is generated from the Dagster config schema and names every field
  of every configurable step; no help text is copied by hand into a page;
- the README stays short and carries the two commands a newcomer needs, verbatim;
- no file of the repository refers to a document outside it;
- the benchmark tables show every results file's rows, the latest file of each machine and mode
  first.
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from traincraft_assets.defs.definitions import build_defs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/traincraft demo"
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"
README_MAX_LINES = 260
HELP_MIN_CHARS = 25

# Documents that live outside this repository. Spelled in pieces so that this file, which is
# tracked too, does not name them itself.
OUTSIDE_DOCUMENTS = {
    "design" + ".md": re.compile(r"(?<![\w-])design\.md"),
    "notes/" + "*.md": re.compile(r"(?<![\w/-])notes/[\w-]+\.md"),
    "../" + "shared": re.compile(r"\.\./shared\b"),
}


def _load_hooks():
    spec = importlib.util.spec_from_file_location("traincraft_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


@pytest.fixture(scope="module")
def schema() -> dict[str, dict]:
    """{step: {field: Dagster Field}} for every node of the global asset job, read from the
    definitions directly (not through the hooks module under test)."""
    job = build_defs().resolve_implicit_global_asset_job_def()
    out = {}
    for node in job.graph.nodes:
        config_schema = node.definition.config_schema
        config_type = config_schema.config_type if config_schema is not None else None
        out[node.name] = dict(getattr(config_type, "fields", None) or {})
    return out


def _sections(markdown: str) -> dict[str, str]:
    """{step: its section of the rendered reference}, keyed by the `## `step`` headings."""
    parts = re.split(r"^## `([^`]+)`$", markdown, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _check_reference(markdown: str, schema: dict[str, dict]) -> None:
    sections = _sections(markdown)
    configurable = {step for step, fields in schema.items() if fields}
    assert configurable, "no step has config: the schema was not read"
    missing_steps = configurable - set(sections)
    assert not missing_steps, f"steps with config but no table: {sorted(missing_steps)}"
    for step in configurable:
        section = sections[step]
        for name, field in schema[step].items():
            rows = [line for line in section.splitlines() if line.startswith(f"| `{name}` |")]
            assert len(rows) == 1, f"{step}.{name}: {len(rows)} rows in its table"
            if field.config_type.kind.name == "ENUM":
                for choice in field.config_type.enum_values:
                    assert f"`{choice.config_value}`" in rows[0], (
                        f"{step}.{name}: choice {choice.config_value!r} not listed"
                    )
        named = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
        assert named == set(schema[step]), f"{step}: the table's fields are not the schema's"
    unconfigured = {step for step, fields in schema.items() if not fields}
    for step in unconfigured:
        assert f"- `{step}`:" in markdown, f"step without config not listed: {step}"


def test_config_reference_names_every_field_of_every_configurable_step(schema):
    _check_reference(hooks.render_config_reference(), schema)


def test_configuration_page_shows_every_step(schema):
    """The page as the site renders it: its per-step placeholders and the catch-all together
    place every step exactly once."""
    page = hooks.expand((DOCS / "configuration.md").read_text())
    assert "config-reference" not in page, "a placeholder was left unexpanded"
    headings = re.findall(r"^## `([^`]+)`$", page, flags=re.M)
    assert len(headings) == len(set(headings)), "a step's table appears twice"
    _check_reference(page, schema)


def test_unknown_step_placeholder_is_refused():
    with pytest.raises(ValueError, match="no_such_step"):
        hooks.expand("<!-- config-reference: no_such_step -->\n")


def _hand_written_pages() -> list[Path]:
    """docs/**/*.md and README.md, and the repository files the pages include (snippets)."""
    pages = [*sorted(DOCS.rglob("*.md")), README]
    included = []
    for page in pages:
        for name in re.findall(r'^--8<--\s+"([^"]+)"', page.read_text(), flags=re.M):
            included.append(ROOT / name)
    return pages + included


def test_no_help_text_is_copied_into_a_page(schema):
    helps = {
        " ".join(field.description.split())
        for fields in schema.values()
        for field in fields.values()
        if field.description and len(field.description) >= HELP_MIN_CHARS
    }
    copies = []
    for page in _hand_written_pages():
        text = " ".join(page.read_text().split())
        copies += [f"{page.relative_to(ROOT)}: {help_text!r}" for help_text in sorted(helps) if help_text in text]
    assert not copies, "help text belongs in the code only; the reference is generated:\n" + "\n".join(copies)


def test_readme_is_short_and_has_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert DEMO_COMMAND in text
    assert TEST_COMMAND in text


def test_readme_links_resolve():
    """The README's relative links work on GitHub: each names a file of the repository."""
    text = README.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets
    broken = []
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (ROOT / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"README links to missing files: {broken}"


def _tracked_files() -> list[Path]:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    listed = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_no_file_refers_to_documents_outside_the_repository():
    found = []
    for path in _tracked_files():
        if not path.is_file():
            continue  # deleted in the working tree
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            found += [
                f"{path.relative_to(ROOT)}:{number}: {name}"
                for name, pattern in OUTSIDE_DOCUMENTS.items()
                if pattern.search(line)
            ]
    assert not found, "say the fact in the project's own words instead:\n" + "\n".join(found)


def _blocks(markdown: str) -> dict[str, list[str]]:
    """{results file name: the table rows rendered under its captions}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in markdown.splitlines():
        caption = re.search(r"\*\*`bench/results/([^`]+)`\*\*", line)
        if caption:
            current = caption.group(1)
            out.setdefault(current, [])
        elif line.strip().startswith("| ") and current and not line.strip().startswith("| row |"):
            out[current].append(line.strip())
    return out


def test_bench_tables_show_every_results_file():
    results = hooks.load_bench_results()
    assert results, "no bench/results/*.json"
    markdown = hooks.render_bench_results()
    blocks = _blocks(markdown)
    for path, result in results:
        assert sorted(blocks.get(path.name, [])) == sorted(hooks.bench_row(r) for r in result["rows"]), path.name
    latest: dict[tuple, tuple[Path, dict]] = {}
    for path, result in results:
        key = (hooks.machine_key(result), result["mode"])
        if key not in latest or result["date"] > latest[key][1]["date"]:
            latest[key] = (path, result)
    for path, result in latest.values():
        caption = next(line for line in markdown.splitlines() if f"**`bench/results/{path.name}`**" in line)
        assert caption.startswith("Latest: "), f"{path.name} is its machine and mode's latest"
        for row in result["rows"]:
            assert hooks.cell(row["what"]) in markdown
    assert len(latest) == sum(line.startswith("Latest: ") for line in markdown.splitlines())


def test_bench_tables_take_the_latest_file_of_each_machine_and_mode(tmp_path):
    machine = {"hostname": "box", "cpu": "Some CPU", "cores": 4, "gpu": None}

    def row(number, what, ratio):
        return {
            "row": number,
            "what": what,
            "anchor": "a",
            "target": "b",
            "anchor_value": 1.0,
            "target_value": ratio,
            "unit": "s",
            "ratio": ratio,
            "goal": ">= 1",
            "met": ratio >= 1,
            "note": "",
        }

    old = {
        "date": "2026-01-01T00:00:00+00:00",
        "mode": "full",
        "machine": machine,
        "rows": [row("1", "one", 0.5), row("2", "two", 2.0)],
    }
    new = {
        "date": "2026-02-01T00:00:00+00:00",
        "mode": "full",
        "machine": machine,
        "rows": [row("1", "one again", 1.5)],
    }
    quick = {
        "date": "2026-03-01T00:00:00+00:00",
        "mode": "quick",
        "machine": machine,
        "rows": [row("1", "quick one", 3.0)],
    }
    for name, result in {"a-old.json": old, "b-new.json": new, "c-quick.json": quick}.items():
        (tmp_path / name).write_text(json.dumps(result))
    markdown = hooks.render_bench_results(tmp_path)
    full, quick_part = markdown.split("--quick")
    assert full.index("b-new.json") < full.index("a-old.json")  # the latest first
    latest_table, rest = full.split("From an earlier file")
    assert "one again" in latest_table and "| two |" not in latest_table
    kept, superseded = rest.split("??? note")
    assert "| two |" in kept and "| one |" not in kept  # row 2 is still the old file's latest
    assert "| one |" in superseded  # row 1 was measured again
    assert "quick one" in quick_part and "Latest: " in quick_part
