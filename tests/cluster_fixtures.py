"""Helpers for the sweep tests that run real clusters and real subprocesses.

Not a test module: ``test_sweep_*.py`` import it (pytest puts ``tests/`` on ``sys.path``).

* :class:`DaskProcesses` starts ``dask scheduler`` and ``dask worker`` subprocesses on
  127.0.0.1 (each in its own process group, so a kill takes the nanny and its worker).
* :func:`run_cli` / :func:`start_cli` run ``backsweep`` in a subprocess.
* :func:`wait_for` polls a condition with a deadline (no fixed sleeps).
* :class:`TaskCounter` is a scheduler plugin that sees the sweep from the scheduler's
  side: tasks held at once (peak), tasks each worker computed, compute times.
* ``DaskProcesses.add_worker(hide=[...])`` starts a worker in its own mount namespace with
  an empty tmpfs over each folder given: a worker on another machine, that does not see
  the client's output folder. ``pythonpath=[...]`` puts folders first on its PYTHONPATH
  (another copy of a package: a worker with other code).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl
from distributed.diagnostics.plugin import SchedulerPlugin

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
BACKSWEEP = str(BIN / "backsweep")
DASK = str(BIN / "dask")

# Columns every runs table has besides the parameters (DESIGN.md, "Result store").
BASE_COLUMNS = ("run_id", "chunk_id", "strategy", "window", "window_start", "window_end")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for backsweep / dask subprocesses: the package and tests/ importable,
    one Numba thread, no colours or progress noise."""
    env = dict(os.environ)
    paths = [str(REPO), str(TESTS), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)),
        NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1", NO_COLOR="1", TQDM_DISABLE="1",
    )
    env.update(extra)
    return env


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL,
               wait: float = 10.0) -> None:
    """Send ``sig`` to the process group of ``proc`` (started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(wait)


def part_files(root: Path) -> list[Path]:
    """Complete chunk files of a sweep folder ``OUT/NAME`` (what a reader may see)."""
    return sorted((root / "runs").glob("window=*/part-*.parquet"))


def read_runs(root: Path) -> pl.DataFrame:
    """The whole runs table of ``OUT/NAME``, in a canonical order."""
    return (pl.scan_parquet(root / "runs" / "**" / "part-*.parquet", hive_partitioning=True)
            .collect().sort("run_id"))


def read_meta(root: Path) -> dict[str, Any]:
    return json.loads((root / "sweep.json").read_text())


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- CLI
def run_cli(*args: str | os.PathLike[str], timeout: float = 180.0, cwd: Path | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
    """``backsweep ARGS`` to completion (stdout/stderr captured as text)."""
    return subprocess.run(
        [BACKSWEEP, *map(str, args)], capture_output=True, text=True, timeout=timeout,
        cwd=cwd or REPO, env=subprocess_env(**env), stdin=subprocess.DEVNULL,
    )


def start_cli(*args: str | os.PathLike[str], log: Path, cwd: Path | None = None,
              **env: str) -> subprocess.Popen[bytes]:
    """``backsweep ARGS`` in the background, in its own process group; output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [BACKSWEEP, *map(str, args)], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=cwd or REPO, env=subprocess_env(**env),
            start_new_session=True,
        )


