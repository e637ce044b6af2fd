"""Connecting to and starting Dask clusters for sweeps (see the sweep and cluster issues)."""

__all__: list[str] = []
