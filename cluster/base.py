"""What every module of :mod:`cluster` shares: the error type, the single-threaded worker
environment and the default worker count. Imports nothing of backsweep, nor Dask.

Imports inside ``cluster`` point one way::

    base  <-  environment, ship, profiles  <-  setup, connect  <-  cluster/__init__
"""

from __future__ import annotations

import os

__all__ = ["WORKER_ENV", "ClusterError", "default_workers"]

# Parallelism comes from Dask workers; a worker's Numba must not start its own threads.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1"}


class ClusterError(RuntimeError):
    """A cluster that cannot be reached, started or used; the message says which and why."""


def default_workers() -> int:
    """One single-threaded worker process per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))
