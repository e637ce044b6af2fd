"""``run_sweep``: validate, plan (or resume), run chunks on a Dask cluster, store results.

The order of things is what makes a sweep safe to rerun: everything that can be wrong with
the input (the spec, the data, the output folder) is found before a cluster is started or
reached; the record is written before any chunk; chunks already on disk are checked and
never recomputed; a lost scheduler ends the call promptly with what is safe on disk.
Messages go to the ``backsweep`` logger (a notebook can silence them).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cluster
from strategies import unregister_module
from sweep.plan import TARGET_SECONDS, Plan, calibrate_chunk_size, seconds_per_combo
from sweep.record import ComputeRate, DataInfo, RecordError, SweepRecord, WindowInfo, now
from sweep.spec import ResolvedSweep, SpecError, SweepSpec
from sweep.store import ResultStore, StoreChangedError, StoreError
from sweep.trials import window_verdict
from sweep.warmup import warm_up
from sweep.worker import StoreTarget, SweepContextPlugin, run_chunk, sees_store

__all__ = ["DryRun", "SchedulerLostError", "SweepSummary", "plan_sweep", "run_sweep"]

logger = logging.getLogger("backsweep")


class SchedulerLostError(RuntimeError):
    """The Dask scheduler went away mid-sweep (killed, hung, or unreachable) and did not
    come back in time; finished chunks are on disk and a rerun resumes."""


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
    if isinstance(spec, ResolvedSweep):
        resolved = spec
    else:
        resolved = (spec if isinstance(spec, SweepSpec) else SweepSpec.from_toml(spec)).resolve()
    spec = resolved.spec
    store = ResultStore(Path(out or "results") / spec.name)
    record = _open_store(store, resolved, overwrite)  # refuses before any cluster work
    summary = SweepSummary(store.root)
    todo: list[int] = []
    if record is not None:
        todo = _resume(store, resolved, record.plan, summary)
    with contextlib.ExitStack() as stack:
        # Connect (or start the local cluster) before writing: an unreachable cluster is
        # bad input with nothing written. A finished sweep needs no cluster at all.
        c = None
        if record is None or todo:
            c = stack.enter_context(cluster.connect(_default_client(client), workers=workers,
                                                    config=cluster_config))
        if record is None:
            if overwrite and store.is_store():
                left = store.clear()
                if left:
                    logger.warning("--overwrite: left in place (not written by a sweep): %s",
                                   ", ".join(str(p.relative_to(store.root)) for p in left[:10]))
            store.clean_temp_files()
            record = _new_record(resolved, chunk_size or calibrate_chunk_size(resolved))
            store.write_record(record)
            todo = list(range(record.plan.n_chunks))
        summary.chunks_total = record.plan.n_chunks
        summary.chunks_skipped = record.plan.n_chunks - len(todo)
        if todo:
            record.status = "running"
            store.write_record(record)
            try:
                _execute(resolved, record, todo, store, c, max_in_flight, worker_writes,
                         progress, summary)
            except (KeyboardInterrupt, SchedulerLostError) as exc:
                record.status = "interrupted"
                store.write_record(record)
                if isinstance(exc, KeyboardInterrupt):
                    logger.warning("interrupted: finished chunks are kept in %s; rerun to "
                                   "resume", store.root)
                raise
    return _finish(store, resolved, record, summary, bool(todo), started)


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
        return -(-self.resolved.n_combos // self.chunk_size)

    @property
    def cpu_seconds(self) -> float:
        """Estimated compute, on one worker thread, of the chunks still to run."""
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
        lines.append(f"chunks: {self.n_chunks:,} of up to {self.chunk_size:,} parameter sets"
                     + (f" ({self.chunks_on_disk:,} already on disk)" if self.resuming
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
    store = ResultStore(Path(out or "results") / resolved.spec.name)
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
            resolved.spec.digest, resolved.panel.fingerprint):
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
    if (record.digest, record.fingerprint) != (spec.digest, resolved.panel.fingerprint):
        if overwrite:
            return None
        raise SpecError(
            f"{store.root} holds results of a different sweep (spec {record.digest}, data "
            f"{record.fingerprint[:12]}) than this one (spec {spec.digest}, data "
            f"{resolved.panel.fingerprint[:12]}); pass --overwrite to replace them, or use "
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


def _new_record(resolved: ResolvedSweep, chunk_size: int) -> SweepRecord:
    spec, panel = resolved.spec, resolved.panel
    return SweepRecord(
        name=spec.name, digest=spec.digest, spec=spec.to_dict(),
        fingerprint=panel.fingerprint,
        data=DataInfo(spec.to_dict()["data"], panel.n_bars, panel.n_assets,
                       str(panel.timestamps[0]), str(panel.timestamps[-1])),
        plan=Plan(chunk_size, resolved.n_combos, len(resolved.windows)),
        windows=[WindowInfo.of(w) for w in resolved.windows],
        n_runs=resolved.n_runs, objective=resolved.selection.objective,
        versions=cluster.package_versions(),
    )


def _finish(store: ResultStore, resolved: ResolvedSweep, record: SweepRecord,
            summary: SweepSummary, computed: bool, started: float) -> SweepSummary:
    summary.n_runs, summary.n_errors = store.count_runs()
    complete = len(store.done_chunks(record.plan.n_windows)) == record.plan.n_chunks
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


# ------------------------------------------------------------------- the cluster part
def _execute(resolved: ResolvedSweep, record: SweepRecord, todo: list[int],
             store: ResultStore, c: Any, max_in_flight: int | None, worker_writes: bool,
             progress: bool, summary: SweepSummary) -> None:
    from distributed import as_completed

    plan = record.plan
    # One context per call: a concurrent sweep of the same spec (maybe cut into other
    # chunks) never shares its tasks or its context, and unregistering it is safe.
    key = f"{resolved.spec.digest}-{resolved.panel.fingerprint[:8]}-{uuid.uuid4().hex[:8]}"
    if c.dashboard_link:
        logger.info("dashboard: %s", c.dashboard_link)
    # Same package versions everywhere, single-threaded warmed-up Numba, and the spec's
    # user modules importable on every worker (also on ones joining later).
    cluster.prepare(c, modules=resolved.spec.modules, on_unload=unregister_module,
                    warm_up=functools.partial(warm_up, strategies=[resolved.strategy.name]))
    plugin = SweepContextPlugin(key, resolved)
    try:
        c.register_plugin(plugin, name=plugin.name)
    except Exception as exc:
        raise cluster.ClusterError(
            f"the workers could not load the sweep's data and grid: {type(exc).__name__}: "
            f"{str(exc)[:500]}") from None
    watch = SchedulerWatch(c, _scheduler_window())
    summary.worker_threads = watch.sample_threads()
    slots = max_in_flight or max(4, 3 * summary.worker_threads)
    bar = _progress_bar(record.n_runs, progress)
    bar.update(store.count_runs()[0])
    pending = iter(todo)
    chunk_of: dict[Any, int] = {}
    owner = StoreTarget(str(store.root.resolve()), uuid.uuid4().hex)
    target = owner if worker_writes else None

    def submit(cid: int) -> Any:
        chunk = plan.chunk(cid)
        fut = c.submit(run_chunk, key, chunk, target, retries=2,
                       key=f"backsweep-{key}-{chunk.start}-{chunk.stop}")
        chunk_of[fut.key] = cid
        return fut

    # The token marks the folder as this call's: workers that read it write their chunks
    # themselves, and nobody (worker or client) writes once it has changed (another sweep
    # took the folder over with --overwrite).
    store.token.write_text(owner.token)
    first_submit = time.perf_counter()
    running = as_completed([submit(cid) for _, cid in zip(range(slots), pending,
                                                             strict=False)])
    watch.start(running.clear)
    try:
        for fut in running:
            cid = chunk_of.pop(fut.key)
            if watch.lost or c.status != "running":
                continue  # the scheduler's tasks are gone: nothing more to submit
            try:
                result = _result(fut, watch)
            except Exception as exc:  # e.g. KilledWorker after its retries
                if watch.lost or c.status != "running" or fut.status == "cancelled":
                    continue  # lost with the scheduler, not a failure of the chunk
                summary.failed_chunks[cid] = f"{type(exc).__name__}: {exc}"[:500]
            else:
                _store_result(store, cid, result, owner, bar, summary)
                summary.compute_seconds = time.perf_counter() - first_submit
            fut.release()
            nxt = next(pending, None)
            if nxt is not None:
                running.add(submit(nxt))
        verdict = watch.verdict(after_loss=c.status != "running")
    except BaseException:
        running.clear()
        raise
    finally:
        watch.stop()
        bar.close()
        summary.worker_threads = max(summary.worker_threads, watch.max_threads)
        _release_token(owner)
        # Don't leave the sweep's data on a long-lived cluster (teardown drops it).
        if watch.lost is None:
            with contextlib.suppress(Exception):
                c.unregister_worker_plugin(plugin.name)
    if verdict is not None:
        # A lost scheduler: nothing to wait for. Closing cancels the client's reconnect
        # attempts, which distributed logs as an error with a traceback: our message says
        # what happened instead.
        quiet = logging.getLogger("distributed.client")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            with contextlib.suppress(Exception):
                c.close(timeout=2)
        finally:
            quiet.setLevel(level)
        done = store.done_chunks(plan.n_windows)
        raise SchedulerLostError(
            f"lost the Dask scheduler at {watch.address}: {verdict}. {len(done)} of "
            f"{plan.n_chunks} chunks are safely on disk in {store.root}; rerun the same "
            "command against a live cluster to resume (finished chunks are not "
            "recomputed)")


def _result(fut: Any, watch: SchedulerWatch) -> Any:
    """A finished task's result. Fetching it goes through the scheduler (which worker
    holds it), so it waits in slices and gives up once the watch says the scheduler is
    lost: a hung scheduler would otherwise hold the sweep here forever."""
    while True:
        try:
            return fut.result(timeout=1.0)
        except TimeoutError:
            if watch.lost:
                raise SchedulerLostError(watch.lost) from None


def _store_result(store: ResultStore, cid: int, result: list[Any], owner: StoreTarget,
                  bar: Any, summary: SweepSummary) -> None:
    try:
        for window, table in enumerate(result):
            if isinstance(table, int):  # the worker wrote it
                runs = table
            else:
                store.write_chunk(window, cid, table, still_ours=lambda: sees_store(owner))
                runs = table.num_rows
            bar.update(runs)
            summary.runs_computed += runs
        summary.chunks_run += 1
    except StoreChangedError as exc:
        summary.failed_chunks[cid] = f"not written: {exc}"


def _release_token(owner: StoreTarget) -> None:
    """Remove the folder's token if it is still this call's (another call of the same
    sweep may have taken the folder over since)."""
    if sees_store(owner):
        ResultStore(owner.root).token.unlink(missing_ok=True)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="runs", unit_scale=True, disable=not enabled,
                smoothing=0.1, dynamic_ncols=True)


def _scheduler_window() -> float:
    """How long the scheduler may be unreachable before the sweep gives up: Dask's
    ``distributed.comm.timeouts.connect`` (the client's own reconnect window)."""
    import dask.config
    from dask.utils import parse_timedelta

    return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s"))


class SchedulerWatch:
    """Watches the scheduler from a thread while chunks run. Dask does not survive the
    loss of its scheduler: the client's futures are cancelled and, when it cannot
    reconnect, it closes; a hung scheduler (SIGSTOP) or a dropped network goes unnoticed
    altogether. So every ``interval`` seconds the watch asks the scheduler for its
    workers' thread counts (also the sweep's ``worker_threads``), and when that gets no
    answer within ``window`` seconds, or the client has been reconnecting that long or
    has closed, it calls ``on_lost`` (which stops the sweep's wait for results)."""

    def __init__(self, client: Any, window: float, interval: float = 1.0) -> None:
        self.client = client
        self.window = window
        self.interval = interval
        self.address = getattr(client.scheduler, "address", "?")
        self.lost: str | None = None
        self.max_threads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_lost: Any = None

    def sample_threads(self) -> int:
        threads = sum(self.client.nthreads().values())
        self.max_threads = max(self.max_threads, threads)
        return threads

    def start(self, on_lost: Any) -> None:
        self._on_lost = on_lost
        self._thread = threading.Thread(target=self._run, name="backsweep-scheduler-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def verdict(self, after_loss: bool) -> str | None:
        """Why the scheduler counts as lost (None: it does not). With ``after_loss`` (the
        client saw its connection drop) wait until the watch decides, at most the window."""
        if after_loss and self.lost is None:
            deadline = time.monotonic() + self.window + 5
            while self.lost is None and time.monotonic() < deadline:
                if self.client.status == "running":
                    self._lose("the connection dropped mid-sweep and the scheduler's tasks "
                               "were cancelled")
                time.sleep(0.1)
        return self.lost

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            if self._on_lost is not None:
                self._on_lost()

    def _run(self) -> None:
        connecting_since: float | None = None
        while not self._stop.wait(self.interval):
            status = self.client.status
            if status in ("closing", "closed"):
                self._lose(f"the client could not reconnect within {self.window:g} s and "
                           "closed")
                return
            if status == "connecting":
                connecting_since = connecting_since or time.monotonic()
                if time.monotonic() - connecting_since > self.window:
                    self._lose(f"it was unreachable for {self.window:g} s")
                    return
                continue
            connecting_since = None
            try:
                threads = self.client.sync(self.client.scheduler.ncores_running,
                                           callback_timeout=self.window)
            except TimeoutError:
                self._lose(f"it did not answer for {self.window:g} s (hung, or the network "
                           "dropped)")
                return
            except Exception:
                continue  # the connection is dropping: the status says what happens next
            self.max_threads = max(self.max_threads, sum(threads.values()))
