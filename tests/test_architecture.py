"""The architecture's rules, read from the sources (docs/architecture.md):

* imports point one way: engine <- strategies <- sweep, and sweep -> cluster; engine
  imports nothing of the others, strategies only engine, cluster nothing of the three
  (function-level imports included);
* no import cycle among modules at import time;
* no module over ~600 lines;
* every package has ``__all__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "strategies", "sweep", "cluster")
ALLOWED = {"engine": {"engine"}, "strategies": {"engine", "strategies"},
           "cluster": {"cluster"}, "sweep": set(PACKAGES)}
MAX_LINES = 620


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Project modules ``path`` imports (not under ``if TYPE_CHECKING``; with
    ``top_level_only``, not inside functions either: what runs at import time)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            in_function = True
        if not (top_level_only and in_function):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    out.add(full if full in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(tree, False)
    return {m for m in out if m.split(".")[0] in PACKAGES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module: str) -> None:
    package = module.split(".")[0]
    wrong = sorted(m for m in _imports(MODULES[module], top_level_only=False)
                   if m.split(".")[0] not in ALLOWED[package])
    assert not wrong, f"{module} ({package}) imports {wrong}"


def test_no_import_cycle_at_import_time() -> None:
    graph = {m: {d for d in _imports(p, top_level_only=True) if d in MODULES and d != m}
             for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = [*path[path.index(d):], d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                walk(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)


def test_no_module_over_600_lines() -> None:
    long = {m: n for m, p in MODULES.items()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over ~600 lines: {long}"


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_declare_their_public_surface(package: str) -> None:
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    names = {t.id for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    assert "__all__" in names


def test_a_grid_does_not_import_scipy() -> None:
    """Numba imports SciPy when it is installed (it is here: the DSR tests use it), ~30 MB
    of memory no grid uses; engine/nb/__init__.py hides it while Numba loads. Checked in
    a fresh interpreter that runs an MA grid."""
    import subprocess
    import sys

    import scipy  # noqa: F401  (installed, so that the check means something)

    code = (
        "import sys, sweep\n"
        "from engine.data import synthetic_panel\n"
        "p = synthetic_panel(n_assets=1, n_bars=300, seed=1)\n"
        "df = sweep.evaluate(p, 'ma_cross', {'fast': [2, 5], 'slow': [20, 30]})\n"
        "assert df.height == 4\n"
        "print(sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
