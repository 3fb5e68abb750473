"""The layer rules of the project (docs: Project layout), checked on the source: a change that
breaks one fails here, not in a reviewer's head.

- The layers import downwards only: core <- defs <- app <- cli. core is plain Python: no
  Dagster import, also at run time.
- No import cycles anywhere in the package, counting imports inside functions too.
- defs talks to the trainer interface and registry only: no `mace` and no backend subpackage.
- Every asset and check is made by defs/steps.py's decorators, so its reads are declared once;
  no defs module spells a store file name (paths come from core/artifacts.py); no Literal in
  defs lists choices (they are derived from core's types).
- One module talks to the Dagster instance, defs/instance.py: no other module calls an instance
  query, and a private `dagster._` import appears nowhere else (bench included).
- Nothing reads the environment's settings at import.
"""

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "traincraft_assets"
INSTANCE_MODULE = PACKAGE / "defs" / "instance.py"
STEPS_MODULE = PACKAGE / "defs" / "steps.py"
STORE_FILE_SUFFIXES = (".xyz", ".json", ".model", ".png")
BACKENDS = sorted(p.name for p in (PACKAGE / "core" / "training").iterdir() if (p / "__init__.py").is_file())
LAYERS = ["core", "defs", "app", "cli"]  # each may import those before it, never those after


def _modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path) for path in _modules()}


def _imports(path: Path) -> set[str]:
    """Every module an import statement in `path` takes names from, inside functions too:
    `from a import b` is `a.b` when that is a module of the package, else `a`. (Importing a
    module also initializes its parent packages; that is not an import of their names.)"""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in MODULES else node.module)
    return names


def _ids(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


@pytest.mark.parametrize("path", _modules("core"), ids=_ids)
def test_core_does_not_import_dagster(path):
    assert not {name for name in _imports(path) if name.split(".")[0].startswith("dagster")}


@pytest.mark.parametrize("path", _modules(), ids=_ids)
def test_layers_import_downwards_only(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own not in LAYERS:
        return  # the package's __init__ and the demo's shipped files
    above = LAYERS[LAYERS.index(own) + 1 :]
    reaching_up = {n for n in _imports(path) if n.split(".")[:2] in (["traincraft_assets", layer] for layer in above)}
    assert not reaching_up, f"{own} imports from a layer above it: {sorted(reaching_up)}"


def test_the_package_has_no_import_cycles():
    """Tarjan's strongly connected components over every import of every module."""
    modules = {_name(path): path for path in _modules()}
    graph = {name: {n for n in _imports(path) if n in modules and n != name} for name, path in modules.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_the_science_runs_without_importing_dagster():
    """Labelling workers are spawned Pythons that import core.labelling: importing the package
    must not build the Dagster definitions (3 s per worker before it labels a frame)."""
    program = (
        "import sys\nimport traincraft_assets.core.labelling, traincraft_assets.core.evaluation\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"


def test_nothing_reads_the_settings_at_import():
    """Every module imports under settings that cannot work; only building the definitions
    (what Dagster does when it loads them) reads them, and says which is wrong."""
    modules = ", ".join(sorted(_name(p) for p in _modules() if p.parts[-2] != "demo" or p.name == "__init__.py"))
    program = (
        f"import importlib\nfor name in '{modules}'.split(', '):\n    importlib.import_module(name)\n"
        "from traincraft_assets.defs.definitions import build_defs\n"
        "try:\n    build_defs()\nexcept ValueError as exc:\n    print('refused:', exc)\n"
    )
    env = {**os.environ, "TRAINCRAFT_DEPLOYMENT": "mars", "TRAINCRAFT_TRAINING_PROCESSES": "many"}
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "refused: TRAINCRAFT_DEPLOYMENT must be one of" in run.stdout


@pytest.mark.parametrize("path", _modules("defs"), ids=_ids)
def test_defs_modules_stay_thin(path):
    imports = _imports(path)
    assert not {n for n in imports if n == "mace" or n.startswith("mace.")}, "defs imports mace"
    backends = [f"traincraft_assets.core.training.{name}" for name in BACKENDS]
    assert BACKENDS == ["mace"]
    assert not {n for n in imports if any(n == b or n.startswith(b + ".") for b in backends)}, (
        "defs imports a training backend"
    )
    tree = ast.parse(path.read_text())
    spelled = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(STORE_FILE_SUFFIXES)
    ]
    assert not spelled, f"store file names spelled in defs: {spelled}"
    literal_lists = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript)
        and ast.unparse(node.value) in ("Literal", "typing.Literal")
        and any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(node.slice))
    ]
    assert not literal_lists, f"choices typed again in defs: {literal_lists}"


@pytest.mark.parametrize("path", [p for p in _modules("defs") if p != STEPS_MODULE], ids=_ids)
def test_every_asset_and_check_declares_its_reads_through_the_step_decorators(path):
    """An asset made with Dagster's own decorator would read the store with undeclared
    dependencies; the store's artifacts are opened only through a Step (or, before any step
    works, by preflight)."""
    source = path.read_text()
    made_directly = [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and ast.unparse(node.value) in ("dg", "dagster")
        and node.attr in ("asset", "asset_check", "multi_asset_check", "multi_asset")
    ]
    assert not made_directly, f"assets or checks made without defs/steps.py: {made_directly}"
    if path.name not in ("preflight.py", "resources.py"):
        assert ".store()" not in source and "ArtifactStore" not in source, "the store opened outside a Step"


def _instance_queries() -> set[str]:
    """The names of the Dagster instance's methods, less those other objects share."""
    shared = {"get", "dispose", "get_ref", "root_directory", "optimize_for_webserver", "exists"}
    return {name for name in dir(dg.DagsterInstance) if not name.startswith("_")} - shared


STORAGES = {"event_log_storage", "run_storage", "schedule_storage"}


@pytest.mark.parametrize("path", [p for p in _modules() if p != INSTANCE_MODULE], ids=_ids)
def test_only_the_instance_module_queries_the_dagster_instance(path):
    """No call of an instance method on anything named like an instance, and no reach into its
    storages, outside defs/instance.py. (bench/ measures Dagster's own events and may ask.)"""
    queries = _instance_queries()
    tree = ast.parse(path.read_text())
    calls = [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in queries
        and "instance" in ast.unparse(node.func.value)
    ]
    storages = [
        ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in STORAGES
    ]
    assert not calls + storages, f"instance queries outside defs/instance.py: {calls + storages}"


@pytest.mark.parametrize(
    "path", [*_modules(), *sorted((ROOT / "bench").rglob("*.py"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_private_dagster_imports_live_only_in_the_instance_module(path):
    private = sorted(n for n in _imports(path) if n.startswith("dagster._"))
    if path == INSTANCE_MODULE:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.startswith(("from dagster._", "import dagster._")):
                assert lines[number - 1].startswith("#") and "public API" in lines[number - 1], (
                    f"{line}: say, in a comment above it, which public API is missing"
                )
        return
    assert not private, f"private Dagster imports outside defs/instance.py: {private}"


def test_the_instance_module_is_where_the_instance_is_asked():
    """The rule above checks something: the instance module does query the instance."""
    source = INSTANCE_MODULE.read_text()
    found = defaultdict(int)
    for query in _instance_queries():
        found[query] += source.count(f".{query}(")
    assert sum(found.values()) >= 10