# ----------------------------------------------------------------- dask processes
class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` subprocesses on 127.0.0.1.

    Every process gets its own session (process group); :meth:`close` kills them all.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.scheduler_file = tmp / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._client: Any = None

    # -- starting
    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        log = self.tmp / log_name
        self._logs.append(log)
        with open(log, "wb") as out:
            return subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.tmp, env=subprocess_env(**(env or {})), start_new_session=True,
            )

    def start_scheduler(self, timeout: float = 60.0) -> str:
        self.scheduler_file.unlink(missing_ok=True)
        self.scheduler = self._spawn(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.scheduler_file)],
            "scheduler.log",
        )
        wait_for(lambda: self._scheduler_address() or self._died(self.scheduler), timeout,
                 "the dask scheduler to write its scheduler file")
        if self.scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited:\n{self.logs()}")
        return self.address

    def _scheduler_address(self) -> str | None:
        try:
            return json.loads(self.scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            return None

    @staticmethod
    def _died(proc: subprocess.Popen[bytes] | None) -> bool:
        return proc is not None and proc.poll() is not None

    @property
    def address(self) -> str:
        address = self._scheduler_address()
        assert address, "scheduler not started"
        return address

    def add_worker(self, name: str | None = None, *, hide: Iterable[Path] = (),
                   pythonpath: Iterable[Path] = ()) -> subprocess.Popen[bytes]:
        """Start a ``dask worker`` (one thread). ``name``: its Dask name. ``hide``: folders
        this worker must not see (an empty tmpfs is mounted over each, in a mount
        namespace of its own: root, or unprivileged user namespaces, needed).
        ``pythonpath``: folders put first on its PYTHONPATH."""
        args = [DASK, "worker", "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                "--host", "127.0.0.1", "--scheduler-file", str(self.scheduler_file)]
        if name is not None:
            args += ["--name", name]
        hide = [Path(h) for h in hide]
        if hide:
            for folder in hide:
                folder.mkdir(parents=True, exist_ok=True)
            script = ('while [ "$1" != -- ]; do mount -t tmpfs backsweep-hidden "$1" || '
                      'exit 97; shift; done; shift; exec "$@"')
            user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
            args = ["unshare", *user, "--mount", "--propagation", "private", "sh", "-c",
                    script, "sh", *map(str, hide), "--", *args]
        env = None
        if pythonpath:
            base = subprocess_env()
            env = {"PYTHONPATH": os.pathsep.join([*map(str, pythonpath),
                                                  base["PYTHONPATH"]])}
        proc = self._spawn(args, f"worker-{name or len(self.workers)}.log", env=env)
        self.workers.append(proc)
        return proc

    def alive_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def client(self) -> Any:
        """A client of this scheduler for the test's own bookkeeping (not the sweep's)."""
        if self._client is None:
            from distributed import Client

            self._client = Client(self.address, timeout=30)
        return self._client

    def wait_workers(self, n: int, timeout: float = 90.0) -> None:
        """Wait until the scheduler sees exactly ``n`` workers."""
        client = self.client()
        wait_for(lambda: len(client.scheduler_info(n_workers=-1)["workers"]) == n, timeout,
                 f"{n} dask workers to connect")

    def ensure_workers(self, n: int) -> None:
        """Start workers until ``n`` are alive, then wait for the scheduler to see them."""
        while len(self.alive_workers()) < n:
            self.add_worker()
        self.wait_workers(n)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a whole worker (nanny and worker process): a machine that vanished."""
        kill_group(proc, signal.SIGKILL)

    # -- stopping
    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close(timeout=5)
            self._client = None
        for proc in [*self.workers, self.scheduler]:
            if proc is not None:
                kill_group(proc, signal.SIGKILL)

    def logs(self, tail: int = 3000) -> str:
        out = []
        for log in self._logs:
            with contextlib.suppress(OSError):
                out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)


class TaskCounter(SchedulerPlugin):
    """Scheduler plugin: what the scheduler holds and who computed what, for any client's
    tasks. ``peak``: the most tasks the scheduler held at once (every key not yet
    forgotten: waiting, queued, processing, in memory or erred); ``peak_in_flight``: the
    most tasks not finished yet (waiting, queued, no-worker, processing) at once;
    ``done_by``: tasks each worker (by name) finished; ``seconds``: each finished task's
    compute time.

    Install with :func:`count_tasks` before the work starts; read with
    :func:`task_counts`. The scheduler imports this module (``tests/`` is on the
    PYTHONPATH of :class:`DaskProcesses`)."""

    name = "backsweep-test-task-counter"

    def __init__(self) -> None:
        self.live: set[Any] = set()
        self.peak = 0
        self.at_peak: dict[str, str] = {}  # key: state, when the peak was reached
        self.in_flight = 0
        self.peak_in_flight = 0
        self.done_by: dict[str, int] = {}
        self.seconds: list[tuple[str, float]] = []  # (key, compute seconds) a task
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any
                   ) -> None:
        unfinished = ("waiting", "queued", "no-worker", "processing")
        self.in_flight += (finish in unfinished) - (start in unfinished)
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if finish == "forgotten":
            self.live.discard(key)
        else:
            self.live.add(key)
            if len(self.live) > self.peak:
                self.peak = len(self.live)
                tasks = self.scheduler.tasks if self.scheduler else {}
                self.at_peak = {str(k): getattr(tasks.get(k), "state", "?")
                                for k in self.live}
                self.at_peak[str(key)] = finish
        if start == "processing" and finish == "memory":
            address = kwargs.get("worker")
            ws = self.scheduler.workers.get(address) if self.scheduler else None
            name = str(ws.name) if ws is not None else str(address)
            self.done_by[name] = self.done_by.get(name, 0) + 1
            for ss in kwargs.get("startstops") or ():
                if ss.get("action") == "compute":
                    self.seconds.append((str(key), float(ss["stop"]) - float(ss["start"])))

    def snapshot(self) -> dict[str, Any]:
        return {"peak": self.peak, "live": len(self.live), "done_by": dict(self.done_by),
                "peak_in_flight": self.peak_in_flight,
                "seconds": list(self.seconds), "at_peak": dict(self.at_peak)}


def count_tasks(client: Any) -> None:
    """Install a fresh :class:`TaskCounter` on ``client``'s scheduler."""
    client.register_plugin(TaskCounter(), name=TaskCounter.name)


def task_counts(client: Any) -> dict[str, Any]:
    """The :class:`TaskCounter` snapshot (peak, live, done_by, seconds)."""
    return client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.plugins[TaskCounter.name].snapshot())


def same_runs(a: pl.DataFrame, b: pl.DataFrame, ignore: Iterable[str] = ()) -> None:
    """Assert two runs tables hold the same runs with bit-identical values."""
    drop = [c for c in ignore if c in a.columns]
    a = a.drop(drop).sort("run_id")
    b = b.drop([c for c in ignore if c in b.columns]).sort("run_id")
    assert a.columns == b.columns
    assert a.height == b.height
    from polars.testing import assert_frame_equal

    assert_frame_equal(a, b, check_exact=True)
