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
4. warms the JIT up (:func:`warm_up`): a one-run ``sweep.evaluate`` on a tiny synthetic
   panel of the sweep's strategy (a sweep's :func:`prepare` names it), or of every
   built-in strategy plus one tiny backtest when none is named, in a thread, so the first
   chunks are not slowed by compilation (with a warm on-disk cache this takes well under
   a second; with a cold one, warming only the sweep's strategy saves each worker ~6 s
   of compiling kernels the sweep never calls).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from cluster.connect import WORKER_ENV, ClusterError
from cluster.environment import (
    VERSIONED_PACKAGES,
    check_environment,
    compare_versions,
    mismatch_message,
    package_versions,
)
from cluster.ship import ship_modules

__all__ = ["SETUP_PLUGIN", "WorkerSetup", "choose_numba_cache_dir", "default_cache_dir",
           "prepare", "warm_up"]

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


def warm_up(n_assets: int = 4, n_bars: int = 300,
            strategies: Iterable[str] | None = None) -> dict[str, Any]:
    """Compile (or load from the on-disk cache) the kernels a sweep runs: a one-run
    ``sweep.evaluate`` on a tiny synthetic panel of each built-in strategy in
    ``strategies``. With ``strategies=None`` (a generic warm-up, e.g. building an image):
    every built-in strategy, and one backtest for ``run_backtest``'s kernels (a sweep
    never calls them). User strategies are skipped: their own parameters may not fit a
    tiny panel. Returns seconds per step and any errors (never raises for one).

    Example:
        >>> import cluster
        >>> sorted(cluster.warm_up()["seconds"])[:2]          # doctest: +SKIP
        ['backtest', 'breakout']
        >>> list(cluster.warm_up(strategies=["ma_cross"])["seconds"])   # doctest: +SKIP
        ['ma_cross']
    """
    import numpy as np

    import strategies as builtin
    import sweep
    from engine import EngineConfig, run_backtest
    from engine.data import synthetic_panel

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    panel = synthetic_panel(n_assets=n_assets, n_bars=n_bars, seed=0)
    cfg = EngineConfig()
    if strategies is None:
        t = time.perf_counter()
        try:
            run_backtest(panel, np.full(panel.close.shape, 1.0 / n_assets), cfg)
        except Exception as exc:
            errors["backtest"] = f"{type(exc).__name__}: {exc}"
        seconds["backtest"] = time.perf_counter() - t
    wanted = set(builtin.names()) if strategies is None else set(strategies)
    for name in sorted(wanted & set(builtin.names())):
        s = builtin.get(name)
        if not (getattr(s.prepare, "__module__", "") or "").startswith("strategies."):
            continue  # user strategies: their own parameters may not fit a tiny panel
        t = time.perf_counter()
        try:
            sweep.evaluate(panel, name, {}, cfg)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
        seconds[name] = time.perf_counter() - t
    return {"seconds": seconds, "errors": errors, "total": time.perf_counter() - started}


class WorkerSetup(WorkerPlugin):
    """Worker plugin: thread counts, Numba cache folder, version check, JIT warm-up.

    ``expected_versions``: the client's package versions (``check_environment``'s
    result); a worker that differs leaves the cluster. ``strategies``: what
    :func:`warm_up` compiles (None: everything). After setup, the worker's copy holds
    ``report`` (what was applied, the warm-up timings).
    """

    name = SETUP_PLUGIN

    def __init__(self, expected_versions: dict[str, str | None] | None = None, *,
                 warm_up: bool = True, numba_cache_dir: str | None = None,
                 packages: Iterable[str] = VERSIONED_PACKAGES,
                 strategies: Iterable[str] | None = None) -> None:
        self.expected_versions = dict(expected_versions) if expected_versions else None
        self.warm_up = warm_up
        self.strategies = None if strategies is None else tuple(strategies)
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
        if self.warm_up:
            report["warm_up"] = await asyncio.to_thread(warm_up,
                                                        strategies=self.strategies)
            if report["warm_up"]["errors"]:
                logger.warning("backsweep warm-up errors: %s", report["warm_up"]["errors"])


def prepare(client: Any, *, modules: Iterable[str | os.PathLike[str]] = (),
            check: bool = True, warm: bool = True, numba_cache_dir: str | None = None,
            strategies: Iterable[str] | None = None) -> dict[str, str | None]:
    """Get a cluster ready for a sweep, before any work: check that the client and every
    worker run the same package versions (``check``), register :class:`WorkerSetup` (thread
    counts, Numba cache, version check of later workers, JIT warm-up if ``warm``, of the
    named ``strategies`` only when given), then ship and import the user ``modules`` (.py
    files or package folders). Workers that join later get all of it from the scheduler.
    Returns the client's package versions.

    Raises ClusterError (versions differ, a module does not import on a worker, ...).

    Example:
        >>> import cluster
        >>> with cluster.connect("local", workers=2) as c:               # doctest: +SKIP
        ...     cluster.prepare(c, modules=["examples/user_strategy.py"])
    """
    versions = check_environment(client) if check else package_versions()
    plugin = WorkerSetup(versions if check else None, warm_up=warm,
                         numba_cache_dir=numba_cache_dir, strategies=strategies)
    try:
        client.register_plugin(plugin, name=plugin.name)
    except Exception as exc:
        raise ClusterError(f"setting the workers up failed: {exc}") from None
    modules = list(modules)
    if modules:
        ship_modules(client, modules)
    return versions
