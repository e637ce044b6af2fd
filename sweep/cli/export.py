"""``backsweep export``: the chosen runs' equity curves and trades, as Parquet."""

from __future__ import annotations

from pathlib import Path

import click

from sweep.cli.app import LOCATION, bad_input, main


@main.command("export")
@click.argument("results", type=LOCATION)
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="K",
              help="The K best runs of each window (by --by).")
@click.option("--by", "metric", default="sharpe", show_default=True,
              help="Metric for --top (lower-is-better metrics ascend).")
@click.option("--window", type=click.IntRange(min=0), default=None, metavar="W",
              help="With --top: only window W.")
@click.option("--run-id", "run_ids", multiple=True, metavar="ID",
              help="A run to export (repeatable); instead of --top.")
@click.option("-o", "--output", required=True, metavar="OUT",
              type=LOCATION,
              help="Folder for equity.parquet and trades.parquet (created if needed).")
@click.option("--overwrite", is_flag=True, help="Replace those files if they exist.")
@click.option("--cluster", "target", default=None, metavar="TARGET",
              help="Where many runs are replayed (as for `run`; default: a local cluster "
                   "when there are more than a few runs).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of a local cluster.")
def export_cmd(results: Path, top: int | None, metric: str, window: int | None,
               run_ids: tuple[str, ...], output: Path, overwrite: bool, target: str | None,
               workers: int | None) -> None:
    """Rebuild chosen runs of a sweep and write their equity curves and trades.

    OUT/equity.parquet: run_id, window, timestamp, equity, cash, gross_exposure.
    OUT/trades.parquet: run_id, window, and one row a trade (entry and exit bar, time,
    price, quantity, pnl, return, fees, exit reason; open trades say "open"). The runs
    are rebuilt from sweep.json and the data (checked against its fingerprint): their
    metrics equal the stored ones. Exit code 2 for bad input, with nothing written.
    """
    from cluster import ClusterError
    from engine import METRIC_NAMES
    from sweep.playback import ReplayError, export, select_runs
    from sweep.record import RecordError
    from sweep.schema import DamagedFileError

    if (top is None) == (not run_ids):
        bad_input("give either --top K (with --by) or --run-id ID ...")
    if window is not None and top is None:
        bad_input("--window W picks the window of --top K; --run-id names runs directly")
    if metric not in METRIC_NAMES:
        bad_input(f"--by {metric!r} is not a metric; metrics: {', '.join(METRIC_NAMES)}")
    try:
        ids = select_runs(results, top=top, by=metric, window=window, run_ids=run_ids)
        equity, trades = export(results, ids, output, client=target, workers=workers,
                                overwrite=overwrite)
    except (ReplayError, RecordError, DamagedFileError, FileNotFoundError,
            ClusterError) as exc:
        bad_input(str(exc))
    click.echo(f"wrote {len(ids)} run(s): {equity}, {trades}")
