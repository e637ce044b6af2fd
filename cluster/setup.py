"""Worker setup: single-threaded Numba, a writable Numba cache, a JIT warm-up, and the
environment check for workers that join later; :func:`prepare` does it all for a sweep.

:class:`WorkerSetup` is a worker plugin: the scheduler sets it up on every worker now and on
every worker that joins later. On each worker it

1. sets ``NUMBA_NUM_THREADS=1`` (and the OMP/MKL/OpenBLAS thread counts) in the worker's
   environment and reloads Numba's config so Numba never starts more threads than one.
   Environment variables only fully apply to libraries imported *after* they are set, so
   start remote workers with ``NUMBA_NUM_THREADS=1 dask worker ... --nthreads 1`` as well
   (LocalCluster and the ssh/slurm/kubernetes profiles already do);
2. picks the Numba cache folder: ``numba_cache_dir`` if given, else ``$NUMBA_CACHE_DIR`` if
   set, else Numba's default (``__pycache__`` beside the package sources) when the package
   folder is writable, else a per-user folder ``$XDG_CACHE_HOME/backsweep/numba``
   (``~/.cache/backsweep/numba``);
3. checks the worker's package versions against the client's (when given): a worker that
   differs logs why and leaves the cluster instead of computing with other code;
4. warms the JIT up: it calls the ``warm_up`` function it was given (the sweep layer
   hands over ``sweep.warmup.warm_up`` for its strategy: this package knows nothing of
   strategies or sweeps), in a thread, so the first chunks are not slowed by compilation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from cluster.base import WORKER_ENV, ClusterError
from cluster.environment import (
    VERSIONED_PACKAGES,
    check_environment,
    compare_versions,
    mismatch_message,
    package_versions,
)
from cluster.ship import ship_modules

__all__ = ["SETUP_PLUGIN", "WorkerSetup", "choose_numba_cache_dir", "default_cache_dir",
           "prepare"]

WarmUp = Callable[[], dict[str, Any]]

SETUP_PLUGIN = "backsweep-setup"
logger = logging.getLogger("backsweep.cluster")


def default_cache_dir() -> Path:
    """The per-user Numba cache folder: $XDG_CACHE_HOME/backsweep/numba."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backsweep" / "numba"


def _package_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("engine")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def _writable(folder: Path) -> bool:
    cache = folder / "__pycache__"
    target = cache if cache.exists() else folder
    return os.access(target, os.W_OK | os.X_OK)


def choose_numba_cache_dir(explicit: str | os.PathLike[str] | None = None,
                           package_dir: Path | None = None) -> str | None:
    """The NUMBA_CACHE_DIR to use, or None for Numba's default (beside the sources)."""
    if explicit:
        return os.fspath(explicit)
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    folder = package_dir if package_dir is not None else _package_dir()
    if folder is None or _writable(folder):
        return None
    return str(default_cache_dir())


def apply_numba_settings(cache_dir: str | None, threads: int = 1) -> dict[str, Any]:
    """Set the thread counts and the cache folder in this process; what was applied."""
    for key, value in WORKER_ENV.items():
        os.environ[key] = value
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    if cache_dir:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = cache_dir
    out: dict[str, Any] = {"numba_cache_dir": cache_dir or "(beside the package sources)"}
    if "numba" in sys.modules:
        import numba

        parallel = sys.modules.get("numba.np.ufunc.parallel")
        launched = bool(getattr(parallel, "_is_initialized", False))
        if launched:
            out["warning"] = ("Numba's thread pool was already started; start the worker "
                              "with NUMBA_NUM_THREADS=1 in its environment")
        else:
            numba.config.reload_config()
        out["numba_threads"] = int(numba.config.NUMBA_NUM_THREADS)
        if cache_dir and any(m.split(".")[0] in ("engine", "strategies", "sweep")
                             for m in sys.modules):
            out["warning"] = ("kernels imported before the setup plugin keep their cache "
                              "folder; set NUMBA_CACHE_DIR in the worker's environment")
    else:
        out["numba_threads"] = threads
    return out


