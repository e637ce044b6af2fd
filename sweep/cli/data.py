"""``backsweep data``: market data files for sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sweep.cli.app import main

if TYPE_CHECKING:
    from engine.panel import Panel


@main.group()
def data() -> None:
    """Create market data files (long-format Parquet, readable by Panel.read_parquet)."""


def _output_option(func: Any) -> Any:
    return click.option(
        "-o", "--output", required=True, metavar="FILE.parquet",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Parquet file to write (replaced atomically; parent folders are created).",
    )(func)


def _write(panel: Panel, output: Path) -> None:
    try:
        path = panel.write_parquet(output)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc}") from exc
    span = ""
    if panel.n_bars:
        span = f", {str(panel.timestamps[0])[:10]} .. {str(panel.timestamps[-1])[:10]}"
    click.echo(f"wrote {panel.n_bars} bars x {panel.n_assets} assets{span} -> {path}")


@data.command("synth")
@_output_option
@click.option("--assets", type=click.IntRange(min=1), default=None,
              help="Number of assets [default: 500].")
@click.option("--bars", type=click.IntRange(min=1), default=None,
              help="Number of daily bars [default: 2520].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed; same arguments, same file [default: 0].")
@click.option("--ic", type=click.FloatRange(-1, 1, min_open=True, max_open=True),
              default=None, help="Spearman IC of the ml_score feature [default: 0.05].")
@click.option("--start", default=None, metavar="DATE",
              help="First date, rolled to a business day [default: 2010-01-04].")
def data_synth(output: Path, assets: int | None, bars: int | None, seed: int | None,
               ic: float | None, start: str | None) -> None:
    """Write a synthetic panel (see engine.data.synthetic_panel)."""
    from engine.data.synthetic import synthetic_panel

    given = {"n_assets": assets, "n_bars": bars, "seed": seed, "ic": ic, "start": start}
    try:
        panel = synthetic_panel(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        # click has range-checked the numbers already; what is left is mostly --start.
        hint = "--start" if str(exc).startswith("start") else None
        raise click.BadParameter(str(exc), param_hint=hint) from exc
    _write(panel, output)


@data.command("sample")
@_output_option
@click.option("--tickers", default=None, metavar="AAPL,MSFT,...",
              help="Comma-separated subset of AAPL, FB, GOOG, IBM, MSFT [default: all].")
def data_sample(output: Path, tickers: str | None) -> None:
    """Write the real sample stocks, 2000-2013, split-adjusted (needs bokeh-sampledata)."""
    from engine.data.sample import sample_stocks

    chosen = None
    if tickers is not None:
        chosen = [t for t in (s.strip() for s in tickers.split(",")) if t]
    try:
        panel = sample_stocks(chosen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tickers") from exc
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    _write(panel, output)


