"""engine.kernel_cache: a cached kernel is recompiled when a file it depends on changes,
not only its own (which is all Numba checks). Real Numba caches, in fresh processes; and
each package's guard covers its kernel modules and everything compiled into them."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
from numba import types as nbtypes
from numba.core.dispatcher import Dispatcher
from numba.core.registry import CPUDispatcher

from engine.kernel_cache import STAMP_NAME, drop_stale_caches, guards

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "strategies", "sweep", "cluster")

CALLER = """
from numba import njit
from helper import step

@njit(cache=True)
def total(n):
    s = 0.0
    for i in range(n):
        s += step(i)
    return s
"""
HELPER = """
from numba import njit

@njit(cache=True)
def step(i):
    return {value}
"""


def _run(folder: Path, *, drop: bool, helper_dir: Path | None = None) -> str:
    """caller.total(10) in a fresh process and its cache hits; with ``helper_dir`` the
    helper lives there and is guarded as a dependency (another package's file)."""
    helper_dir = helper_dir or folder
    guard = (f"drop_stale_caches([Path({str(folder)!r}) / 'caller.py'], "
             f"depends_on=[Path({str(helper_dir)!r}) / 'helper.py'])" if helper_dir != folder
             else f"drop_stale_caches([Path({str(folder)!r}) / 'caller.py', "
                  f"Path({str(folder)!r}) / 'helper.py'])")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(folder)!r})
        sys.path.insert(0, {str(helper_dir)!r})
        from pathlib import Path
        from engine.kernel_cache import drop_stale_caches
        if {drop}:
            {guard}
        import caller
        print(caller.total(10), sum(caller.total.stats.cache_hits.values()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_a_change_in_a_callee_file_recompiles_the_caller(tmp_path: Path) -> None:
    (tmp_path / "caller.py").write_text(CALLER)
    (tmp_path / "helper.py").write_text(HELPER.format(value="1.0"))
    assert _run(tmp_path, drop=True) == "10.0 0"    # compiled and cached
    assert _run(tmp_path, drop=True) == "10.0 1"    # from the cache
    assert (tmp_path / "__pycache__" / STAMP_NAME).is_file()

    (tmp_path / "helper.py").write_text(HELPER.format(value="2.0"))
    # Numba alone keeps the caller's old machine code: the reason for kernel_cache
    assert _run(tmp_path, drop=False) == "10.0 1", "Numba now tracks other files"
    assert _run(tmp_path, drop=True) == "20.0 0"    # stale files dropped: recompiled
    assert _run(tmp_path, drop=True) == "20.0 1"    # and cached again


def test_nothing_dropped_when_the_stamp_matches(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    entry = cache / "mod.f-3.py311.nbi"
    entry.write_bytes(b"index")
    other = cache / "unrelated.g-1.py311.nbi"
    other.write_bytes(b"index")
    assert drop_stale_caches([src]) == [entry]    # no stamp yet: stale
    assert other.exists() and (cache / STAMP_NAME).is_file()
    entry.write_bytes(b"index")
    assert drop_stale_caches([src]) == []         # stamped: kept
    src.write_text("x = 2\n")
    assert drop_stale_caches([src]) == [entry]    # a source changed: dropped


def test_a_dependency_in_another_folder_recompiles_only_the_guarded_module(
        tmp_path: Path) -> None:
    """An upper package guards its module with a lower package's file as a dependency:
    a change there drops the upper module's cache, and the lower folder is not touched
    (its own guard owns it)."""
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    upper.mkdir()
    lower.mkdir()
    (upper / "caller.py").write_text(CALLER)
    (lower / "helper.py").write_text(HELPER.format(value="1.0"))
    assert _run(upper, drop=True, helper_dir=lower) == "10.0 0"
    assert _run(upper, drop=True, helper_dir=lower) == "10.0 1"
    assert (upper / "__pycache__" / STAMP_NAME).is_file()
    assert not (lower / "__pycache__" / STAMP_NAME).exists()
    (lower / "helper.py").write_text(HELPER.format(value="3.0"))
    assert _run(upper, drop=True, helper_dir=lower) == "30.0 0"
    assert _run(upper, drop=True, helper_dir=lower) == "30.0 1"


# ------------------------------------------------------------------ the packages' guards
def _modules() -> list[types.ModuleType]:
    out = []
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        out.append(pkg)
        out += [importlib.import_module(info.name)
                for info in pkgutil.walk_packages(pkg.__path__, f"{package}.")
                if not info.name.endswith("__main__")]  # those run a command
    return out


def _cached_kernels(module: types.ModuleType) -> list[Dispatcher]:
    return [obj for obj in vars(module).values()
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__
            and obj.stats.cache_path]


def _file(module_name: str) -> Path | None:
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    path = Path(getattr(module, "__file__", None) or "/").resolve()
    return path if ROOT in path.parents else None  # first-party files only


def _imported_from(module: types.ModuleType) -> dict[str, str]:
    """name -> the module a ``from X import name`` statement of ``module`` took it from."""
    tree = ast.parse(Path(module.__file__ or "").read_text())
    return {a.asname or a.name: node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            for a in node.names}


def _names(code: types.CodeType) -> set[str]:
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _names(const)
    return out


def _compiled_in(module: types.ModuleType) -> set[Path]:
    """The first-party files whose code or constants the module's cached kernels compile
    in: every global a kernel's code names, resolved to the module it comes from, through
    the kernels it calls; and the record layouts and signature types the module imports."""
    files: set[Path] = set()
    imported = _imported_from(module)
    for name, origin in imported.items():
        if isinstance(getattr(module, name, None), np.dtype | nbtypes.Type):
            files.add(_file(origin) or Path("/"))
    todo = _cached_kernels(module)
    seen: set[int] = set()
    while todo:
        kernel = todo.pop()
        if id(kernel) in seen:
            continue
        seen.add(id(kernel))
        home = sys.modules[kernel.py_func.__module__]
        files.add(_file(home.__name__) or Path("/"))
        origins = _imported_from(home)
        for name in _names(kernel.py_func.__code__):
            value = kernel.py_func.__globals__.get(name)
            if isinstance(value, Dispatcher):
                todo.append(value)
            elif name in origins:
                files.add(_file(origins[name]) or Path("/"))
    files.discard(Path("/"))
    return files


def test_every_module_with_cached_kernels_is_guarded_with_what_it_compiles_in() -> None:
    """Each package's guard (guard_package in its __init__) owns every module of the
    package that defines cached kernels, and its digest covers every file those kernels
    compile in, followed through the kernels they call: else an edit there would leave a
    stale kernel in the cache."""
    found = 0
    for module in _modules():
        if not _cached_kernels(module):
            continue
        found += 1
        package = module.__name__.split(".")[0]
        path = Path(module.__file__ or "").resolve()
        guard = guards().get(package)
        assert guard is not None, f"{package} defines cached kernels but has no guard"
        assert path in guard.own, f"{path.relative_to(ROOT)} is not in {package}'s guard"
        missing = _compiled_in(module) - set(guard.sources)
        assert not missing, (f"{path.relative_to(ROOT)} compiles in "
                             f"{sorted(str(p.relative_to(ROOT)) for p in missing)}, "
                             f"which {package}'s guard does not cover")
    assert found >= 10  # engine/nb, the strategies, sweep.kernels and sweep.cscv


def test_layers_one_way() -> None:
    """engine guards only its own files; no guard covers a layer above its package."""
    above = {"engine": ("strategies", "sweep", "cluster"), "strategies": ("sweep", "cluster"),
             "sweep": ("cluster",)}
    _modules()
    for package, upper in above.items():
        for path in guards()[package].sources:
            top = path.relative_to(ROOT).parts[0]
            assert top not in upper, f"{package}'s guard names {path.relative_to(ROOT)}"
    assert all(ROOT / "engine" in p.parents for p in guards()["engine"].sources)
