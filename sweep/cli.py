"""The ``backsweep`` command line.

Commands are grouped by topic; each group is a ``click.Group`` hung off :func:`main`. Heavy
modules (numpy, polars, numba, dask) are imported inside the command functions, so
``backsweep --help`` stays fast and a broken optional dependency only breaks its command.
To add a command, define it with ``@main.command()`` (or a new ``@main.group()``) below,
or build it in another module and register it with ``main.add_command(...)``.

Example:
    $ backsweep data synth -o data/synth.parquet --assets 50 --bars 1000 --seed 7
    wrote 1000 bars x 50 assets, 2010-01-04 .. 2013-11-01 -> data/synth.parquet
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from engine.panel import Panel

__all__ = ["main"]


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


# --------------------------------------------------------------------------- data
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


# --------------------------------------------------------------------- strategies
def _import_user_module(spec: str) -> None:
    """Import a strategy module (a .py path or a dotted name) so that it registers itself."""
    from strategies import StrategyError, load_module

    try:
        load_module(spec)
    except StrategyError as exc:
        raise click.BadParameter(str(exc), param_hint="--module") from exc


@main.command("strategies")
@click.option("-m", "--module", "modules", multiple=True, metavar="FILE.py|pkg.mod",
              help="Import this module first (a .py path or a dotted name) so the "
                   "strategies it registers are listed. Repeatable.")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def strategies_cmd(modules: tuple[str, ...], names: tuple[str, ...]) -> None:
    """List the registered strategies with their parameters (or only NAME...).

    Each parameter shows its kind, default, bounds [low, high] or choices {a, b}, and
    what it does. Any parameter can be a grid axis of a sweep.
    """
    import textwrap

    import strategies

    for spec in modules:
        _import_user_module(spec)
    chosen = list(names) or strategies.names()
    try:
        found = [strategies.get(n) for n in chosen]
    except strategies.StrategyError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    for i, s in enumerate(found):
        if i:
            click.echo()
        click.secho(s.name, bold=True)
        for line in textwrap.wrap(" ".join(s.doc.split()), 88) or ["(no description)"]:
            click.echo(f"  {line}")
        width = max((len(p) for p in s.params), default=0)
        for pname, p in s.params.items():
            click.echo(f"    {pname:{width}}  {p.describe().rstrip()}")




# -------------------------------------------------------------------------- sweeps


def _bad_input(message: str) -> None:
    """Bad input or config: say so on stderr and exit 2 (nothing was computed or written)."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(2)


