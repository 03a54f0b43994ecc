"""The import rules of the architecture (docs/architecture.md: data flows one way)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "planner"

# Each layer may import itself and the layers before it. Loaders and commands sit with the CLI.
ORDER = ["errors", "units", "limits", "schemas", "estimate", "topology", "candidates", "solver", "assign", "verify", "explain",
         "report", "export"]
INPUT_SIDE = {"loaders": {"errors", "units", "limits", "schemas", "loaders"}}
INPUT_AND_OUTPUT = {"commands", "cli"}  # may import everything; nothing imports them but the CLI
NOT_CODE = {"catalog", "__init__"}
# Each heavy library stays in one package or module (its path under planner/, without .py).
RESTRICTED = {"ortools": "solver", "networkx": "topology", "click": "cli", "matplotlib": "report/pictures"}
LAZY = {"matplotlib"}  # imported inside functions only, so the planner runs without the optional extra


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def _module(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").as_posix()


def _imports_at_import_time(tree: ast.AST) -> set[str]:
    """Modules a file imports when it is itself imported: everything outside function bodies."""
    out: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        out |= _imports_at_import_time(node)
    return out


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def test_every_package_has_a_place_in_the_layering() -> None:
    tops = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if (p.suffix == ".py" or p.is_dir()) and p.name != "__pycache__"}
    placed = set(ORDER) | set(INPUT_SIDE) | INPUT_AND_OUTPUT | NOT_CODE
    assert tops - placed == set(), f"packages missing from the layering rules: {sorted(tops - placed)}"


def test_modules_import_only_to_their_left() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        layer = _layer(path)
        for name in _imports(path):
            if not name.startswith("planner.") or name == "planner":
                continue
            target = name.split(".")[1]
            if layer in ORDER and target in ORDER and ORDER.index(target) > ORDER.index(layer):
                problems.append(f"{path.name}: {layer} imports {target}")
            if layer in ORDER and target in ("loaders", "commands", "cli"):
                problems.append(f"{path.name}: {layer} imports {target}")
            if layer == "commands" and target == "cli":
                problems.append(f"{path.name}: commands import the CLI")
            if layer in INPUT_SIDE and target not in INPUT_SIDE[layer]:
                problems.append(f"{path.name}: {layer} imports {target}")
    assert not problems, problems


def test_heavy_libraries_stay_in_their_module() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        for name in _imports(path):
            root = name.split(".")[0]
            if root in RESTRICTED and not (_module(path) + "/").startswith(RESTRICTED[root] + "/"):
                problems.append(f"{path.relative_to(PACKAGE)} imports {root}")
    assert not problems, problems


def test_optional_libraries_are_imported_lazily() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        for name in _imports_at_import_time(ast.parse(path.read_text())):
            if name.split(".")[0] in LAZY:
                problems.append(f"{path.relative_to(PACKAGE)} imports {name} at module level")
    assert not problems, problems


def test_only_cli_and_loaders_touch_the_file_system() -> None:
    allowed = {"cli", "loaders", "catalog"}  # catalog: data, including the scripts exports carry unchanged
    for path in PACKAGE.rglob("*.py"):
        if _layer(path) in allowed:
            continue
        source = path.read_text()
        for call in ("open(", ".write_text(", ".read_text(", ".write_bytes(", "os.replace("):
            assert call not in source, f"{path.relative_to(PACKAGE)} uses {call}"


def test_plan_memory_does_not_import_ortools() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from planner.cli import main\n"
        "r = CliRunner().invoke(main, ['memory', '--model', 'llama-3.1-8b'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('ortools' in sys.modules, 'networkx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False False"


def test_the_html_report_does_not_import_matplotlib_until_it_draws() -> None:
    code = "import sys\nimport planner.report.html, planner.report.pictures\nprint('matplotlib' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
