"""Connecting to and starting Dask clusters for sweeps.

Example:
    >>> import cluster
    >>> with cluster.connect("local", workers=2) as client:   # doctest: +SKIP
    ...     print(client.dashboard_link)
"""

from cluster.connect import ClusterError, connect, default_workers

__all__ = ["ClusterError", "connect", "default_workers"]
