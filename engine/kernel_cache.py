"""Keep Numba's disk cache of the kernels in step with the sources they depend on.

Numba keys a cached function on its own file only: a kernel that calls (or inlines, or
reads a constant from) a function in another file keeps its old machine code after that
other file changes (numba/numba#8396, not merged). ``simulate`` compiles the metrics of
``engine/nb/metrics.py`` into itself, and ``sweep.kernels.evaluate_block`` the whole
engine, so an edited metric would silently go on giving the old numbers, e.g. after a
``git pull`` into an editable install.

Each package therefore guards its own kernels: the first lines of its ``__init__``, before
any of its kernel modules is imported (a kernel loaded from the cache stays loaded), call
:func:`guard_package` with its kernel modules and what compiles into them (other packages'
guarded sources, or single modules). A cache folder of the package whose stamp is not the
digest of all those sources loses the cache files of the package's modules, and gets the
new stamp. The layers stay one way: ``engine`` guards ``engine/nb`` and names nothing
above it; ``strategies`` and ``sweep`` guard themselves and name what they build on.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Guard", "drop_stale_caches", "guard_package", "guards", "source_digest"]

STAMP_NAME = "backsweep-kernels.sha256"


@dataclass(frozen=True)
class Guard:
    """What a package's guard covers: ``own`` (its kernel modules, whose caches it drops)
    and ``sources`` (own + every file compiled into them: the digest's input)."""

    own: tuple[Path, ...]
    sources: tuple[Path, ...]


_GUARDS: dict[str, Guard] = {}


def guards() -> dict[str, Guard]:
    """The guards run in this process, by package name."""
    return dict(_GUARDS)


def guard_package(package: str, modules: Sequence[str] = ("*.py",), *,
                  depends_on: Sequence[str] = ()) -> list[Path]:
    """Drop the stale Numba caches of ``package``'s kernel modules; returns the files
    deleted. Call it first thing in the package's ``__init__`` (``package = __name__``).

    ``modules``: glob patterns of the kernel modules, relative to the package folder.
    ``depends_on``: what compiles into them from elsewhere: a package that guards itself
    (all its guarded sources; imported here, so it has) or a single module (its file).

    Example:
        >>> import engine  # engine guarded its kernels when imported
        >>> [p.name for p in guards()["engine"].own][-2:]
        ['weights.py', 'config.py']
    """
    folder = Path(os.path.abspath(sys.modules[package].__file__ or "")).parent
    own = [p for pattern in modules for p in sorted(folder.glob(pattern))]
    sources = dict.fromkeys(own)
    for dep in depends_on:
        if dep not in _GUARDS:
            importlib.import_module(dep)  # a package guards itself when imported
        if dep in _GUARDS:
            sources.update(dict.fromkeys(_GUARDS[dep].sources))
        else:
            spec = importlib.util.find_spec(dep)
            if spec is None or spec.origin is None:
                raise ModuleNotFoundError(f"guard_package({package!r}): no module {dep!r}")
            sources[Path(os.path.abspath(spec.origin))] = None
    _GUARDS[package] = Guard(tuple(own), tuple(sources))
    return drop_stale_caches(own, depends_on=[p for p in sources if p not in own])


def source_digest(sources: Sequence[Path]) -> str:
    """SHA-256 of the sources' names and contents."""
    h = hashlib.sha256()
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _cache_folders(source_dir: Path) -> list[Path]:
    """Where Numba may keep the cache of functions defined in ``source_dir``: the
    NUMBA_CACHE_DIR mirror, the ``__pycache__`` beside the sources, the user-wide folder
    (the locators numba.core.caching tries, in its order and naming)."""
    sub = f"{source_dir.name}_{hashlib.sha1(str(source_dir).encode()).hexdigest()}"
    folders = [source_dir / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        folders.insert(0, Path(os.environ["NUMBA_CACHE_DIR"]) / sub)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    folders.append(Path(base) / "numba" / sub)
    return folders


def drop_stale_caches(sources: Sequence[Path], *, depends_on: Sequence[Path] = ()
                      ) -> list[Path]:
    """Delete the Numba cache files of ``sources`` in every cache folder whose stamp is not
    the digest of ``sources`` and ``depends_on``, and stamp those folders; returns the
    files deleted. Call it before the modules are imported (a kernel loaded from the cache
    stays loaded). Only the folders of ``sources`` are touched: ``depends_on`` are files
    compiled into them whose own caches belong to another guard.

    Example:
        >>> import tempfile
        >>> src = Path(tempfile.mkdtemp()) / "mod.py"
        >>> _ = src.write_text("x = 1")
        >>> drop_stale_caches([src])  # no cache yet: nothing to drop; its folder is stamped
        []
        >>> (src.parent / "__pycache__" / STAMP_NAME).is_file()
        True
    """
    sources = [Path(os.path.abspath(p)) for p in sources]  # as Numba names its folders
    digest = source_digest([*sources, *(Path(os.path.abspath(p)) for p in depends_on)])
    stems: dict[Path, set[str]] = {}
    for path in sources:
        stems.setdefault(path.parent, set()).add(path.stem)
    dropped: list[Path] = []
    for source_dir, names in stems.items():
        for rank, folder in enumerate(_cache_folders(source_dir)):
            stamp = folder / STAMP_NAME
            try:
                if not folder.is_dir():
                    if rank:
                        continue  # a fallback Numba has not used: nothing to drop
                    folder.mkdir(parents=True)  # the folder Numba will use: stamp it now
                elif stamp.is_file() and stamp.read_text() == digest:
                    continue
                for f in folder.iterdir():
                    # index "<module>.<function>-<line>.pyXY.nbi", data "....N.nbc"
                    if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in names:
                        f.unlink(missing_ok=True)
                        dropped.append(f)
                _write_atomically(stamp, digest)
            except OSError:
                continue  # a folder we cannot write is one Numba cannot cache into either
    return dropped


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
