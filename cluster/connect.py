"""``cluster.connect``: a Dask client for a local cluster, an existing scheduler or a profile.

A target is one of:

* ``None`` or ``"local"``: a LocalCluster started here (processes, one thread each,
  ``NUMBA_NUM_THREADS=1``, dashboard on 127.0.0.1 only), closed on exit;
* a scheduler address: ``"tcp://host:8786"``, ``"tls://host:8786"`` or a bare
  ``"host:8786"`` (tcp, or tls when TLS files are given);
* ``"scheduler-file:PATH"``: the JSON file ``dask scheduler --scheduler-file`` writes;
* the name of a profile in the cluster config file (see :mod:`cluster.profiles`), which
  may start an SSH, SLURM or Kubernetes cluster (closed on exit) or point at an address;
* a ``distributed.Client`` (used as is) or a Cluster object (a client on it).

Only what ``connect`` started is closed when the ``with`` block ends: connecting to an
existing scheduler never shuts it down.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "WORKER_ENV",
    "ClusterError",
    "connect",
    "default_workers",
    "make_security",
    "normalize_address",
]

# Parallelism comes from Dask workers; a worker's Numba must not start its own threads.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1"}

SCHEDULER_FILE_PREFIX = "scheduler-file:"
_PROTOCOLS = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")

TLS_HINT = (
    "pass the CA, certificate and key (connect(tls_ca_file=, tls_cert=, tls_key=), the "
    "profile keys ca_file/cert/key, or Dask's own config: "
    "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT, "
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY)"
)


class ClusterError(RuntimeError):
    """A cluster that cannot be reached, started or used; the message says which and why."""


def default_workers() -> int:
    """One single-threaded worker process per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def normalize_address(target: str, *, tls: bool = False) -> str:
    """``host:port`` -> ``tcp://host:port`` (``tls://`` when ``tls``); full addresses pass.

    Example:
        >>> normalize_address("10.0.0.5:8786")
        'tcp://10.0.0.5:8786'
        >>> normalize_address("sched:8786", tls=True)
        'tls://sched:8786'
    """
    if target.startswith(_PROTOCOLS):
        return target
    if "://" in target:
        raise ClusterError(
            f"unsupported scheduler address {target!r}: expected tcp://, tls:// (or "
            "ws://, wss://, ucx://) followed by host:port"
        )
    if not _HOST_PORT.match(target):
        raise ClusterError(f"{target!r} is not a scheduler address (host:port)")
    return ("tls://" if tls else "tcp://") + target


def is_address(target: str) -> bool:
    """True for tcp://..., tls://... and bare host:port strings."""
    return target.startswith(_PROTOCOLS) or "://" in target or bool(_HOST_PORT.match(target))


def make_security(ca_file: str | os.PathLike[str] | None, cert: str | os.PathLike[str] | None,
                  key: str | os.PathLike[str] | None = None) -> Any:
    """A ``distributed.security.Security`` for a TLS client (encryption required).

    ``key`` may be omitted when ``cert`` holds the certificate and its key in one PEM file.
    Returns None when no TLS file is given at all.
    """
    if ca_file is None and cert is None and key is None:
        return None
    from distributed.security import Security

    missing = [n for n, v in (("tls_ca_file", ca_file), ("tls_cert", cert)) if v is None]
    if missing:
        raise ClusterError(f"TLS needs {' and '.join(missing)} as well; {TLS_HINT}")
    files = {"CA file": ca_file, "certificate": cert, "key": key}
    for what, path in files.items():
        if path is not None and not Path(path).expanduser().is_file():
            raise ClusterError(f"TLS {what} {os.fspath(path)!r} does not exist")
    ca, crt, k = (None if p is None else str(Path(p).expanduser()) for p in (ca_file, cert, key))
    return Security(tls_ca_file=ca, tls_client_cert=crt, tls_client_key=k,
                    require_encryption=True)


