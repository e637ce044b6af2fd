"""Keep Numba's disk cache of the kernels in step with the sources they depend on.

Numba keys a cached function on its own file only: a kernel that calls (or inlines, or
reads a constant from) a function in another file keeps its old machine code after that
other file changes (numba/numba#8396, not merged). ``simulate`` compiles the metrics of
``engine/nb/metrics.py`` into itself, and ``sweep.kernels.evaluate_block`` the whole
engine, so an edited metric would silently go on giving the old numbers, e.g. after a
``git pull`` into an editable install. ``engine`` therefore calls
:func:`drop_stale_caches` on :data:`KERNEL_SOURCES` when it is first imported, before any
kernel is compiled or loaded: a cache folder whose stamp is not the digest of all those
sources loses the cache files of those sources, and gets the new stamp.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["KERNEL_SOURCES", "drop_stale_caches", "source_digest"]

_ROOT = Path(__file__).resolve().parent.parent
# Every file a compiled kernel can depend on: the kernels' modules, and the modules they
# take constants and record layouts from.
KERNEL_SOURCES: tuple[Path, ...] = (
    *sorted((_ROOT / "engine" / "nb").glob("*.py")),
    _ROOT / "engine" / "config.py",
    *sorted((_ROOT / "strategies").glob("*.py")),
    _ROOT / "sweep" / "kernels.py",
    _ROOT / "sweep" / "overfit.py",
)
STAMP_NAME = "backsweep-kernels.sha256"


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


def drop_stale_caches(sources: Sequence[Path] = KERNEL_SOURCES) -> list[Path]:
    """Delete the Numba cache files of ``sources`` in every cache folder whose stamp is not
    the sources' digest, and stamp those folders; returns the files deleted. Call it
    before the modules are imported (a kernel loaded from the cache stays loaded).

    Example:
        >>> drop_stale_caches()  # engine did it when imported: nothing left to do
        []
    """
    sources = [Path(os.path.abspath(p)) for p in sources]  # as Numba names its folders
    digest = source_digest(sources)
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
