"""backsweep's sweep layer: parameter grids of backtests, run on Dask, and the CLI."""

__all__: list[str] = []
