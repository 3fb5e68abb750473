"""The layer rules of design.md, checked on the source: a change that breaks one fails here,
not in a reviewer's head.

- core is plain Python: no Dagster import, also at run time (the package's `defs` is lazy).
- defs talks to the trainer interface and registry only: no `mace` and no backend subpackage.
- no defs module spells a store file name: paths come from the catalogue (core/artifacts.py).
- no Literal in defs lists choices: they are derived from core's types.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "traincraft_assets"
STORE_FILE_SUFFIXES = (".xyz", ".json", ".model", ".png")
BACKENDS = sorted(p.name for p in (PACKAGE / "core" / "training").iterdir() if (p / "__init__.py").is_file())


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_does_not_import_dagster(path):
    assert not {name for name in _imports(path) if name.split(".")[0].startswith("dagster")}


def test_the_science_runs_without_importing_dagster():
    """Labelling workers are spawned Pythons that import core.labelling: importing the package
    must not build the Dagster definitions (3 s per worker before it labels a frame)."""
    program = (
        "import sys\nimport traincraft_assets.core.labelling, traincraft_assets.core.evaluation\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("path", _modules("defs"), ids=lambda p: str(p.relative_to(PACKAGE)))
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
