"""``backsweep strategies``, ``run`` and ``walk-forward``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sweep.cli.app import LOCATION, bad_input, main


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
        click.option("--out", type=LOCATION, default="results", show_default=True,
                     help="Results folder or an fsspec URL (s3://bucket/prefix, gs://...); "
                          "the sweep writes OUT/NAME."),
        click.option("--overwrite", is_flag=True,
                     help="Replace results of a different sweep stored under OUT/NAME "
                          "(only the files a sweep writes)."),
        click.option("--chunk-size", type=click.IntRange(min=1), default=None,
                     help="Grid combinations per task (default: calibrated to about 0.5 s "
                          "of work)."),
        click.option("--dry-run", is_flag=True,
                     help="Validate, then print the runs, windows, chunks and an estimated "
                          "time; start no cluster, write nothing."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("-q", "--quiet", is_flag=True,
                     help="No progress bar, no messages, no summary: only errors and "
                          "warnings (on stderr) and the exit code."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Also debug messages (planning, chunks, the cluster's warnings)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_sweep_options
def run(config: Path, **options: Any) -> None:
    """Run the sweep described by CONFIG.toml; resumes what is already on disk.

    Exit codes: 0 done, 1 some runs or chunks failed or the cluster was lost (rerun to
    resume), 2 bad input (nothing computed or written).
    """
    from sweep.runner import run_sweep

    _run_spec(run_sweep, config, **options)


@main.command("walk-forward")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_sweep_options
def walk_forward_command(config: Path, **options: Any) -> None:
    """Walk-forward validation of CONFIG.toml's [walk_forward] table: optimise on each
    train window (a distributed, resumable sweep), trade the winner on the test window.

    Writes OUT/NAME/folds.parquet, oos_equity.parquet and a summary in sweep.json.
    Exit codes as for `run`.
    """
    from sweep.walkforward import walk_forward

    _run_spec(walk_forward, config, **options)


def _run_spec(runner: Any, config: Path, *, target: str | None, cluster_config: Path | None,
              workers: int | None, out: Path, overwrite: bool, chunk_size: int | None,
              dry_run: bool, no_progress: bool, quiet: bool, verbose: bool) -> None:
    """Load CONFIG, run it, print the summary; exit 2 on bad input, 1 if anything failed."""
    from cluster import ClusterError
    from sweep.runner import SchedulerLostError, plan_sweep
    from sweep.spec import SpecError, SweepSpec

    configure_logging(quiet, verbose)
    try:
        spec = SweepSpec.from_toml(config)
        if dry_run:
            click.echo(plan_sweep(spec, out, chunk_size=chunk_size, workers=workers,
                                  overwrite=overwrite).describe())
            return
        result = runner(spec, target, out, workers=workers, overwrite=overwrite,
                        cluster_config=cluster_config, chunk_size=chunk_size,
                        progress=not (no_progress or quiet))
    except (SpecError, ClusterError) as exc:
        bad_input(str(exc))
    except SchedulerLostError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    if not quiet:
        click.echo(result.describe())
    if not result.ok:
        raise SystemExit(1)


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """backsweep's messages on stderr: warnings only (-q), information (default), or
    debug messages and the cluster's own warnings too (-v)."""
    import logging

    logger = logging.getLogger("backsweep")
    if not any(getattr(h, "_backsweep_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._backsweep_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING if verbose else logging.ERROR)
