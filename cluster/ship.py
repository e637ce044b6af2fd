"""``ship_modules``: user strategy files and packages, uploaded to and imported on every
worker, including workers that join later.

Each module travels inside a worker plugin (:class:`ShipModule`) registered with
``client.register_plugin``: the scheduler keeps worker plugins and sets them up on every
worker that joins afterwards, exactly as it does for Dask's own ``UploadFile``. The plugin
writes the files into ``<worker local directory>/backsweep-modules/<digest>/``, puts that
folder first on ``sys.path`` and imports the module, so its ``strategies.register(...)``
runs on the worker.

Why not ``UploadFile``/``UploadDirectory`` themselves: ``UploadDirectory`` extracts into
the *nanny's* directory (no nanny, no upload; and not on the worker's ``sys.path``);
zipping a package for ``UploadFile`` imports it from the zip, where ``__file__``-relative
data files and (on older Numba) ``cache=True`` kernels fail; and an upload plugin plus a
separate import plugin race on a joining worker, whose plugins are set up concurrently.
One plugin that writes real files and then imports avoids all three.

Shipping a module again under the same name (an edited strategy on a long-lived cluster)
replaces it: the old copy is unloaded before the new one is imported, and the caller's
``on_unload(module)`` hook (the sweep layer passes ``strategies.unregister_module``) drops
what the old copy registered. This package imports nothing of the strategy registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from cluster.base import ClusterError

__all__ = ["MAX_SHIP_BYTES", "ShipModule", "collect_module", "ship_modules"]

MAX_SHIP_BYTES = 50 * 2**20
_PROJECT_PACKAGES = {"engine", "strategies", "sweep", "cluster"}
_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache",
              ".ruff_cache", ".ipynb_checkpoints"}


class ShipModule(WorkerPlugin):
    """Worker plugin carrying one user module (a .py file or a package folder).

    ``on_unload(module)`` runs on the worker whenever the module is unloaded (before a new
    copy is imported, and at teardown); it must be picklable (a module-level function)."""

    def __init__(self, module: str, files: dict[str, bytes], source: str,
                 on_unload: Callable[[str], Any] | None = None) -> None:
        self.module = module
        self.files = files
        self.source = source
        self.on_unload = on_unload
        digest = hashlib.blake2b(digest_size=8)
        for rel in sorted(files):
            digest.update(rel.encode() + b"\0" + files[rel] + b"\0")
        self.digest = digest.hexdigest()
        self.name = f"backsweep-module-{module}"
        self.folder: str | None = None

    def setup(self, worker: Any = None) -> None:
        where = f"worker {worker.address}" if worker is not None else "this process"
        base = Path(worker.local_directory if worker is not None else tempfile.gettempdir())
        folder = base / "backsweep-modules" / self.digest
        try:
            _write_tree(folder, self.files)
        except OSError as exc:
            raise RuntimeError(f"{where}: cannot write {self.source} into {folder}: "
                               f"{exc}") from exc
        self.folder = str(folder)
        unload_module(self.module, self.on_unload)
        sys.path.insert(0, self.folder)
        importlib.invalidate_caches()
        try:
            mod = importlib.import_module(self.module)
        except BaseException as exc:
            unload_module(self.module, self.on_unload)
            _remove_path(self.folder)
            raise RuntimeError(f"{where}: importing {self.source} (as module "
                               f"{self.module!r}) failed: {type(exc).__name__}: {exc}"
                               ) from exc
        got = getattr(mod, "__file__", None) or ""
        if not Path(got).resolve().is_relative_to(folder.resolve()):
            unload_module(self.module, self.on_unload)
            _remove_path(self.folder)
            raise RuntimeError(f"{where}: module {self.module!r} resolves to {got or mod!r}, "
                               f"not to the shipped {self.source}; rename the file")

    def teardown(self, worker: Any = None) -> None:
        unload_module(self.module, self.on_unload)
        if self.folder:
            _remove_path(self.folder)


def _write_tree(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` under ``folder`` atomically (a temp folder renamed into place)."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    for rel, data in files.items():
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    try:
        os.rename(tmp, folder)
    except OSError:
        if not folder.is_dir():
            raise
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race


def _remove_path(folder: str) -> None:
    while folder in sys.path:
        sys.path.remove(folder)


def unload_module(module: str, on_unload: Callable[[str], Any] | None = None) -> None:
    """Forget ``module`` (and its submodules), after ``on_unload(module)`` (if given) has
    dropped what the module registered elsewhere."""
    doomed = [m for m in sys.modules if m == module or m.startswith(module + ".")]
    if not doomed:
        return
    if on_unload is not None:
        on_unload(module)
    for m in doomed:
        del sys.modules[m]
    importlib.invalidate_caches()


def collect_module(path: str | os.PathLike[str]) -> tuple[str, dict[str, bytes]]:
    """(module name, {relative path: bytes}) of a .py file or a package folder."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix != ".py":
            raise ClusterError(f"cannot ship {path}: expected a .py file or a package folder")
        name, files = p.stem, {p.name: p.read_bytes()}
    elif p.is_dir():
        if not (p / "__init__.py").is_file():
            raise ClusterError(f"cannot ship {path}: a folder must be a Python package "
                               "(hold an __init__.py)")
        name, files = p.name, {}
        for root, dirs, names in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
            for fn in sorted(names):
                if fn.endswith((".pyc", ".pyo")) or fn.startswith("."):
                    continue
                full = Path(root) / fn
                files[str(full.relative_to(p.parent))] = full.read_bytes()
    else:
        raise ClusterError(f"cannot ship {path}: no such file or folder")
    if not name.isidentifier():
        raise ClusterError(f"cannot ship {path}: {name!r} is not a valid module name")
    size = sum(len(b) for b in files.values())
    if size > MAX_SHIP_BYTES:
        raise ClusterError(f"cannot ship {path}: {size / 2**20:.0f} MiB is too big to send "
                           "through the scheduler; install it on the workers instead")
    _check_name(name, p)
    return name, files


