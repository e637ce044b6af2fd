"""Helpers for the sweep tests that run real clusters and real subprocesses.

Not a test module: ``test_sweep_*.py`` import it (pytest puts ``tests/`` on ``sys.path``).

* :class:`DaskProcesses` starts ``dask scheduler`` and ``dask worker`` subprocesses on
  127.0.0.1 (each in its own process group, so a kill takes the nanny and its worker).
* :func:`run_cli` / :func:`start_cli` run ``backsweep`` in a subprocess.
* :func:`wait_for` polls a condition with a deadline (no fixed sleeps).
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
    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = self.tmp / log_name
        self._logs.append(log)
        with open(log, "wb") as out:
            return subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.tmp, env=subprocess_env(), start_new_session=True,
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

    def add_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn(
            [DASK, "worker", "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
             "--host", "127.0.0.1", "--scheduler-file", str(self.scheduler_file)],
            f"worker-{len(self.workers)}.log",
        )
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


def same_runs(a: pl.DataFrame, b: pl.DataFrame, ignore: Iterable[str] = ()) -> None:
    """Assert two runs tables hold the same runs with bit-identical values."""
    drop = [c for c in ignore if c in a.columns]
    a = a.drop(drop).sort("run_id")
    b = b.drop([c for c in ignore if c in b.columns]).sort("run_id")
    assert a.columns == b.columns
    assert a.height == b.height
    from polars.testing import assert_frame_equal

    assert_frame_equal(a, b, check_exact=True)
