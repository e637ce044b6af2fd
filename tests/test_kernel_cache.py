"""engine.kernel_cache: a cached kernel is recompiled when a file it depends on changes,
not only its own (which is all Numba checks). Real Numba caches, in fresh processes."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

from numba.core.registry import CPUDispatcher

from engine.kernel_cache import KERNEL_SOURCES, STAMP_NAME, drop_stale_caches

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


def _run(folder: Path, *, drop: bool) -> str:
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(folder)!r})
        from pathlib import Path
        from engine.kernel_cache import drop_stale_caches
        if {drop}:
            drop_stale_caches([Path({str(folder)!r}) / "caller.py",
                               Path({str(folder)!r}) / "helper.py"])
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


def test_kernel_sources_cover_every_module_with_cached_kernels() -> None:
    root = Path(__file__).resolve().parent.parent
    covered = {p.resolve() for p in KERNEL_SOURCES}
    for package in ("engine", "strategies", "sweep", "cluster"):
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            module = importlib.import_module(info.name)
            kernels = [name for name, obj in vars(module).items()
                       if isinstance(obj, CPUDispatcher) and obj.__module__ == info.name
                       and obj.stats.cache_path]
            path = Path(module.__file__ or "").resolve()
            if kernels:
                assert path in covered, (f"{path.relative_to(root)} defines cached kernels "
                                         f"{kernels} but is not in KERNEL_SOURCES")