def _check_name(name: str, path: Path) -> None:
    """Refuse names that would shadow, or be shadowed by, an installed module."""
    if name in _PROJECT_PACKAGES or name in sys.stdlib_module_names \
            or name in sys.builtin_module_names:
        raise ClusterError(f"cannot ship {path}: module name {name!r} clashes with an "
                           "installed module; rename the file")
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return
    origin = getattr(spec, "origin", None) or ""
    if spec is not None and ("site-packages" in origin or "dist-packages" in origin):
        raise ClusterError(f"cannot ship {path}: module name {name!r} clashes with the "
                           f"installed {origin}; rename the file")


def ship_modules(client: Any, paths: Iterable[str | os.PathLike[str]], *,
                 on_unload: Callable[[str], Any] | None = None) -> list[str]:
    """Upload user modules to every worker (also later ones) and import them there.

    ``paths``: .py files or package folders, not installed on the workers. Each becomes
    importable on the workers under its file or folder name, and is imported at once, so
    ``strategies.register(...)`` in it runs on every worker. Returns the module names.
    ``on_unload(module)`` runs on a worker before an older copy of a module is replaced
    (see :class:`ShipModule`).
    A module that fails to import raises ClusterError with the worker's error (and is not
    left registered for later workers).

    Example:
        >>> import cluster
        >>> with cluster.connect("local", workers=2) as c:            # doctest: +SKIP
        ...     cluster.ship_modules(c, ["examples/user_strategy.py"])
        ['user_strategy']
    """
    plugins = []
    for path in paths:
        name, files = collect_module(path)
        if any(p.module == name for p in plugins):
            raise ClusterError(f"two modules named {name!r} to ship; rename one")
        plugins.append(ShipModule(name, files, os.fspath(path), on_unload))
    for plugin in plugins:
        try:
            client.register_plugin(plugin, name=plugin.name)
        except Exception as exc:
            with contextlib.suppress(Exception):  # not registered on the scheduler
                client.unregister_worker_plugin(plugin.name)
            raise ClusterError(f"shipping {plugin.source} to the workers failed: "
                               f"{exc}") from None
    return [p.module for p in plugins]