@contextmanager
def connect(
    target: Any = None,
    *,
    workers: int | None = None,
    timeout: float = 20.0,
    dashboard: bool = True,
    config: str | os.PathLike[str] | None = None,
    tls_ca_file: str | os.PathLike[str] | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
) -> Iterator[Any]:
    """A ``distributed.Client`` for ``target``; closes only what it started.

    ``workers`` sizes a local cluster; ``timeout`` (seconds) bounds reaching a scheduler:
    an unreachable one raises ClusterError naming the address and the timeout. ``config``
    is the cluster config file holding named profiles (default: $BACKSWEEP_CLUSTER_CONFIG,
    else ~/.config/backsweep/clusters.toml). ``tls_*`` files make a TLS client for a
    tls:// scheduler (Dask's own ``distributed.comm.tls`` config works too).

    Example:
        >>> import cluster
        >>> with cluster.connect("local", workers=1) as client:   # doctest: +SKIP
        ...     client.submit(sum, [1, 2]).result()
        3
    """
    from distributed import Client
    from distributed.deploy import Cluster

    security = make_security(tls_ca_file, tls_cert, tls_key)
    if isinstance(target, Client):
        yield target
        return
    if isinstance(target, Cluster):
        with _client(target.scheduler_address, timeout, security=target.security,
                     cluster=target) as client:
            yield client
        return
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if target is None or target == "local":
        if security is not None:
            raise ClusterError("TLS files apply to a remote scheduler, not to 'local'")
        with start_local(workers, dashboard=dashboard, timeout=timeout) as client:
            yield client
        return
    if not isinstance(target, str) or not target.strip():
        raise ClusterError(
            f"cannot connect to {target!r}: expected 'local', a scheduler address "
            "(tcp://host:port, tls://host:port, host:port), scheduler-file:PATH or the name "
            "of a cluster profile"
        )
    target = target.strip()
    if target.startswith(SCHEDULER_FILE_PREFIX):
        path = target[len(SCHEDULER_FILE_PREFIX):]
        with connect_scheduler_file(path, timeout, security=security) as client:
            yield client
        return
    if is_address(target):
        address = normalize_address(target, tls=security is not None)
        with _client(address, timeout, security=security) as client:
            yield client
        return
    from cluster.profiles import open_profile

    if security is not None:
        raise ClusterError(
            f"TLS files were given for profile {target!r}: put them in the profile "
            "(ca_file, cert, key) instead"
        )
    name = target[len("profile:"):] if target.startswith("profile:") else target
    with open_profile(name, config=config, workers=workers, timeout=timeout,
                      dashboard=dashboard) as client:
        yield client


# Background work of the cluster processes that a sweep's workers pay for on the same
# cores: measured per thread during a 100k sweep on 2 vCPUs, the two compute threads got
# 186 to 188 % of a core with Dask's defaults and 190 to 192 % with these. Each is set
# only where it still has distributed's default (a user's own setting is kept):
# {key: (distributed's default, backsweep's local cluster)}.
LEAN_LOCAL_CONFIG: dict[str, tuple[Any, Any]] = {
    # The statistical profiler samples every 10 ms; a task is one compiled call, so all it
    # can ever show is that call.
    "distributed.worker.profile.enabled": (True, False),
    # Tasks are uniform and few are in flight; stealing would only move queued work.
    "distributed.scheduler.work-stealing": (True, False),
    # Event-loop health checks (warnings after 3 s blocked) and the dashboard's system
    # plots: 50 and 2 wake-ups a second in every process by default.
    "distributed.admin.tick.interval": ("20ms", "200ms"),
    "distributed.admin.system-monitor.interval": ("500ms", "2s"),
}


def lean_local_config() -> dict[str, Any]:
    """The LEAN_LOCAL_CONFIG values for the keys still at distributed's default."""
    import dask.config

    return {key: lean for key, (default, lean) in LEAN_LOCAL_CONFIG.items()
            if dask.config.get(key, None) == default}


