"""Connecting to and starting Dask clusters for sweeps, and getting workers ready.

* :func:`connect`: a client for "local", a scheduler address (tcp://, tls://, host:port),
  ``scheduler-file:PATH``, a named profile (ssh, slurm, kubernetes, address) from
  ``~/.config/backsweep/clusters.toml``, a Client or a Cluster; closes only what it
  started. It is the one dispatcher of targets: :mod:`cluster.profiles` only reads
  profiles and builds the clusters they describe.
* :func:`prepare`: before any work, :func:`check_environment` (same package versions
  everywhere), the :class:`WorkerSetup` plugin (single-threaded Numba, cache folder, the
  caller's JIT warm-up) and :func:`ship_modules` (user strategy files imported on every worker, also
  on workers that join later).

Imports point one way: ``base`` <- ``environment``, ``ship``, ``profiles`` <- ``setup``,
``connect``; nothing here imports ``sweep``, ``strategies`` or ``engine`` (what workers
warm up or unload is handed over by the caller).

Example:
    >>> import cluster
    >>> with cluster.connect("local", workers=2) as client:   # doctest: +SKIP
    ...     cluster.prepare(client, modules=["examples/user_strategy.py"])
    ...     print(client.dashboard_link)
"""

from cluster.base import WORKER_ENV, ClusterError, default_workers
from cluster.connect import connect, make_security
from cluster.environment import VERSIONED_PACKAGES, check_environment, package_versions
from cluster.profiles import CONFIG_ENV, Profile, config_path, load_profiles
from cluster.setup import WorkerSetup, prepare
from cluster.ship import ShipModule, ship_modules

__all__ = [
    "CONFIG_ENV",
    "VERSIONED_PACKAGES",
    "WORKER_ENV",
    "ClusterError",
    "Profile",
    "ShipModule",
    "WorkerSetup",
    "check_environment",
    "config_path",
    "connect",
    "default_workers",
    "load_profiles",
    "make_security",
    "package_versions",
    "prepare",
    "ship_modules",
]
