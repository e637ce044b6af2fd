"""The result store: the folder ``OUT/NAME`` of one sweep.

What a sweep writes there, and nothing else, is the store's: ``sweep.json`` (the record,
see sweep.record), ``runs/window=K/part-NNNNNNN.parquet`` (one file a chunk and window),
``.tmp/`` (files being written), ``.quarantine/`` (damaged chunk files moved aside),
``.worker-token`` and the walk-forward outputs. A folder that holds other things and no
``sweep.json`` is refused, and ``--overwrite`` removes only the store's own files.

Every file appears atomically (written to a hidden temp file on the same filesystem, then
renamed), so a reader never sees a partial file and a crash leaves only whole chunks.
Which chunks are done is read from the files themselves, each checked (its Parquet ends,
its footer's columns and row count against the plan) before resume trusts it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sweep.location import Location, atomic_write, is_local, location, url_of
from sweep.record import SweepRecord
from sweep.schema import check_part, part_files, scan_runs

__all__ = [
    "RECORD_NAME",
    "TOKEN_NAME",
    "WALK_FORWARD_FILES",
    "Location",
    "ResultStore",
    "StoreChangedError",
    "StoreError",
    "atomic_write",
    "load_results",
]

RECORD_NAME = "sweep.json"
TOKEN_NAME = ".worker-token"
WALK_FORWARD_FILES = ("folds.parquet", "oos_equity.parquet")
_OWN_DIRS = ("runs", ".tmp", ".quarantine")
# Temp files of atomic writes: ".<target name>.<random>.tmp"
_TEMP = re.compile(r"^\.(.+)\.[A-Za-z0-9_]+\.tmp$")
class StoreError(ValueError):
    """An output folder the sweep must not or cannot use; the message names it and why."""


class StoreChangedError(RuntimeError):
    """The result folder was taken over (cleared, or another sweep) while writing."""


def _describe(paths: Sequence[Path], root: Path, limit: int = 5) -> str:
    names = [str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(names) + more


class ResultStore:
    """One sweep's folder ``OUT/NAME``.

    Example:
        >>> import tempfile
        >>> store = ResultStore(Path(tempfile.mkdtemp()) / "demo")
        >>> store.read_record() is None
        True
    """

    def __init__(self, root: str | os.PathLike[str] | Location) -> None:
        self.root = location(root)
        self.local = is_local(self.root)
        self.record_path = self.root / RECORD_NAME
        self.runs = self.root / "runs"
        self.tmp = self.root / ".tmp"
        self.quarantine_dir = self.root / ".quarantine"
        self.token = self.root / TOKEN_NAME

    # ------------------------------------------------------------ the location
    def is_store(self) -> bool:
        return self.record_path.is_file()

    @classmethod
    def at(cls, out: str | os.PathLike[str] | Location, name: str) -> ResultStore:
        """The store ``OUT/NAME`` (``out`` a folder or an fsspec URL)."""
        return cls(location(out) / name)

    @property
    def url(self) -> str:
        """The store as any process names it: the absolute path, or the URL."""
        return url_of(self.root)

    def foreign_entries(self) -> list[Path]:
        """What is in the folder that a sweep does not write (sorted)."""
        if not self.root.is_dir():
            return []
        own = {RECORD_NAME, TOKEN_NAME, *_OWN_DIRS, *WALK_FORWARD_FILES}
        return sorted(p for p in self.root.iterdir()
                      if p.name not in own and not self._is_own_temp(p))

    def _is_own_temp(self, p: Path) -> bool:
        m = _TEMP.match(p.name)
        return bool(m) and m.group(1) in (RECORD_NAME, *WALK_FORWARD_FILES)

    def check_location(self) -> None:
        """StoreError unless ``OUT/NAME`` is absent, empty, or a sweep's store: never
        write into (or later clear) a folder of the user's. On an object store, any
        error of the store itself (no credentials, no bucket, no network) is one too."""
        try:
            self._check_location()
        except StoreError:
            raise
        except Exception as exc:
            if self.local and not isinstance(exc, OSError):
                raise
            raise StoreError(f"cannot use {self.root}: {type(exc).__name__}: "
                             f"{str(exc)[:300]}") from None

    def _check_location(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} exists and is not a folder; choose another "
                             "--out or name")
        if self.root.is_dir() and not self.is_store():
            entries = sorted(self.root.iterdir())
            if entries:
                raise StoreError(
                    f"{self.root} is not a sweep's results folder (no {RECORD_NAME}) and "
                    f"holds {len(entries)} item(s): {_describe(entries, self.root)}; "
                    "backsweep does not write into it. Choose another --out or name, or "
                    "move those files away")

    def ensure_writable(self) -> None:
        """StoreError naming the path and the reason when ``OUT/NAME`` cannot be created
        or written. Creates nothing that stays: folders made for the probe are removed."""
        if not self.local:
            return self._ensure_writable_remote()
        made: list[Path] = []
        try:
            missing = []
            p = self.root
            while not p.exists():
                missing.append(p)
                p = p.parent
            if not p.is_dir():
                raise StoreError(f"cannot create {self.root}: {p} is a file, not a folder")
            for folder in reversed(missing):
                folder.mkdir()
                made.append(folder)
            fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StoreError(f"cannot write results to {self.root}: "
                             f"{exc.strerror or exc}") from None
        finally:
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def _ensure_writable_remote(self) -> None:
        probe = self.root / f".probe.{os.getpid()}.{time.monotonic_ns()}.tmp"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except Exception as exc:  # fsspec backends raise their own errors
            raise StoreError(f"cannot write results to {self.root}: {type(exc).__name__}: "
                             f"{str(exc)[:300]}") from None

    # ---------------------------------------------------------------- the record
    def read_record(self) -> SweepRecord | None:
        """The stored record (None: no sweep.json); RecordError when unusable."""
        if not self.record_path.exists():
            return None
        return SweepRecord.read(self.record_path)

    def write_record(self, record: SweepRecord) -> None:
        if self.local:
            self.root.mkdir(parents=True, exist_ok=True)
        record.write(self.record_path)

    # ---------------------------------------------------------------- the chunks
    def chunk_path(self, window: int, chunk_id: int) -> Path:
        return self.runs / f"window={window}" / f"part-{chunk_id:07d}.parquet"

    def write_chunk(self, window: int, chunk_id: int, table: Any,
                    still_ours: Callable[[], bool] | None = None) -> Path:
        """Write one window's file of a chunk (an Arrow table). ``still_ours`` is asked
        just before the rename (a worker checks that the sweep it writes for still owns
        the folder); False raises StoreChangedError and leaves nothing behind."""
        import pyarrow.parquet as pq

        def write(tmp: str) -> None:
            # Statistics only where a reader filters (not the PBO block lists), and no
            # dictionaries (run ids are unique, the rest compresses as well without):
            # 40 % less time a file and 20 % smaller files than the defaults. LZ4 writes in
            # 30 % less time than zstd, for files 25 % larger (a worker's time is the
            # sweep's; disk is cheap).
            pq.write_table(table, tmp, compression="lz4", use_dictionary=False,
                           write_statistics=[f.name for f in table.schema
                                             if not f.name.startswith("block_")])
            if still_ours is not None and not still_ours():
                raise StoreChangedError(f"{self.root} no longer belongs to this sweep")

        # The temp file is not inside runs/: a scan of runs/ must only ever see part files.
        return atomic_write(self.chunk_path(window, chunk_id), write,
                            tmp_dir=self.tmp if self.local else None)

    def chunk_files(self) -> dict[int, list[tuple[int, Path]]]:
        """Chunk id -> [(window, path)] of the part files on disk."""
        out: dict[int, list[tuple[int, Path]]] = {}
        for window, cid, path in part_files(self.runs):
            out.setdefault(cid, []).append((window, path))
        return out

    def done_chunks(self, n_windows: int) -> set[int]:
        """Chunk ids with a file on disk in each of the ``n_windows`` windows (unchecked:
        a count; see :meth:`verified_chunks`)."""
        return {cid for cid, files in self.chunk_files().items() if len(files) >= n_windows}

    def verified_chunks(self, n_windows: int, names: Sequence[str],
                        rows_of: Callable[[int], int]) -> tuple[set[int], list[Path]]:
        """The chunks done on disk, each file checked (Parquet ends, the columns
        ``names``, ``rows_of(chunk_id)`` rows); damaged files are moved into the
        quarantine folder and their chunk left to recompute. Returns (done chunk ids,
        the quarantined files' new paths)."""
        done: set[int] = set()
        moved: list[Path] = []
        for cid, files in self.chunk_files().items():
            rows = rows_of(cid)
            whole = True
            for _, path in files:
                if check_part(path, names, rows) is not None:
                    moved.append(self.quarantine(path))
                    whole = False
            if whole and len(files) >= n_windows:
                done.add(cid)
        return done, moved

    def quarantine(self, path: Path) -> Path:
        """Move a damaged part file to ``.quarantine/`` (same relative path, a numbered
        suffix if taken); returns where it went."""
        rel = path.relative_to(self.runs)
        target = self.quarantine_dir / rel
        if self.local:
            target.parent.mkdir(parents=True, exist_ok=True)
        k = 1
        while target.exists():
            target = target.with_name(f"{rel.name}.{k}")
            k += 1
        if self.local:
            os.replace(path, target)
        else:  # an object store has no rename: a copy, then the original removed
            path.fs.mv(path.path, target.path)
        return target

    def count_runs(self) -> tuple[int, int]:
        """(runs stored, runs that failed)."""
        import polars as pl

        if not part_files(self.runs):
            return 0, 0
        row = (scan_runs(self.root, check=False)
               .select(pl.len().alias("n"), pl.col("error").is_not_null().sum().alias("e"))
               .collect().row(0))
        return int(row[0]), int(row[1])

    # ------------------------------------------------------------------ cleaning
    def clean_temp_files(self) -> int:
        """Remove temp files a killed writer left behind (they are never read; on an
        object store there are none: files are uploaded whole)."""
        if not self.local:
            return 0
        stale = []
        if self.tmp.is_dir():
            stale += [p for p in self.tmp.iterdir() if p.name.endswith(".tmp")]
        if self.root.is_dir():
            stale += [p for p in self.root.iterdir() if self._is_own_temp(p)]
        for path in stale:
            path.unlink(missing_ok=True)
        _rmdir_if_empty(self.tmp)
        return len(stale)

    def clear(self) -> list[Path]:
        """Delete what a sweep wrote here (for --overwrite), and nothing else; returns
        the other files and folders, left in place."""
        for attempt in range(5):
            try:
                self._clear_once()
                break
            except OSError:
                # A task of the sweep being replaced may still be finishing a file here
                # (it checks the folder's token before its rename, and then gives up).
                if attempt == 4:
                    raise
                time.sleep(0.2)
        return self.foreign_entries() + self._foreign_in_runs()

    def _clear_once(self) -> None:
        if not self.root.is_dir():
            return
        for _, _, path in part_files(self.runs):
            path.unlink(missing_ok=True)
        if self.runs.is_dir():
            for folder in self.runs.iterdir():
                if folder.is_dir() and re.match(r"^window=\d+$", folder.name):
                    _rmdir_if_empty(folder)
            _rmdir_if_empty(self.runs)
        for folder in (self.tmp, self.quarantine_dir):
            if self.local:
                shutil.rmtree(folder, ignore_errors=True)
            elif folder.exists():
                folder.fs.rm(folder.path, recursive=True)
        for name in (RECORD_NAME, TOKEN_NAME, *WALK_FORWARD_FILES):
            (self.root / name).unlink(missing_ok=True)
        self.clean_temp_files()

    def _foreign_in_runs(self) -> list[Path]:
        return sorted(self.runs.rglob("*")) if self.runs.is_dir() else []


def _rmdir_if_empty(folder: Location) -> None:
    if not is_local(folder):
        return  # an object store has no empty folders
    with contextlib.suppress(OSError):  # something of the user's is inside: it stays
        folder.rmdir()


def load_results(path: str | os.PathLike[str]) -> Any:
    """A sweep's runs as a polars LazyFrame (``path`` = ``OUT/NAME`` or its ``runs``
    folder). Every file is checked first: a damaged one raises ``DamagedFileError``
    naming it (rerunning the sweep quarantines and recomputes it).

    Example:
        >>> import sweep
        >>> sweep.load_results("results/ma_demo").collect()      # doctest: +SKIP
    """
    return scan_runs(path)

