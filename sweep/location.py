"""Where results live: a local folder or an object store, and how a file appears there
whole.

A location is a ``pathlib.Path`` for local folders (``file://`` URLs included) and a
``upath.UPath`` (universal-pathlib: the pathlib API over fsspec) for any other fsspec URL:
``s3://bucket/prefix``, ``gs://...``, ``abfs://...``. Credentials and endpoints come from
the usual environment and fsspec configuration (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``,
``~/.config/fsspec/``...), never from a sweep's spec.

Every file backsweep writes appears whole or not at all (:func:`atomic_write`): locally a
temp file on the same filesystem renamed into place; on an object store, which has no
rename, the finished local temp file sent as one whole-object PUT (or a multipart upload,
which the store also makes visible only once complete) to its final key. A chunk's key
holds its chunk id, so a retried chunk replaces its own object and never appears twice.

Example:
    >>> location("results/demo").name, type(location("file:///tmp/x")).__name__
    ('demo', 'PosixPath')
    >>> str(location("s3://bucket/prefix") / "runs")
    's3://bucket/prefix/runs'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["Location", "atomic_write", "is_local", "location", "url_of"]

Location = Any  # pathlib.Path, or upath.UPath for an fsspec URL
_UMASK = os.umask(0)
os.umask(_UMASK)


def location(target: str | os.PathLike[str] | Any) -> Location:
    """The location of ``target``: a Path for local paths and ``file://`` URLs, a UPath
    for other URLs (kept as they are)."""
    if isinstance(target, Path) or (not isinstance(target, str | os.PathLike)):
        return target  # a Path, or already a UPath
    text = os.fspath(target)
    if "://" not in text:
        return Path(text)
    if text.startswith("file://"):
        return Path(urlparse(text).path)
    from upath import UPath

    return UPath(text)


def is_local(path: Location) -> bool:
    return isinstance(path, Path)


def url_of(path: Location) -> str:
    """A string that names the location from any process: the absolute path, or the URL."""
    return str(path.resolve()) if is_local(path) else str(path)


def atomic_write(path: Location, write: Callable[[str], None],
                 tmp_dir: Path | None = None) -> Location:
    """Call ``write(tmp_path)`` on a local temp file, then make it ``path`` in one step:
    a rename on a local filesystem (the temp file in ``tmp_dir``, default the target's
    folder, so on the same filesystem), one upload of the whole file on an object store.
    A reader sees the old file or the new one, never part of one."""
    local = is_local(path)
    if local:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = path.parent if tmp_dir is None else tmp_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                               dir=tmp_dir if local else None)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        write(tmp)
        if local:
            os.replace(tmp, path)
        else:
            path.fs.put_file(tmp, path.path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
