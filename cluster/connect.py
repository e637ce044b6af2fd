"""``cluster.connect``: a Dask client for a local cluster or an existing scheduler."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ClusterError", "connect", "default_workers"]

# Parallelism comes from Dask workers; a worker's Numba must not start its own threads.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ClusterError(RuntimeError):
    """A cluster that cannot be reached or started; the message names the address."""


def default_workers() -> int:
    """One single-threaded worker process per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


@contextmanager
def connect(
    target: Any = None,
    *,
    workers: int | None = None,
    timeout: float = 20.0,
    dashboard: bool = True,
) -> Iterator[Any]:
    """A ``distributed.Client``; closes only what it started.

    ``target``: None or "local" starts a LocalCluster (processes, one thread each,
    dashboard on 127.0.0.1 only), sized by ``workers``; a scheduler address
    ("tcp://host:8786", "tls://...") connects to it; a Client is used as is.

    Example:
        >>> import cluster
        >>> with cluster.connect("local", workers=1) as client:   # doctest: +SKIP
        ...     client.submit(sum, [1, 2]).result()
        3
    """
    from distributed import Client, LocalCluster

    if isinstance(target, Client):
        yield target
        return
    if target is None or target == "local":
        n = workers or default_workers()
        if n < 1:
            raise ClusterError(f"--workers must be at least 1, got {n}")
        local = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0" if dashboard else None, env=dict(WORKER_ENV),
            silence_logs=40,
        )
        try:
            with Client(local) as client:
                yield client
        finally:
            local.close()
        return
    if not isinstance(target, str):
        raise ClusterError(f"cannot connect to {target!r}: expected 'local' or an address")
    address = target if "://" in target else f"tcp://{target}"
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({exc})"
        ) from None
    try:
        yield client
    finally:
        client.close()
