"""``run_sweep``: validate, plan (or resume), run chunks on a Dask cluster, store results.

The order of things is what makes a sweep safe to rerun: everything that can be wrong with
the input (the spec, the data, the output folder) is found before a cluster is started or
reached; the record is written before any chunk; chunks already on disk are checked and
never recomputed; a lost scheduler ends the call promptly with what is safe on disk.
Messages go to the ``backsweep`` logger (a notebook can silence them).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cluster
from cluster.connect import Starting, starts_local
from sweep.execute import (  # noqa: F401 (the cluster part, importable from here as before)
    GridWork,
    SchedulerLostError,
    SchedulerWatch,
    _release_token,
    execute,
)
from sweep.plan import (
    TARGET_SECONDS,
    Plan,
    calibrate_chunk_size,
    chunk_seconds,
    seconds_per_combo,
)
from sweep.record import ComputeRate, DataInfo, RecordError, SweepRecord, WindowInfo, now
from sweep.spec import ResolvedSweep, SpecError, SweepSpec
from sweep.store import ResultStore, StoreError
from sweep.trials import window_verdict

__all__ = ["DryRun", "SchedulerLostError", "SweepSummary", "plan_sweep", "run_sweep"]

logger = logging.getLogger("backsweep")


@dataclass
class SweepSummary:
    """What a call to run_sweep did; ``ok`` is False when runs or chunks failed."""

    path: Path
    n_runs: int = 0
    n_errors: int = 0
    chunks_total: int = 0
    chunks_run: int = 0
    chunks_skipped: int = 0
    failed_chunks: dict[int, str] = field(default_factory=dict)
    quarantined: list[Path] = field(default_factory=list)  # damaged files moved aside
    seconds: float = 0.0
    runs_computed: int = 0        # by this call (resumed chunks are not counted)
    compute_seconds: float = 0.0  # first task submitted -> last result in
    worker_threads: int = 0       # the most the cluster had while this call ran
    tasks_run: int = 0            # tasks (of one or more chunks) this call finished
    task_cost: float = 0.0        # CPU seconds a task cost the client and the scheduler
    search: Any = None            # an adaptive search: its sweep.record.SearchInfo

    @property
    def ok(self) -> bool:
        return not self.n_errors and not self.failed_chunks

    @property
    def runs_per_second(self) -> float | None:
        """The rate the cluster ran at in this call: runs computed / compute seconds
        (start-up, planning and the overfitting summary are left out)."""
        if not self.runs_computed or self.compute_seconds <= 0:
            return None
        return self.runs_computed / self.compute_seconds

    def describe(self) -> str:
        if self.search is not None:
            from sweep.search.run import describe_search

            lines = describe_search(self)
        else:
            lines = [
                f"{self.path}: {self.n_runs} runs in {self.chunks_total} "
                f"chunk{'' if self.chunks_total == 1 else 's'} "
                f"({self.chunks_run} computed now, {self.chunks_skipped} already on disk) "
                f"in {self.seconds:.1f} s"
            ]
        if self.runs_per_second is not None:
            lines.append(
                f"  computed {self.runs_computed:,} runs in {self.compute_seconds:.1f} s on "
                f"{self.worker_threads} worker thread{'' if self.worker_threads == 1 else 's'}"
                f": {self.runs_per_second:,.0f} runs/s"
            )
        if self.quarantined:
            lines.append(f"  {len(self.quarantined)} damaged file(s) moved aside and their "
                         f"chunks recomputed: {', '.join(map(str, self.quarantined[:3]))}")
        if self.n_errors:
            lines.append(f"  {self.n_errors} run(s) failed: see the 'error' column")
        for cid, why in list(self.failed_chunks.items())[:5]:
            lines.append(f"  chunk {cid} failed: {why}")
        if len(self.failed_chunks) > 5:
            lines.append(f"  ... and {len(self.failed_chunks) - 5} more failed chunks")
        if self.failed_chunks:
            lines.append("  rerun the same command to retry the missing chunks")
        return "\n".join(lines)


def run_sweep(
    spec: SweepSpec | ResolvedSweep | str | Path,
    client: Any = None,
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    cluster_config: str | Path | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    max_in_flight: int | None = None,
    worker_writes: bool = True,
    progress: bool = True,
) -> SweepSummary:
    """Run a sweep on a Dask cluster and write ``OUT/NAME``; resumes what is on disk.

    ``client``: a distributed.Client, a scheduler address, "local", a
    ``scheduler-file:PATH``, a profile name from the cluster config file
    (``cluster_config``, see docs/cluster.md), or None: the Dask client this process
    already has (a notebook's), else a local cluster of ``workers`` processes. Bad input
    (the spec, the data, an output folder that is not a sweep's or cannot be written)
    raises SpecError before any cluster work; a lost scheduler raises SchedulerLostError.

    ``overwrite`` replaces a different sweep stored under ``OUT/NAME`` (only the files a
    sweep writes; anything else there is left and named). ``worker_writes``: True
    (default) lets each worker write its chunks' files itself when it sees the output
    folder (a local cluster, or a shared filesystem; checked with a token file) and send
    them to the client otherwise; False always sends them.

    Example:
        >>> import sweep
        >>> spec = sweep.SweepSpec.from_toml("examples/ma_demo.toml")   # doctest: +SKIP
        >>> summary = sweep.run_sweep(spec, out="results")              # doctest: +SKIP
        >>> sweep.load_results("results/ma_demo").collect()             # doctest: +SKIP
    """
    started = time.perf_counter()
    target = _default_client(client)
    # A local cluster starts while the spec is validated and planned (its processes
    # spawn, import and warm up meanwhile); bad input stops it before any work.
    starting = (Starting(target, workers=workers, config=cluster_config)
                if starts_local(target) else None)
    try:
        if isinstance(spec, ResolvedSweep):
            resolved = spec
        else:
            resolved = (spec if isinstance(spec, SweepSpec)
                        else SweepSpec.from_toml(spec)).resolve()
        spec = resolved.spec
        store = ResultStore.at(out or "results", spec.name)
        record = _open_store(store, resolved, overwrite)  # refuses before any cluster work
    except BaseException:
        if starting is not None:
            starting.close_later()  # nothing to wait for: it computed nothing
        raise
    summary = SweepSummary(store.root)
    if resolved.search is not None:
        from sweep.search.run import run_search

        try:
            return run_search(resolved, record, store, summary, started,
                              client=target if starting is None else starting.client(),
                              workers=workers, cluster_config=cluster_config,
                              overwrite=overwrite, chunk_size=chunk_size,
                              worker_writes=worker_writes, progress=progress)
        finally:
            if starting is not None:
                starting.close()
    todo: list[int] = []
    if record is not None:
        todo = _resume(store, resolved, record.plan, summary)
    plan = None
    if record is None and starting is not None:
        # calibrated while the local cluster starts: not on the sweep's critical path
        plan = _new_record(resolved, chunk_size, threads=workers or cluster.default_workers())
    done_with_cluster = False
    try:
        with contextlib.ExitStack() as stack:
            # Connect (or wait for the local cluster) before writing: an unreachable
            # cluster is bad input with nothing written. A finished sweep needs none.
            c = None
            if record is None or todo:
                c = (starting.client() if starting is not None else stack.enter_context(
                    cluster.connect(target, workers=workers, config=cluster_config)))
            if record is None:
                _fresh_store(store, overwrite)
                record = plan or _new_record(resolved, chunk_size,
                                             threads=sum(c.nthreads().values()))
                store.write_record(record)
                todo = list(range(record.plan.n_chunks))
            summary.chunks_total = record.plan.n_chunks
            summary.chunks_skipped = record.plan.n_chunks - len(todo)
            if todo:
                record.status = "running"
                store.write_record(record)
                work = GridWork(record, todo, store, summary, max_in_flight,
                                fixed=chunk_size is not None)
                with interrupted(store, record):
                    execute(resolved, record, work, store, c, worker_writes, progress,
                            summary)
            done_with_cluster = True
    finally:
        if starting is not None:
            if done_with_cluster:
                starting.close_later()  # the cluster stops while the summary is computed
            else:
                starting.close()
    complete = len(store.done_chunks(record.plan.n_windows)) == record.plan.n_chunks
    try:
        return _finish(store, resolved, record, summary, bool(todo), started, complete,
                       recomputed=todo)
    finally:
        if starting is not None:
            starting.wait_closed()


def _runs_in(store: ResultStore, chunks: list[int], n_chunks: int, n_runs: int) -> int:
    """Runs stored by ``chunks`` (all of them: ``n_runs``)."""
    if len(chunks) == n_chunks:
        return n_runs
    import polars as pl

    from sweep.schema import scan_runs

    return int(scan_runs(store.root, check=False)
               .filter(pl.col("chunk_id").is_in(chunks)).select(pl.len()).collect().item())


@contextlib.contextmanager
def interrupted(store: ResultStore, record: SweepRecord,
                update: Any = None) -> Any:
    """On Ctrl-C or a lost scheduler, mark the record interrupted (``update(record)``
    first, if given) and let the exception through: what is on disk stays, a rerun
    resumes."""
    try:
        yield
    except (KeyboardInterrupt, SchedulerLostError) as exc:
        if update is not None:
            update(record)
        record.status = "interrupted"
        store.write_record(record)
        if isinstance(exc, KeyboardInterrupt):
            logger.warning("interrupted: finished chunks are kept in %s; rerun to resume",
                           store.root)
        raise


def _fresh_store(store: ResultStore, overwrite: bool) -> None:
    """Before a new sweep's record: with ``overwrite``, the other sweep's files removed
    (and what was not a sweep's named); temp files of killed writers removed."""
    if overwrite and store.is_store():
        left = store.clear()
        if left:
            logger.warning("--overwrite: left in place (not written by a sweep): %s",
                           ", ".join(str(p.relative_to(store.root)) for p in left[:10]))
    store.clean_temp_files()


@dataclass
class DryRun:
    """What ``run_sweep`` would do (``backsweep run --dry-run``): nothing is run or
    written to find it out."""

    resolved: ResolvedSweep
    path: Path
    chunk_size: int
    seconds_per_combo: float
    threads: int
    chunks_on_disk: int = 0
    resuming: bool = False

    @property
    def n_chunks(self) -> int:
        if self.resolved.search is not None:  # trials a chunk, cut by batch as they come
            return -(-self.resolved.n_runs // len(self.resolved.windows) // self.chunk_size)
        return -(-self.resolved.n_combos // self.chunk_size)

    @property
    def cpu_seconds(self) -> float:
        """Estimated compute, on one worker thread, of the chunks still to run (a
        search: all its trials, pruning none)."""
        if self.resolved.search is not None:
            # seconds_per_combo covers every window; each trial runs on every window
            # (a walk-forward's fold searches: one window each, as many trials a fold)
            return self.seconds_per_combo * self.resolved.search.trials
        todo = max(0, self.n_chunks - self.chunks_on_disk)
        return self.seconds_per_combo * min(self.resolved.n_combos, todo * self.chunk_size)

    def describe(self) -> str:
        r = self.resolved
        windows = r.windows
        lines = [
            f"{r.spec.name}: strategy {r.strategy.name}, data {r.spec.data_source} "
            f"({r.panel.n_assets} assets x {r.panel.n_bars} bars)",
            f"runs: {r.n_runs:,} ({r.n_runs // max(1, len(windows)):,} parameter sets x "
            f"{len(windows)} window{'' if len(windows) == 1 else 's'})",
        ]
        lines += [f"  window {w.index}: {w.label()} ({w.bars} bars)" for w in windows[:12]]
        if len(windows) > 12:
            lines.append(f"  ... and {len(windows) - 12} more windows")
        search = r.search
        if search is not None:
            lines[1] = (f"runs: up to {r.n_runs:,} ({search.trials:,} trials x "
                        f"{len(windows)} window{'' if len(windows) == 1 else 's'}) of a grid "
                        f"of {r.grid.size:,} combinations")
            batch = search.batch or search.default_batch(self.threads)
            lines.append(
                f"search: {search.method} ({search.sampler}), seed {search.seed}, objective "
                f"{search.objective} ({search.direction}), batch {batch}"
                + ("" if search.batch else f" (from {self.threads} worker threads)")
                + (f", prune {search.prune}" if search.prune else "")
                + (", one search a walk-forward fold" if r.folds is not None else ""))
        else:
            lines.append(f"chunks: {self.n_chunks:,} of up to {self.chunk_size:,} parameter "
                         "sets" + (f" ({self.chunks_on_disk:,} already on disk)"
                                   if self.resuming
                                   else f" (about {TARGET_SECONDS:g} s of work each)"))
        cpu = self.cpu_seconds
        lines.append(f"estimated compute: {_duration(cpu)} on one worker thread, about "
                     f"{_duration(cpu / max(1, self.threads))} on {self.threads} (plus start-up)")
        lines.append(f"output: {self.path}" + (" (resume)" if self.resuming else " (new)"))
        lines.append("dry run: no cluster started, nothing written")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_sweep(spec: SweepSpec | str | Path, out: str | Path | None = None, *,
               chunk_size: int | None = None, workers: int | None = None,
               overwrite: bool = False) -> DryRun:
    """Validate a sweep and estimate it, without running or writing anything: the runs,
    the windows, the chunks (calibrated on a sample, in this process) and the compute
    time on ``workers`` threads (default: one per local core). Raises SpecError as
    :func:`run_sweep` would.

    Example:
        >>> import sweep
        >>> from sweep.runner import plan_sweep
        >>> spec = sweep.SweepSpec(name="demo", strategy="ma_cross",
        ...                        data="synthetic:assets=3,bars=300,seed=1",
        ...                        grid={"fast": [5, 10], "slow": [20, 50]})
        >>> plan_sweep(spec, "/nonexistent/out").n_chunks
        1
    """
    resolved = (spec if isinstance(spec, SweepSpec) else SweepSpec.from_toml(spec)).resolve()
    store = ResultStore.at(out or "results", resolved.spec.name)
    try:
        store.check_location()
        record = store.read_record()
    except StoreError as exc:
        raise SpecError(str(exc)) from None
    except RecordError as exc:
        if not overwrite:
            raise SpecError(str(exc)) from None
        record = None
    if record is not None and (record.digest, record.fingerprint) != (
            resolved.spec.digest, resolved.fingerprint):
        if not overwrite:
            raise SpecError(f"{store.root} holds results of a different sweep; pass "
                            "--overwrite to replace them, or use another name or --out")
        record = None
    per_combo = seconds_per_combo(resolved)
    size = record.plan.chunk_size if record is not None else (
        chunk_size or calibrate_chunk_size(resolved, per_combo=per_combo))
    return DryRun(resolved, store.root, size, per_combo,
                  workers or cluster.default_workers(),
                  len(store.done_chunks(len(resolved.windows))) if record else 0,
                  record is not None)


def _default_client(client: Any) -> Any:
    """``client``, or for None the Dask client this process already has (a notebook's)."""
    if client is not None:
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _open_store(store: ResultStore, resolved: ResolvedSweep, overwrite: bool
                ) -> SweepRecord | None:
    """The stored record of this same sweep, to resume (None: start afresh). SpecError
    when OUT/NAME is not ours to write, cannot be written, or holds another sweep (or an
    unreadable record) and ``overwrite`` is not set."""
    try:
        store.check_location()
        store.ensure_writable()
        record = store.read_record()
    except StoreError as exc:
        raise SpecError(str(exc)) from None
    except RecordError as exc:
        if overwrite:
            return None
        raise SpecError(str(exc)) from None
    if record is None:
        return None
    spec = resolved.spec
    if (record.digest, record.fingerprint) != (spec.digest, resolved.fingerprint):
        if overwrite:
            return None
        raise SpecError(
            f"{store.root} holds results of a different sweep (spec {record.digest}, data "
            f"{record.fingerprint[:12]}) than this one (spec {spec.digest}, data "
            f"{resolved.fingerprint[:12]}); pass --overwrite to replace them, or use "
            "another name or --out")
    return record


def _resume(store: ResultStore, resolved: ResolvedSweep, plan: Plan,
            summary: SweepSummary) -> list[int]:
    """The chunks still to compute: every file on disk is checked first and a damaged one
    moved into the quarantine folder (its chunk is then recomputed)."""
    def rows_of(chunk_id: int) -> int:
        chunk = plan.chunk(chunk_id)
        return resolved.combos_table(chunk.start, chunk.stop).height

    done, moved = store.verified_chunks(plan.n_windows, resolved.schema.names, rows_of)
    for path in moved:
        logger.warning("damaged chunk file moved aside, its chunk will be recomputed: %s",
                       path)
    summary.quarantined = moved
    return [cid for cid in range(plan.n_chunks) if cid not in done]


def _new_record(resolved: ResolvedSweep, chunk_size: int | None, *, threads: int = 0
                ) -> SweepRecord:
    """A new sweep's record. Without ``chunk_size``, chunks are calibrated to last
    ``chunk_seconds(threads)`` (half a second, longer on a big cluster)."""
    spec, panel = resolved.spec, resolved.panel
    per_combo = None
    if chunk_size is None:
        per_combo = seconds_per_combo(resolved)
        chunk_size = calibrate_chunk_size(resolved, chunk_seconds(threads), per_combo)
    return SweepRecord(
        name=spec.name, digest=spec.digest, spec=spec.to_dict(),
        fingerprint=resolved.fingerprint,
        data=DataInfo(spec.to_dict()["data"], panel.n_bars, panel.n_assets,
                       str(panel.timestamps[0]), str(panel.timestamps[-1])),
        plan=Plan(chunk_size, resolved.n_combos, len(resolved.windows), per_combo),
        windows=[WindowInfo.of(w) for w in resolved.windows],
        n_runs=resolved.n_runs, objective=resolved.selection.objective,
        versions=cluster.package_versions(),
    )


def _finish(store: ResultStore, resolved: ResolvedSweep, record: SweepRecord,
            summary: SweepSummary, computed: bool, started: float, complete: bool,
            recomputed: list[int] | None = None) -> SweepSummary:
    """Counts, the overfitting summary (once complete) and the record's final state.
    ``recomputed``: the chunks this call ran, whose runs are then counted from the store
    (a chunk a worker wrote is counted by its combination positions while it runs, some
    of which its constraints may forbid: its result is never fetched)."""
    summary.n_runs, summary.n_errors = store.count_runs()
    if recomputed:
        summary.runs_computed = _runs_in(store, recomputed, record.plan.n_chunks,
                                         summary.n_runs)
    if complete:
        # A worker SIGKILLed inside a write leaves its temp file (never read); with every
        # chunk on disk and no task of this call left running, none is still being written.
        store.clean_temp_files()
    if complete and summary.n_runs and (computed or record.overfit is None):
        from sweep.schema import scan_runs

        runs = scan_runs(store.root, check=False)
        record.overfit = [window_verdict(runs, w, resolved.selection)
                          for w in resolved.windows]
    summary.seconds = time.perf_counter() - started
    record.status = "complete" if complete else "incomplete"
    record.runs_written, record.runs_failed = summary.n_runs, summary.n_errors
    record.failed_chunks = {str(k): v for k, v in summary.failed_chunks.items()}
    record.finished_at = now()
    record.seconds_last_call = round(summary.seconds, 3)
    record.compute_last_call = ComputeRate(summary.runs_computed,
                                           round(summary.compute_seconds, 3),
                                           summary.worker_threads)
    store.write_record(record)
    return summary
