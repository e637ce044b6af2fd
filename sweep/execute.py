"""Running a sweep's chunks on a Dask cluster: the loop shared by grid sweeps and adaptive
searches (:func:`execute`), and the watch that ends it promptly when the scheduler is lost.

The loop keeps a bounded number of tasks in flight (``as_completed``): the work object (a
grid's :class:`GridWork`, or a search's, see sweep.search.run) gives the first tasks,
takes each result or failure and answers with the tasks to submit next. Workers that see
the output folder write their chunks' files themselves; the others return Arrow tables
that the client writes.

What a task costs the client and the scheduler is what limits a big cluster (each is one
process): finished tasks are taken in batches and their successors submitted in one
message; a task whose worker wrote its files is never fetched (its result type says so);
and a grid task holds as many consecutive chunks as keep the client and the scheduler
under ``sweep.plan.ORCHESTRATION_SHARE`` of a core at the cluster's thread count, at the
cost a task is measured to have during the sweep (:class:`Pacer`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from typing import Any

import cluster
from strategies import unregister_module
from sweep.plan import TASK_COST, Chunk, chunks_per_task
from sweep.record import SweepRecord
from sweep.spec import ResolvedSweep
from sweep.store import ResultStore, StoreChangedError
from sweep.warmup import warm_up
from sweep.worker import (
    StoreTarget,
    SweepContextPlugin,
    Written,
    run_chunk,
    run_chunks,
    sees_store,
)

__all__ = ["GridWork", "Pacer", "SchedulerLostError", "SchedulerWatch", "execute"]

logger = logging.getLogger("backsweep")
_WRITTEN = f"{Written.__module__}.{Written.__qualname__}"  # Future.type of such a result


class SchedulerLostError(RuntimeError):
    """The Dask scheduler went away mid-sweep (killed, hung, or unreachable) and did not
    come back in time; finished chunks are on disk and a rerun resumes."""


class GridWork:
    """A grid's chunks for :func:`execute`: the chunk ids ``todo`` in order, in tasks of
    ``per_task`` consecutive chunks (set by the :class:`Pacer`; always one with
    ``fixed``), at most ``slots`` tasks in flight; each result stored as it comes."""

    def __init__(self, record: SweepRecord, todo: list[int], store: ResultStore,
                 summary: Any, max_in_flight: int | None, *, fixed: bool = False) -> None:
        self.plan = record.plan
        self.total = record.n_runs
        self.pending = collections.deque(todo)
        self.store = store
        self.summary = summary
        self.max_in_flight = max_in_flight
        self.fixed = fixed
        self.per_task = 1
        self.chunk_seconds = self.plan.chunk_seconds
        self.owner: StoreTarget | None = None
        self.bar: Any = None
        self.slots = 0

    def progress_bar(self, enabled: bool) -> Any:
        self.bar = _progress_bar(self.total, enabled)
        self.bar.update(self.store.count_runs()[0])
        return self.bar

    def first(self, threads: int) -> list[tuple[Chunk, ...]]:
        self.slots = 0
        return self.grow(threads)

    def grow(self, threads: int) -> list[tuple[Chunk, ...]]:
        """More tasks in flight when the cluster has more threads than before (workers
        that join after the start, as a batch system's do): about three a thread."""
        slots = self.max_in_flight or max(4, 3 * threads)
        extra, self.slots = max(0, slots - self.slots), max(self.slots, slots)
        return self._take(extra)

    def pace(self, threads: int, pacer: Pacer) -> None:
        """Chunks a task from now on (one with ``fixed``)."""
        if not self.fixed:
            self.per_task = pacer.chunks_per_task(threads, self.chunk_seconds,
                                                  len(self.pending))

    def _take(self, tasks: int) -> list[tuple[Chunk, ...]]:
        out = []
        for _ in range(tasks):
            if not self.pending:
                break
            task = [self.pending.popleft()]
            while (len(task) < self.per_task and self.pending
                   and self.pending[0] == task[-1] + 1):
                task.append(self.pending.popleft())
            out.append(tuple(self.plan.chunk(cid) for cid in task))
        return out

    def collect(self, task: tuple[Chunk, ...], result: Any) -> list[tuple[Chunk, ...]]:
        windows = self.plan.n_windows
        for k, chunk in enumerate(task):
            if isinstance(result, Written) or result is None:  # the worker wrote them all
                # Its result is never fetched: counted by its combination positions (some
                # may be forbidden by constraints) until the store's count replaces it.
                self.bar.update(min(chunk.size * windows, max(0, self.total - self.bar.n)))
                self.summary.runs_computed += chunk.size * windows
                self.summary.chunks_run += 1
            else:
                _store_result(self.store, chunk.chunk_id, result[k], self.owner, self.bar,
                              self.summary)
        return self._take(1)

    def failed(self, task: tuple[Chunk, ...], why: str) -> list[tuple[Chunk, ...]]:
        for chunk in task:
            self.summary.failed_chunks[chunk.chunk_id] = why
        return self._take(1)


class Pacer:
    """What a task costs the client and the scheduler, measured as the sweep runs: CPU
    seconds of this process (the client, and the scheduler too when it runs here, as a
    LocalCluster's does) and of a separate scheduler's process (read by the watch), over
    the tasks finished meanwhile. It starts from ``sweep.plan.TASK_COST``."""

    def __init__(self, c: Any, watch: SchedulerWatch) -> None:
        self.watch = watch
        self.cost = TASK_COST
        self.tasks = 0
        self.submitted = 0
        self.measured = 0
        self.watch.scheduler_cpu = None if _scheduler_is_here(c) else 0.0
        self._mark = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        sched = self.watch.scheduler_cpu or 0.0
        # a task is submitted once and finishes once: half of its cost each
        return (time.monotonic(), time.process_time(), sched,
                0.5 * (self.submitted + self.tasks))

    def submitted_tasks(self, tasks: int) -> None:
        self.submitted += tasks

    def finished(self, tasks: int) -> None:
        """``tasks`` more tasks done; every couple of seconds, a new measurement."""
        self.tasks += tasks
        now = self._now()
        t0, client0, sched0, tasks0 = self._mark
        if now[0] - t0 < 2.0 or now[3] - tasks0 < 8:
            return
        cost = ((now[1] - client0) + max(0.0, now[2] - sched0)) / (now[3] - tasks0)
        self.cost = cost if self.measured == 0 else 0.5 * (self.cost + cost)
        self.measured += 1
        self._mark = now

    def chunks_per_task(self, threads: int, chunk_seconds: float | None,
                        pending: int) -> int:
        return chunks_per_task(threads, chunk_seconds or 0.5, self.cost, pending)


def execute(resolved: ResolvedSweep, record: SweepRecord, work: Any, store: ResultStore,
            c: Any, worker_writes: bool, progress: bool, summary: Any) -> None:
    """Run ``work``'s tasks on the cluster until none is left in flight. ``work`` (a
    grid's :class:`GridWork`, or a search's) gives the first tasks (``first``), takes
    each result (``collect``) or failure (``failed``) and answers with the tasks to
    submit next, and draws the progress bar (``progress_bar``). A grid's task is a tuple
    of chunks (``run_chunks``), a search's one chunk (``run_chunk``)."""
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
    pacer = Pacer(c, watch)
    bar = work.progress_bar(progress)
    task_of: dict[Any, Any] = {}
    owner = StoreTarget(store.url, uuid.uuid4().hex)
    work.owner = owner
    target = owner if worker_writes else None

    def submit(tasks: list[Any]) -> list[Any]:
        """One message to the scheduler for all of ``tasks``."""
        grid = [t for t in tasks if isinstance(t, tuple)]
        other = [t for t in tasks if not isinstance(t, tuple)]
        futures = []
        for fn, group in ((run_chunks, grid), (run_chunk, other)):
            if not group:
                continue
            names = [f"backsweep-{key}-{_task_name(t)}" for t in group]
            n = len(group)
            futures += c.map(fn, [key] * n, group, [target] * n, key=names, retries=2,
                             pure=False)
            task_of.update(zip(names, group, strict=True))
        pacer.submitted_tasks(len(futures))
        return futures

    # The token marks the folder as this call's: workers that read it write their chunks
    # themselves, and nobody (worker or client) writes once it has changed (another sweep
    # took the folder over with --overwrite).
    store.token.write_text(owner.token)
    first_submit = time.perf_counter()
    threads = summary.worker_threads
    if hasattr(work, "pace"):
        work.pace(threads, pacer)
    running = as_completed(submit(work.first(threads)))
    watch.start(running.clear)
    try:
        for batch in running.batches():
            if watch.lost or c.status != "running":
                continue  # the scheduler's tasks are gone: nothing more to submit
            nxt: list[Any] = []
            try:
                outcomes = _outcomes(c, batch, task_of, watch)
            except SchedulerLostError:
                continue  # the watch has the verdict; it cleared what is running
            for task, result, error in outcomes:
                if error is not None:
                    nxt += work.failed(task, error)
                else:
                    nxt += work.collect(task, result)
                    summary.compute_seconds = time.perf_counter() - first_submit
            for fut in batch:
                fut.release()
            pacer.finished(len(batch))
            if watch.max_threads > threads and hasattr(work, "grow"):
                threads = watch.max_threads  # workers joined: fill their slots too
                work.pace(threads, pacer)
                nxt += work.grow(threads)
            elif hasattr(work, "pace"):
                work.pace(threads, pacer)
            if nxt:
                running.update(submit(nxt))
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
        summary.task_cost = pacer.cost
        summary.tasks_run = pacer.tasks
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


def _task_name(task: Any) -> str:
    """What tells a task apart in its key: its chunks' combination range."""
    if isinstance(task, tuple):
        first, last = task[0], task[-1]
        return first.name if first is last else f"{first.start}-{last.stop}"
    return task.name


def _outcomes(c: Any, batch: list[Any], task_of: dict[Any, Any], watch: SchedulerWatch
              ) -> list[tuple[Any, Any, str | None]]:
    """(task, result, None) or (task, None, why it failed) for each finished future of
    ``batch``; futures lost with the scheduler (or cancelled) are left out. Results that
    the workers wrote themselves are not fetched; the others are, in one request."""
    out: list[tuple[Any, Any, str | None]] = []
    fetch = []
    for fut in batch:
        task = task_of.pop(fut.key)
        if fut.status == "finished":
            if fut.type == _WRITTEN:
                out.append((task, None, None))
            else:
                fetch.append((fut, task))
        elif fut.status == "error":  # e.g. KilledWorker after its retries
            exc = fut.exception()
            out.append((task, None, f"{type(exc).__name__}: {exc}"[:500]))
        # cancelled: lost with the scheduler, not a failure of the chunk
    if fetch:
        try:
            results = _gather(c, [f for f, _ in fetch], watch)
        except SchedulerLostError:
            raise
        except Exception:  # one of them failed meanwhile: fetch them one by one
            results = None
        for k, (fut, task) in enumerate(fetch):
            if results is not None:
                out.append((task, results[k], None))
                continue
            try:
                out.append((task, _result(fut, watch), None))
            except SchedulerLostError:
                raise
            except Exception as exc:
                if watch.lost or c.status != "running" or fut.status == "cancelled":
                    continue
                out.append((task, None, f"{type(exc).__name__}: {exc}"[:500]))
    return out


def _gather(c: Any, futures: list[Any], watch: SchedulerWatch) -> list[Any]:
    """The results of finished futures, in one request, waited on in slices as in
    :func:`_result` (one request throughout: a large batch may take longer than a slice
    to arrive)."""
    import asyncio

    pending = asyncio.run_coroutine_threadsafe(c._gather(futures), c.loop.asyncio_loop)
    while True:
        try:
            return pending.result(timeout=1.0)
        except TimeoutError:
            if watch.lost:
                pending.cancel()
                raise SchedulerLostError(watch.lost) from None


def _scheduler_is_here(c: Any) -> bool:
    """Does the scheduler run in this process (a LocalCluster started here)?"""
    from distributed.scheduler import Scheduler

    if isinstance(getattr(getattr(c, "cluster", None), "scheduler", None), Scheduler):
        return True
    try:
        return c.run_on_scheduler(os.getpid) == os.getpid()
    except Exception:
        return False


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
        # CPU seconds of a scheduler that runs in another process, read every few
        # seconds when set to a number (None: not read; see Pacer)
        self.scheduler_cpu: float | None = None
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
        cpu_read = time.monotonic()
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
            if self.scheduler_cpu is not None and time.monotonic() - cpu_read > 4.0:
                cpu_read = time.monotonic()
                with contextlib.suppress(Exception):  # a scheduler that runs no client code
                    self.scheduler_cpu = float(self.client.sync(
                        self.client._run_on_scheduler, time.process_time,
                        callback_timeout=self.window))
