"""The ``backsweep`` command group and what its commands share.

Commands are grouped by topic in the modules of this package (``data``, ``runs``,
``results``); each registers itself on :func:`main` with ``@main.command()``. Heavy modules
(numpy, polars, numba, dask) are imported inside the command functions, so
``backsweep --help`` stays fast and a broken optional dependency only breaks its command.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["LOCATION", "bad_input", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backsweep")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="backsweep")
def main() -> None:
    """backsweep: distributed parameter sweeps of trading-strategy backtests."""


class _Location(click.ParamType):
    """A folder or file: a local path, or an fsspec URL (s3://bucket/prefix, gs://...)."""

    name = "path|url"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from sweep.location import location

        return location(value)


LOCATION = _Location()


def bad_input(message: str) -> None:
    """Bad input or config: say so on stderr and exit 2 (nothing was computed or written)."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(2)
