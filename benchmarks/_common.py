"""Helpers shared by the benchmark scripts: timing, memory, child processes, tables.

Nothing here imports the engine, so a child process can measure its own baseline memory
before it imports anything heavy.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# A child process prints exactly one line starting with this marker, followed by JSON.
JSON_MARKER = "@@bench-json "


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed calls (warm-up calls excluded)."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median_ms(self) -> float:
        return 1e3 * self.median

    @property
    def best_ms(self) -> float:
        return 1e3 * self.best

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": list(self.seconds), "median_ms": self.median_ms,
                "min_ms": self.best_ms}


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 1,
               collect: bool = True) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times timed (perf_counter).

    The garbage collector runs before every timed call (outside the timing) and stays
    enabled during it, so each call pays for its own garbage but not for a previous one's.
    A collection walks every Python object, which also evicts the call's data from the CPU
    caches: ``collect=False`` times calls back to back instead (caches warm, as in a loop
    over parameters on one panel).
    """
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(max(1, repeat)):
        if collect:
            gc.collect()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return Timing(tuple(out))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: ``VmHWM`` from /proc/self/status, the high-water mark of this program's own
    address space. ``getrusage(RUSAGE_SELF).ru_maxrss`` is the fallback; on Linux it
    survives ``exec``, so a child forked from a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark to its current RSS (Linux >= 4.0); True if done."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; falls back to psutil, else NaN)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return psutil.Process().memory_info().rss / (1024 * 1024)
    except ImportError:
        return float("nan")


def emit_json(obj: dict[str, Any]) -> None:
    """Report a child's result to its parent (see :func:`run_child`)."""
    print(JSON_MARKER + json.dumps(obj), flush=True)


def run_child(argv: Sequence[str], env: dict[str, str] | None = None,
              timeout: float = 1800.0) -> tuple[dict[str, Any], float]:
    """Run a child process; return its JSON report and its wall time (spawn to exit)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=full_env,
                          timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    reports = [line[len(JSON_MARKER):] for line in proc.stdout.splitlines()
               if line.startswith(JSON_MARKER)]
    if proc.returncode != 0 or not reports:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"child {' '.join(argv[:4])} ... failed "
                           f"(exit {proc.returncode}):\n{tail}")
    return json.loads(reports[-1]), wall


def machine_summary() -> str:
    """One line: CPU model and count, memory, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    mem = f", {int(line.split()[1]) / 1024**2:.1f} GiB RAM"
                    break
    except (OSError, ValueError):
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs{mem}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def si(x: float) -> str:
    """Compact number with an SI suffix: 1.23e8 -> '123M'."""
    if x != x:  # NaN
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (NaN where unavailable)."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def load_str() -> str:
    """'load 3.1 / 2.9 / 2.5' (1 / 5 / 15 minutes), for printing next to a timing."""
    one, five, fifteen = load_average()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f}"


def pin_to_cpu(cpu: int | None) -> str:
    """Restrict this process (and threads started later) to one logical CPU.

    Returns a description; does nothing (and says so) where affinity is unsupported.
    """
    if cpu is None:
        return "not pinned"
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"
    return f"pinned to CPU {cpu}"


def proc_status_mb(pid: int, field: str = "VmHWM") -> float:
    """A memory field of another process's /proc/PID/status in MiB (NaN if gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def time_calls_cpu(fn: Callable[[], object], repeat: int, warmup: int = 1,
                   span: float = 0.0) -> tuple[Timing, Timing]:
    """Like :func:`time_calls`, but returns (wall-clock, CPU-time) timings of each call:
    ``repeat`` calls, and more until ``span`` seconds have passed.

    CPU time (``time.process_time``: user + system time of this process, all threads) is
    what a single-threaded call costs whatever else the machine runs; wall time on a shared
    machine also holds the time the call waited for a core. A ``span`` lets a fast call be
    sampled over as long a stretch of the machine's load as a slow peer's calls are.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    start = time.perf_counter()
    while len(wall) < max(1, repeat) or time.perf_counter() - start < span:
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timing(tuple(wall)), Timing(tuple(cpu))