@contextmanager
def start_local(workers: int | None = None, *, dashboard: bool = True,
                timeout: float = 20.0) -> Iterator[Any]:
    """A LocalCluster of ``workers`` single-threaded processes (closed on exit), with
    less background work than Dask's defaults (LEAN_LOCAL_CONFIG)."""
    import dask.config
    from distributed import Client, LocalCluster

    n = default_workers() if workers is None else workers
    if n < 1:
        raise ClusterError(f"--workers must be at least 1, got {n}")
    # The scheduler and the nannies read these when created, and each nanny hands its
    # config to the worker process it starts.
    with dask.config.set(lean_local_config()):
        # Without the dashboard the scheduler still serves its HTTP routes (health,
        # metrics): on a free port too, not on 8787 where another cluster may already be.
        local = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": dashboard},
            env=dict(WORKER_ENV), silence_logs=40,
        )
    try:
        with Client(local, timeout=timeout) as client:
            yield client
    finally:
        local.close()


@contextmanager
def connect_scheduler_file(path: str | os.PathLike[str], timeout: float, *,
                           security: Any = None) -> Iterator[Any]:
    """A client for the scheduler described by a ``--scheduler-file`` JSON file."""
    import json

    file = Path(path).expanduser()
    try:
        info = json.loads(file.read_text())
        address = info["address"]
    except FileNotFoundError:
        raise ClusterError(
            f"scheduler file {os.fspath(path)!r} does not exist (start the scheduler with "
            "`dask scheduler --scheduler-file PATH`, on a filesystem this machine sees)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClusterError(
            f"scheduler file {os.fspath(path)!r} is not a Dask scheduler file: {exc}"
        ) from None
    if not isinstance(address, str):
        raise ClusterError(f"scheduler file {os.fspath(path)!r}: bad address {address!r}")
    with _client(address, timeout, security=security, source=f"scheduler file {file}") as c:
        yield c


@contextmanager
def _client(address: str, timeout: float, *, security: Any = None, cluster: Any = None,
            source: str | None = None) -> Iterator[Any]:
    """A Client on ``address`` that fails within ``timeout`` with a ClusterError."""
    from distributed import Client

    if security is not None and cluster is None and not address.startswith(("tls://",
                                                                            "wss://")):
        raise ClusterError(f"TLS files were given but {address} is not a TLS address; "
                           f"use tls://{address.split('://', 1)[-1]}")
    kwargs: dict[str, Any] = {"timeout": timeout}
    if security is not None:
        kwargs["security"] = security
    for attempt in range(3):
        error = None
        try:
            client = Client(cluster if cluster is not None else address, **kwargs)
            break
        except AssertionError as exc:
            # distributed's shared event-loop thread, still stopping after a client that
            # failed to start a moment ago, trips an assertion in LoopRunner: try again.
            if attempt == 2:
                error = connection_error(address, timeout, exc, source)
        except Exception as exc:
            error = connection_error(address, timeout, exc, source)
        # Collect the client that failed to start now, at a safe point: collected later,
        # during the next client's start, its __del__ -> close() waits for the shared
        # event-loop runner's lock that this thread holds, forever (seen with
        # distributed 2026.8 in the TLS refusal tests).
        gc.collect()
        if error is not None:
            raise error
        time.sleep(0.5)
    try:
        yield client
    finally:
        client.close()


def connection_error(address: str, timeout: float, exc: BaseException,
                     source: str | None = None) -> ClusterError:
    """A ClusterError explaining why a client could not connect to ``address``."""
    text = f"{type(exc).__name__}: {exc}"
    where = f"the Dask scheduler at {address}" + (f" (from {source})" if source else "")
    if "ssl_context" in text or "TLS expects" in text:
        return ClusterError(f"{where} uses TLS and this client has no TLS certificates: "
                            f"{TLS_HINT}")
    if "SSL" in text or "CERTIFICATE" in text.upper():
        return ClusterError(
            f"{where} refused the TLS connection ({text[:300]}): the client certificate is "
            "not signed by the CA the scheduler trusts, or the CA file does not match the "
            "scheduler's certificate"
        )
    if address.startswith("tcp://") and "reset by peer" in text:
        return ClusterError(
            f"{where} closed the connection ({text[:200]}); if it is a TLS scheduler, use "
            f"tls://{address[len('tcp://'):]} with certificates ({TLS_HINT})"
        )
    return ClusterError(f"cannot reach {where} within {timeout:g} s ({text[:300]})")
