"""Running a sweep's chunks on a Dask cluster: the loop shared by grid sweeps and adaptive
searches (:func:`execute`), and the watch that ends it promptly when the scheduler is lost.

The loop keeps a bounded number of tasks in flight (``as_completed``): the work object (a
grid's :class:`GridWork`, or a search's, see sweep.search.run) gives the first chunks,
takes each result or failure and answers with the chunks to submit next. Workers that see
the output folder write their chunks' files themselves; the others return Arrow tables
that the client writes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from typing import Any

import cluster
from strategies import unregister_module
from sweep.plan import Chunk
from sweep.record import SweepRecord
from sweep.spec import ResolvedSweep
from sweep.store import ResultStore, StoreChangedError
from sweep.warmup import warm_up
from sweep.worker import StoreTarget, SweepContextPlugin, run_chunk, sees_store

__all__ = ["GridWork", "SchedulerLostError", "SchedulerWatch", "execute"]

logger = logging.getLogger("backsweep")


class SchedulerLostError(RuntimeError):
    """The Dask scheduler went away mid-sweep (killed, hung, or unreachable) and did not
    come back in time; finished chunks are on disk and a rerun resumes."""


class GridWork:
    """A grid's chunks for :func:`execute`: the chunk ids ``todo`` in order, at most
    ``slots`` in flight; each result stored as it comes."""

    def __init__(self, record: SweepRecord, todo: list[int], store: ResultStore,
                 summary: Any, max_in_flight: int | None) -> None:
        self.plan = record.plan
        self.total = record.n_runs
        self.pending = iter(todo)
        self.store = store
        self.summary = summary
        self.max_in_flight = max_in_flight
        self.owner: StoreTarget | None = None
        self.bar: Any = None
        self.slots = 0

    def progress_bar(self, enabled: bool) -> Any:
        self.bar = _progress_bar(self.total, enabled)
        self.bar.update(self.store.count_runs()[0])
        return self.bar

    def first(self, threads: int) -> list[Chunk]:
        self.slots = 0
        return self.grow(threads)

    def grow(self, threads: int) -> list[Chunk]:
        """More chunks in flight when the cluster has more threads than before (workers
        that join after the start, as a batch system's do): about three a thread."""
        slots = self.max_in_flight or max(4, 3 * threads)
        extra, self.slots = max(0, slots - self.slots), max(self.slots, slots)
        return [self.plan.chunk(cid) for _, cid in zip(range(extra), self.pending,
                                                       strict=False)]

    def _next(self) -> list[Chunk]:
        nxt = next(self.pending, None)
        return [] if nxt is None else [self.plan.chunk(nxt)]

    def collect(self, chunk: Chunk, result: Any) -> list[Chunk]:
        _store_result(self.store, chunk.chunk_id, result, self.owner, self.bar, self.summary)
        return self._next()

    def failed(self, chunk: Chunk, why: str) -> list[Chunk]:
        self.summary.failed_chunks[chunk.chunk_id] = why
        return self._next()


def execute(resolved: ResolvedSweep, record: SweepRecord, work: Any, store: ResultStore,
            c: Any, worker_writes: bool, progress: bool, summary: Any) -> None:
    """Run ``work``'s chunks on the cluster until none is left in flight. ``work`` (a
    grid's :class:`GridWork`, or a search's) gives the first chunks (``first``), takes
    each result (``collect``) or failure (``failed``) and answers with the chunks to
    submit next, and draws the progress bar (``progress_bar``)."""
    from distributed import as_completed

    # One context per call: a concurrent sweep of the same spec (maybe cut into other
    # chunks) never shares its tasks or its context, and unregistering it is safe.
    key = f"{resolved.spec.digest}-{resolved.fingerprint[:8]}-{uuid.uuid4().hex[:8]}"
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
            f"the workers could not load the sweep's data and grid: {str(exc)[:600]}"
        ) from None
    watch = SchedulerWatch(c, _scheduler_window())
    summary.worker_threads = watch.sample_threads()
    bar = work.progress_bar(progress)
    chunk_of: dict[Any, Any] = {}
    owner = StoreTarget(store.url, uuid.uuid4().hex)
    work.owner = owner
    target = owner if worker_writes else None

    def submit(chunk: Any) -> Any:
        fut = c.submit(run_chunk, key, chunk, target, retries=2,
                       key=f"backsweep-{key}-{chunk.name}")
        chunk_of[fut.key] = chunk
        return fut

    # The token marks the folder as this call's: workers that read it write their chunks
    # themselves, and nobody (worker or client) writes once it has changed (another sweep
    # took the folder over with --overwrite).
    store.token.write_text(owner.token)
    first_submit = time.perf_counter()
    threads = summary.worker_threads
    running = as_completed([submit(chunk) for chunk in work.first(threads)])
    watch.start(running.clear)
    try:
        for fut in running:
            chunk = chunk_of.pop(fut.key)
            if watch.lost or c.status != "running":
                continue  # the scheduler's tasks are gone: nothing more to submit
            try:
                result = _result(fut, watch)
            except Exception as exc:  # e.g. KilledWorker after its retries
                if watch.lost or c.status != "running" or fut.status == "cancelled":
                    continue  # lost with the scheduler, not a failure of the chunk
                nxt = work.failed(chunk, f"{type(exc).__name__}: {exc}"[:500])
            else:
                nxt = work.collect(chunk, result)
                summary.compute_seconds = time.perf_counter() - first_submit
            fut.release()
            if watch.max_threads > threads and hasattr(work, "grow"):
                threads = watch.max_threads  # workers joined: fill their slots too
                nxt = [*nxt, *work.grow(threads)]
            for chunk in nxt:
                running.add(submit(chunk))
        verdict = watch.verdict(after_loss=c.status != "running")
    except BaseException:
        running.clear()
        raise
    finally:
        watch.stop()
        bar.close()
        if watch.lost is None:  # the workers that ran the last chunks are still there
            with contextlib.suppress(Exception):
                watch.sample_threads()
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
        raise SchedulerLostError(
            f"lost the Dask scheduler at {watch.address}: {verdict}. {_on_disk(store, record)}"
            f" in {store.root}; rerun the same command against a live cluster to resume "
            "(finished chunks are not recomputed)")


def _on_disk(store: ResultStore, record: SweepRecord) -> str:
    if record.search is not None:
        n = store.count_runs()[0]
        return f"{n} run{'' if n == 1 else 's'} of the search are safely on disk"
    done = store.done_chunks(record.plan.n_windows)
    return f"{len(done)} of {record.plan.n_chunks} chunks are safely on disk"


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


def _store_result(store: ResultStore, cid: int, result: list[Any], owner: StoreTarget | None,
                  bar: Any, summary: Any) -> None:
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