def _sweep_options(func: Any) -> Any:
    options = [
        click.option("--cluster", "target", default=None, metavar="TARGET",
                     help="'local' (default: a LocalCluster), a scheduler address "
                          "(tcp://host:8786, tls://...), scheduler-file:PATH, or a profile "
                          "name from the cluster config file."),
        click.option("--cluster-config", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Cluster profiles TOML (default: "
                     "$BACKSWEEP_CLUSTER_CONFIG or ~/.config/backsweep/clusters.toml)."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes of the local cluster (default: one per core)."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("results"), show_default=True,
                     help="Results folder; the sweep writes OUT/NAME."),
        click.option("--overwrite", is_flag=True,
                     help="Replace results of a different sweep stored under OUT/NAME."),
        click.option("--chunk-size", type=click.IntRange(min=1), default=None,
                     help="Grid combinations per task (default: calibrated to ~1 s)."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_sweep_options
def run(config: Path, target: str | None, cluster_config: Path | None, workers: int | None,
        out: Path, overwrite: bool, chunk_size: int | None, no_progress: bool) -> None:
    """Run the sweep described by CONFIG.toml; resumes what is already on disk.

    Exit codes: 0 done, 1 some runs or chunks failed, 2 bad input (nothing written).
    """
    from sweep.runner import run_sweep

    _run_spec(run_sweep, config, target, cluster_config, workers, out, overwrite, chunk_size,
              no_progress)


@main.command("walk-forward")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_sweep_options
def walk_forward_command(config: Path, target: str | None, cluster_config: Path | None,
                         workers: int | None, out: Path, overwrite: bool,
                         chunk_size: int | None, no_progress: bool) -> None:
    """Walk-forward validation of CONFIG.toml's [walk_forward] table: optimise on each
    train window (a distributed, resumable sweep), trade the winner on the test window.

    Writes OUT/NAME/folds.parquet, oos_equity.parquet and a summary in sweep.json.
    Exit codes: 0 done, 1 some runs failed, 2 bad input (nothing written).
    """
    from sweep.walkforward import walk_forward

    _run_spec(walk_forward, config, target, cluster_config, workers, out, overwrite,
              chunk_size, no_progress)


def _run_spec(runner: Any, config: Path, target: str | None, cluster_config: Path | None,
              workers: int | None, out: Path, overwrite: bool, chunk_size: int | None,
              no_progress: bool) -> None:
    """Load CONFIG, run it, print the summary; exit 2 on bad input, 1 if anything failed."""
    from cluster import ClusterError
    from sweep.spec import SpecError, SweepSpec

    try:
        spec = SweepSpec.from_toml(config)
        result = runner(spec, target, out, workers=workers, overwrite=overwrite,
                        cluster_config=cluster_config, chunk_size=chunk_size,
                        progress=not no_progress, echo=lambda m: click.echo(m, err=True))
    except (SpecError, ClusterError) as exc:
        _bad_input(str(exc))
    click.echo(result.describe())
    if not result.ok:
        raise SystemExit(1)


@main.command()
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows to show.")
@click.option("--by", "metric", default="sharpe", show_default=True,
              help="Metric to rank by (lower-is-better metrics rank ascending).")
def show(results: Path, top: int, metric: str) -> None:
    """Show a sweep's summary and its best runs by a metric."""
    import json

    import polars as pl

    from engine import METRIC_NAMES
    from engine.metrics import LOWER_IS_BETTER
    from sweep.analysis import param_columns
    from sweep.store import load_results

    meta_path = results / "sweep.json"
    if not meta_path.exists():
        _bad_input(f"{results}: no sweep.json here (not a sweep's results folder)")
    meta = json.loads(meta_path.read_text())
    if metric not in METRIC_NAMES:
        _bad_input(f"--by {metric!r} is not a metric; metrics: {', '.join(METRIC_NAMES)}")
    try:
        lf = load_results(results)
    except FileNotFoundError as exc:
        _bad_input(str(exc))
    spec = meta.get("spec", {})
    click.echo(
        f"{meta.get('name')}: strategy {spec.get('strategy')}, data {spec.get('data')}, "
        f"{meta.get('runs_written', '?')} of {meta.get('n_runs', '?')} runs, "
        f"status {meta.get('status')}"
    )
    params = [c for c in param_columns(lf) if c != "window"]
    params = ["window", *params] if "window" in lf.collect_schema().names() else params
    shown = [*params, metric, *(m for m in ("total_return", "sharpe", "max_drawdown",
                                              "n_trades") if m != metric)]
    best = (lf.filter(pl.col("error").is_null())
            .sort(pl.col(metric).fill_nan(None), descending=metric not in LOWER_IS_BETTER,
                  nulls_last=True)
            .select(shown).head(top)
            # Counts are float metrics (NaN where undefined); shown as the integers they are.
            .with_columns(pl.col(c).fill_nan(None).cast(pl.Int64)
                          for c in COUNT_METRICS if c in shown)
            .collect())
    failed = lf.filter(pl.col("error").is_not_null()).select(pl.len()).collect().item()
    with pl.Config(tbl_rows=top, tbl_cols=-1, float_precision=4, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        click.echo(best)
    if failed:
        click.echo(f"{failed} run(s) failed; see their 'error' column")
    if meta.get("summary"):
        click.echo(overfit_line(meta["summary"]))


COUNT_METRICS = ("n_trades", "n_bars", "max_drawdown_duration")


def overfit_line(summary: dict[str, Any]) -> str:
    """sweep.json's overfitting summary, a line a window: the deflated Sharpe ratio of the
    window's best run and the probability of backtest overfitting of its trials."""
    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    objective = summary.get("objective", "sharpe")
    lines = [f"overfitting, best run of each window by {objective} (DSR: probability its "
             "Sharpe ratio beats what the best of the trials would show by luck; PBO: "
             "probability of backtest overfitting):"]
    lines += [f"  window {w['window']}: DSR {num(w.get('dsr'))}, PBO {num(w.get('pbo'))}"
              f" over {w.get('n_trials', '?')} trials" + (f" ({w['pbo_note']})"
                                                          if w.get("pbo_note") else "")
              for w in summary.get("by_window", [])]
    return "\n".join(lines)


# ------------------------------------------------------------------------- report
@main.command("report")
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.html", help="HTML file to write [default: RESULTS/report.html].")
@click.option("--metric", default="sharpe", show_default=True,
              help="Metric shown by the parameter heatmaps.")
def report_cmd(results: Path, output: Path | None, metric: str) -> None:
    """Write a self-contained HTML report of a sweep's results (opens offline).

    Parameter heatmaps per window, metric histograms, the top runs, and the walk-forward
    charts and overfitting verdicts (DSR, PBO, WFE) when the sweep has them.
    Exit code 2 (nothing written) when RESULTS is not a sweep's results folder.
    """
    from sweep.report import ReportError, write_report

    try:
        path = write_report(results, output, metric=metric)
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