class WorkerSetup(WorkerPlugin):
    """Worker plugin: thread counts, Numba cache folder, version check, JIT warm-up.

    ``expected_versions``: the client's package versions (``check_environment``'s
    result); a worker that differs leaves the cluster. ``warm_up``: a picklable function
    of no argument that compiles what the work will run and returns a dict with
    ``errors`` (None: no warm-up). After setup, the worker's copy holds ``report`` (what
    was applied, the warm-up's result).
    """

    name = SETUP_PLUGIN

    def __init__(self, expected_versions: dict[str, str | None] | None = None, *,
                 warm_up: WarmUp | None = None, numba_cache_dir: str | None = None,
                 packages: Iterable[str] = VERSIONED_PACKAGES) -> None:
        self.expected_versions = dict(expected_versions) if expected_versions else None
        self.warm_up = warm_up
        self.numba_cache_dir = numba_cache_dir
        self.packages = tuple(packages)
        self.report: dict[str, Any] = {}

    async def setup(self, worker: Any = None) -> None:
        # Everything before the first await runs before any plugin registered after this
        # one (a joining worker sets its plugins up concurrently, in registration order).
        report = apply_numba_settings(choose_numba_cache_dir(self.numba_cache_dir))
        self.report = report
        if self.expected_versions is not None:
            mine = package_versions(self.packages)
            addr = getattr(worker, "address", "this process")
            lines = compare_versions(self.expected_versions, {addr: mine},
                                     packages=self.packages,
                                     names={addr: getattr(worker, "name", None)})
            if lines:
                message = mismatch_message(lines)
                report["mismatch"] = message
                logger.error("backsweep: %s leaves the cluster: %s", addr, message)
                if worker is not None:
                    worker.loop.add_callback(worker.close, nanny=True,
                                             reason="backsweep-version-mismatch")
                raise RuntimeError(f"{addr}: {message}")
        if self.warm_up is not None:
            report["warm_up"] = await asyncio.to_thread(self.warm_up)
            if report["warm_up"].get("errors"):
                logger.warning("backsweep warm-up errors: %s", report["warm_up"]["errors"])


    def teardown(self, worker: Any = None) -> None:
        # Called as the worker starts closing, before it closes its connections: a
        # heartbeat in flight then fails with "Failed to communicate with scheduler during
        # heartbeat." and a traceback, which a local worker prints on the user's terminal
        # at the end of a sweep (seen on a loaded machine). Expected by then: logged
        # without the traceback. A running worker's failed heartbeat keeps it. Also called
        # when the next sweep's prepare() replaces the plugin: one filter a worker.
        if worker is None:
            return
        log = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _ClosingHeartbeat) and f.worker is worker
                   for f in log.filters):
            log.addFilter(_ClosingHeartbeat(worker))


class _ClosingHeartbeat(logging.Filter):
    """Strips the traceback from a failed-heartbeat record while ``worker`` is closing
    or closed (see WorkerSetup.teardown)."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.exc_info is not None
                and str(getattr(self.worker, "status", "")).endswith(("closing", "closed"))
                and record.getMessage().startswith("Failed to communicate with scheduler")):
            record.exc_info = None
            record.exc_text = None
        return True


def prepare(client: Any, *, modules: Iterable[str | os.PathLike[str]] = (),
            check: bool = True, warm_up: WarmUp | None = None,
            on_unload: Callable[[str], Any] | None = None,
            numba_cache_dir: str | None = None) -> dict[str, str | None]:
    """Get a cluster ready for work, before any task: check that the client and every
    worker run the same package versions (``check``), register :class:`WorkerSetup` (thread
    counts, Numba cache, version check of later workers, the ``warm_up`` function if
    given), then ship and import the user ``modules`` (.py files or package folders;
    ``on_unload`` as in :func:`ship_modules`). Workers that join later get all of it from
    the scheduler. Returns the client's package versions.

    Raises ClusterError (versions differ, a module does not import on a worker, ...).

    Example:
        >>> import cluster
        >>> with cluster.connect("local", workers=2) as c:               # doctest: +SKIP
        ...     cluster.prepare(c, modules=["examples/user_strategy.py"])
    """
    versions = check_environment(client) if check else package_versions()
    plugin = WorkerSetup(versions if check else None, warm_up=warm_up,
                         numba_cache_dir=numba_cache_dir)
    try:
        client.register_plugin(plugin, name=plugin.name)
    except Exception as exc:
        raise ClusterError(f"setting the workers up failed: {exc}") from None
    modules = list(modules)
    if modules:
        ship_modules(client, modules, on_unload=on_unload)
    return versions
