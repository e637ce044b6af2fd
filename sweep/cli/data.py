"""``backsweep data``: market data files for sweeps (synthetic, sample, imported)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sweep.cli.app import bad_input, main

if TYPE_CHECKING:
    from engine.panel import Panel

# How many of the assets missing the most bars `data import` lists.
_WORST_SHOWN = 5


@main.group()
def data() -> None:
    """Create market data files (long-format Parquet, readable by Panel.read_parquet)."""


def _output_options(func: Any) -> Any:
    func = click.option(
        "--overwrite", is_flag=True,
        help="Replace FILE if it exists (a folder is never replaced).",
    )(func)
    return click.option(
        "-o", "--output", required=True, metavar="FILE.parquet",
        type=click.Path(path_type=Path),
        help="Parquet file to write (atomically; parent folders are created).",
    )(func)


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that must not or cannot be written, before any work is done."""
    if output.is_dir():
        bad_input(f"{output} is a directory; a data command writes a file and never "
                  "replaces a folder")
    if output.exists() or output.is_symlink():
        if not output.is_file():
            bad_input(f"{output} exists and is not a regular file; it is never replaced")
        if not overwrite:
            bad_input(f"{output} exists; pass --overwrite to replace it")
    # The nearest folder that exists must be a writable folder (it gets the new ones).
    ancestor = output.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        bad_input(f"cannot write {output}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        bad_input(f"cannot write {output}: {ancestor} is not writable (permission denied)")
    # Permissions do not tell everything (read-only mounts, /proc, root): try a file there.
    probe = ancestor / f".backsweep-probe-{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as exc:
        bad_input(f"cannot write {output}: cannot create files in {ancestor} "
                  f"({exc.strerror or exc})")


def _write(panel: Panel, output: Path) -> None:
    """Write atomically; on failure remove the folders this call created, then exit 2."""
    from engine.data.summary import format_span

    created: list[Path] = []
    try:
        folder = output.absolute().parent
        while not folder.exists():
            created.append(folder)
            folder = folder.parent
        for d in reversed(created):
            d.mkdir()
        path = panel.write_parquet(output)
    except OSError as exc:
        for d in created:  # innermost first; only empty folders made here
            try:
                d.rmdir()
            except OSError:
                break
        bad_input(f"cannot write {output}: {exc.strerror or exc}")
    span = f", {format_span(panel.timestamps)}" if panel.n_bars else ""
    click.echo(f"wrote {panel.n_bars} bars x {panel.n_assets} assets{span} -> {path}")


@data.command("synth")
@_output_options
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
def data_synth(output: Path, overwrite: bool, assets: int | None, bars: int | None,
               seed: int | None, ic: float | None, start: str | None) -> None:
    """Write a synthetic panel (see engine.data.synthetic_panel)."""
    from engine.data.synthetic import synthetic_panel

    _check_output(output, overwrite)
    given = {"n_assets": assets, "n_bars": bars, "seed": seed, "ic": ic, "start": start}
    try:
        panel = synthetic_panel(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        # click has range-checked the numbers already; what is left is mostly --start.
        hint = "--start" if str(exc).startswith("start") else None
        raise click.BadParameter(str(exc), param_hint=hint) from exc
    _write(panel, output)


@data.command("sample")
@_output_options
@click.option("--tickers", default=None, metavar="AAPL,MSFT,...",
              help="Comma-separated subset of AAPL, FB, GOOG, IBM, MSFT [default: all].")
def data_sample(output: Path, overwrite: bool, tickers: str | None) -> None:
    """Write the real sample stocks, 2000-2013, split-adjusted (needs bokeh-sampledata)."""
    from engine.data.sample import sample_stocks

    _check_output(output, overwrite)
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


@data.command("import")
@click.argument("sources", nargs=-1, required=True, metavar="SRC...")
@_output_options
@click.option("--adjust", is_flag=True,
              help="Scale open/high/low/close by adj close / close (needs both columns).")
@click.option("--features", default=None, metavar="FILE",
              help="File, folder or glob of features joined onto the bars: long (date, "
                   "asset, one column per feature) or wide (feature = the file's stem).")
def data_import(sources: tuple[str, ...], output: Path, overwrite: bool, adjust: bool,
                features: str | None) -> None:
    """Convert market data files to one long Parquet panel, checked once.

    SRC: a CSV, CSV.gz or Parquet file (long; wide, one close column per asset; or one
    asset's OHLCV, named by the file stem), a folder or a quoted glob of per-asset files, or
    a hive dataset (symbol=XYZ/). Several SRC are merged; an asset may come from only one.
    Prints the shape, date range, bar spacing and missing bars. See docs/data.md.
    """
    from engine.data.files import load_panel
    from engine.panel import PanelError

    _check_output(output, overwrite)
    try:
        panel = load_panel(list(sources), adjust=adjust, features=features)
    except PanelError as exc:
        bad_input(str(exc))
    except OSError as exc:
        bad_input(f"cannot read {exc.filename or ' '.join(sources)}: {exc.strerror or exc}")
    for line in _describe(panel):
        click.echo(line)
    _write(panel, output)


def _describe(panel: Panel) -> list[str]:
    """What `data import` prints about a panel: shape, span, bar spacing, missing bars."""
    from engine.data.summary import bar_spacing, format_spacing, format_span, missing_bars

    lines = [
        f"panel: {panel.n_bars} bars x {panel.n_assets} assets, {format_span(panel.timestamps)}",
        f"bar spacing: {format_spacing(bar_spacing(panel.timestamps))} (median)",
    ]
    if panel.features:
        lines.append(f"features: {', '.join(sorted(panel.features))}")
    gaps = missing_bars(panel)
    short = gaps.filter(gaps["missing"] > 0)
    if short.height == 0:
        lines.append("missing bars: none (every asset has a close on every bar from its "
                     "first to its last)")
        return lines
    total, span = int(short["missing"].sum()), int(gaps["span"].sum())
    lines.append(f"missing bars: {total:,} of {span:,} ({total / span:.2%}) in {short.height} "
                 f"of {panel.n_assets} assets, counted from each asset's first to its last "
                 f"bar; most missing:")
    for asset, n_span, n_missing in short.head(_WORST_SHOWN).iter_rows():
        lines.append(f"  {asset}: {n_missing:,} of {n_span:,} bars ({n_missing / n_span:.2%})")
    if short.height > _WORST_SHOWN:
        lines.append(f"  ... and {short.height - _WORST_SHOWN} more assets")
    return lines
