"""``check_environment``: the same package versions on the client, the scheduler and every
worker, checked before any work (a sweep whose workers run other numba/numpy/polars
versions than the client would mix results of different code).

Versions are read with ``importlib.metadata`` (``distributed.versions.get_package_info``)
in each process, exactly as installed there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cluster.base import ClusterError

__all__ = ["SCHEDULER_PACKAGES", "VERSIONED_PACKAGES", "check_environment",
           "compare_versions", "package_versions"]

VERSIONED_PACKAGES = ("backsweep", "numba", "numpy", "polars", "pyarrow", "dask",
                      "distributed")
# The scheduler runs no backtest: only what its protocol depends on must match.
SCHEDULER_PACKAGES = ("dask", "distributed")
_PYTHON = "python"


def package_versions(packages: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    """This process's versions of ``packages`` (None: not installed) and of Python."""
    from distributed.versions import get_package_info

    return dict(get_package_info(list(packages)))


def _comparable(package: str, version: str | None) -> str | None:
    if package == _PYTHON and version:
        return ".".join(version.split(".")[:2])  # 3.11.7.final.0 -> 3.11
    return version


def _show(version: str | None) -> str:
    return "not installed" if version is None else version


def compare_versions(
    client_versions: Mapping[str, str | None],
    workers: Mapping[str, Mapping[str, str | None]],
    scheduler: Mapping[str, str | None] | None = None,
    *,
    packages: Iterable[str] = VERSIONED_PACKAGES,
    names: Mapping[str, Any] | None = None,
) -> list[str]:
    """One line per package whose version differs from the client's somewhere.

    ``workers`` maps a worker address to its versions; ``names`` maps an address to the
    worker's name, shown beside the address.
    """
    names = names or {}
    lines = []
    for pkg in (_PYTHON, *packages):
        mine = _comparable(pkg, client_versions.get(pkg))
        other: dict[str | None, list[str]] = {}
        for addr, versions in sorted(workers.items()):
            v = _comparable(pkg, versions.get(pkg))
            if v != mine:
                name = names.get(addr)
                label = f"worker {addr}" + (f" (name {name!r})" if name not in (None, addr)
                                            else "")
                other.setdefault(v, []).append(label)
        if scheduler is not None and pkg in (*SCHEDULER_PACKAGES, _PYTHON):
            v = _comparable(pkg, scheduler.get(pkg))
            if v != mine:
                other.setdefault(v, []).insert(0, "the scheduler")
        if not other:
            continue
        parts = [f"{pkg}: client {_show(mine)}"]
        for v, where in other.items():
            shown = ", ".join(where[:4]) + (f" and {len(where) - 4} more" if len(where) > 4
                                            else "")
            parts.append(f"{_show(v)} on {shown}")
        same = sum(1 for ver in workers.values() if _comparable(pkg, ver.get(pkg)) == mine)
        if same:
            odd = sum(1 for where in other.values() for w in where if w != "the scheduler")
            parts.append(f"{_show(mine)} on {same} other worker(s)" if odd
                         else f"{_show(mine)} on all {same} worker(s)")
        lines.append("; ".join(parts))
    return lines


def mismatch_message(lines: list[str]) -> str:
    return (
        "package versions differ between this client and the cluster, so a sweep would "
        "run different code on different machines:\n  " + "\n  ".join(lines) + "\n"
        "Install the same versions everywhere (one image or lock file for the client and "
        "the workers), then retry."
    )


def check_environment(client: Any, *, packages: Iterable[str] = VERSIONED_PACKAGES
                      ) -> dict[str, str | None]:
    """Compare package versions of this client with the scheduler's and every worker's.

    Returns the client's versions (package -> version, plus ``python``). Raises one
    ClusterError naming each differing package with the version on each side and the
    workers that have it. Python is compared by major.minor version; the scheduler only
    for dask, distributed and Python. Workers that join later are checked by
    :class:`cluster.WorkerSetup` (registered by :func:`cluster.prepare`).

    Example:
        >>> import cluster
        >>> with cluster.connect("local", workers=1) as c:   # doctest: +SKIP
        ...     cluster.check_environment(c)["numba"]
        '0.60.0'
    """
    from distributed.versions import get_package_info

    packages = tuple(packages)
    mine = package_versions(packages)
    try:
        # distributed's own probe: it runs on a worker where backsweep is not installed
        workers = client.run(get_package_info, list(packages), on_error="return")
        scheduler = client.run_on_scheduler(get_package_info, list(SCHEDULER_PACKAGES))
    except Exception as exc:
        raise ClusterError(f"cannot read package versions from the cluster: "
                           f"{type(exc).__name__}: {exc}") from None
    broken = {addr: v for addr, v in workers.items() if isinstance(v, BaseException)}
    if broken:
        addr, exc = next(iter(broken.items()))
        raise ClusterError(f"cannot read package versions on worker {addr}: "
                           f"{type(exc).__name__}: {exc}")
    info = client.scheduler_info(n_workers=-1).get("workers", {}) \
        if _takes_n_workers(client) else client.scheduler_info().get("workers", {})
    names = {addr: w.get("name") for addr, w in info.items()}
    lines = compare_versions(mine, workers, scheduler, packages=packages, names=names)
    if lines:
        raise ClusterError(mismatch_message(lines))
    return mine


def _takes_n_workers(client: Any) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False
