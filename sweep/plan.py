"""Planning: runs split into chunks (one window x a contiguous block of combinations),
sized to about a second of work by timing a sample, enumerated by index arithmetic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from sweep.spec import ResolvedSweep

__all__ = ["Chunk", "Plan", "calibrate_chunk_size"]

TARGET_SECONDS = 1.0   # Dask's per-task overhead is ~1 ms: a task should be ~0.5-2 s
MAX_CHUNK = 200_000


@dataclass(frozen=True)
class Chunk:
    """Combination positions ``start .. stop-1`` of window ``window``."""

    chunk_id: int
    window: int
    start: int
    stop: int


@dataclass(frozen=True)
class Plan:
    """Chunk boundaries. Stored in sweep.json so a resumed sweep cuts the same chunks."""

    chunk_size: int
    n_combos: int
    n_windows: int

    @property
    def chunks_per_window(self) -> int:
        return -(-self.n_combos // self.chunk_size)

    @property
    def n_chunks(self) -> int:
        return self.chunks_per_window * self.n_windows

    def chunk(self, chunk_id: int) -> Chunk:
        window, k = divmod(chunk_id, self.chunks_per_window)
        start = k * self.chunk_size
        return Chunk(chunk_id, window, start, min(start + self.chunk_size, self.n_combos))

    def chunks(self) -> Iterator[Chunk]:
        for chunk_id in range(self.n_chunks):
            yield self.chunk(chunk_id)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def calibrate_chunk_size(resolved: ResolvedSweep, target_seconds: float = TARGET_SECONDS,
                         sample: int = 64) -> int:
    """Combination positions per chunk so that a chunk takes about ``target_seconds``:
    times a sample block (after a warm-up) on the longest window."""
    from sweep.evaluate import evaluate_table

    i0, i1 = max(resolved.windows, key=lambda w: w[1] - w[0])
    table = resolved.combos_table(0, min(resolved.n_combos, 10_000)).head(sample)
    if table.height == 0:
        return min(MAX_CHUNK, max(1, resolved.n_combos))
    panel, strategy, config = resolved.panel, resolved.strategy, resolved.config
    evaluate_table(panel, strategy, table.head(1), config, i0, i1)  # compile or load kernels
    started = time.perf_counter()
    evaluate_table(panel, strategy, table, config, i0, i1)
    seconds = time.perf_counter() - started
    # Constraints thin a block of positions out: size chunks in positions, not runs.
    combos = table["combo"]
    positions = table.height if resolved.combos is not None else int(
        combos.max() - combos.min() + 1)
    per_position = seconds / positions
    return int(min(MAX_CHUNK, max(1, target_seconds / max(per_position, 1e-9))))
