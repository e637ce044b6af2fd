"""``cluster.connect``: the one place a cluster target becomes a Dask client.

A target is one of:

* ``None`` or ``"local"``: a LocalCluster started here (processes, one thread each,
  ``NUMBA_NUM_THREADS=1``, dashboard on 127.0.0.1 only), closed on exit;
* a scheduler address: ``"tcp://host:8786"``, ``"tls://host:8786"`` or a bare
  ``"host:8786"`` (tcp, or tls when TLS files are given);
* ``"scheduler-file:PATH"``: the JSON file ``dask scheduler --scheduler-file`` writes;
* the name of a profile in the cluster config file (``"NAME"`` or ``"profile:NAME"``).
  :mod:`cluster.profiles` parses and validates it and builds the cluster of a started kind
  (local, ssh, slurm, kubernetes); an ``address`` or ``scheduler-file`` profile is
  dispatched here as that address or file, with the profile's TLS files;
* a ``distributed.Client`` (used as is) or a Cluster object (a client on it).

Only what ``connect`` started is closed when the ``with`` block ends: connecting to an
existing scheduler never shuts it down. The client's ``dashboard_link`` is the address the
dashboard listens on (127.0.0.1 when it listens there only), not the scheduler's address.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cluster.base import WORKER_ENV, ClusterError, default_workers
from cluster.profiles import (
    LEAN_LOCAL_CONFIG,
    Profile,
    build_cluster,
    get_profile,
    lean_local_config,
    local_cluster,
)

__all__ = [
    "LEAN_LOCAL_CONFIG",
    "WORKER_ENV",
    "ClusterError",
    "Starting",
    "connect",
    "default_workers",
    "lean_local_config",
    "make_security",
    "normalize_address",
    "read_scheduler_file",
]

SCHEDULER_FILE_PREFIX = "scheduler-file:"
PROFILE_PREFIX = "profile:"
_PROTOCOLS = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")

TLS_HINT = (
    "pass the CA, certificate and key (connect(tls_ca_file=, tls_cert=, tls_key=), the "
    "profile keys ca_file/cert/key, or Dask's own config: "
    "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT, "
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY)"
)


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


def read_scheduler_file(path: str | os.PathLike[str]) -> str:
    """The scheduler address in a ``dask scheduler --scheduler-file`` JSON file."""
    file = Path(path).expanduser()
    try:
        address = json.loads(file.read_text())["address"]
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
    return address


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

    ``workers`` sizes a local cluster (and overrides the size of a started profile);
    ``timeout`` (seconds) bounds reaching a scheduler: an unreachable one raises
    ClusterError naming the address and the timeout. ``config`` is the cluster config file
    holding named profiles (default: $BACKSWEEP_CLUSTER_CONFIG, else
    ~/.config/backsweep/clusters.toml). ``tls_*`` files make a TLS client for a tls://
    scheduler (Dask's own ``distributed.comm.tls`` config works too).

    Example:
        >>> import cluster
        >>> with cluster.connect("local", workers=1) as client:   # doctest: +SKIP
        ...     client.submit(sum, [1, 2]).result()
        3
    """
    security = make_security(tls_ca_file, tls_cert, tls_key)
    with _dispatch(target, workers=workers, timeout=timeout, dashboard=dashboard,
                   config=config, security=security) as client:
        yield client


def starts_local(target: Any) -> bool:
    """Does ``connect(target)`` start a local cluster (None or "local")?"""
    return target is None or (isinstance(target, str) and target.strip() == "local")


class Starting:
    """``connect(target, ...)`` entered in a thread, so that the cluster starts (its
    worker processes spawn, import and warm up) while this thread does other work, such
    as validating and planning a sweep. :meth:`client` waits for it; :meth:`close` ends
    what it started (waiting for the start to finish first); :meth:`close_later` does
    the same in another thread, returning at once (join it with :meth:`wait_closed`).

    Example:
        >>> from cluster.connect import Starting
        >>> starting = Starting("local", workers=1)                   # doctest: +SKIP
        >>> starting.client().submit(sum, [1, 2]).result()            # doctest: +SKIP
        3
        >>> starting.close()                                          # doctest: +SKIP
    """

    def __init__(self, target: Any = None, **kwargs: Any) -> None:
        import threading

        self._cm = connect(target, **kwargs)
        self._client: Any = None
        self._error: BaseException | None = None
        self._closer: Any = None
        self._thread = threading.Thread(target=self._enter, name="backsweep-cluster-start",
                                        daemon=True)
        self._thread.start()

    def _enter(self) -> None:
        try:
            self._client = self._cm.__enter__()
        except BaseException as exc:  # raised again, in the caller's thread, by client()
            self._error = exc

    def client(self) -> Any:
        """The client, once the cluster is up; the start's error if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client

    def close(self) -> None:
        self._thread.join()
        if self._client is not None:
            client, self._client = self._client, None
            del client
            self._cm.__exit__(None, None, None)

    def close_later(self) -> None:
        import threading

        self._closer = threading.Thread(target=self.close, name="backsweep-cluster-stop",
                                        daemon=True)
        self._closer.start()

    def wait_closed(self) -> None:
        if self._closer is not None:
            self._closer.join()


@contextmanager
def _dispatch(target: Any, *, workers: int | None, timeout: float, dashboard: bool,
              config: str | os.PathLike[str] | None, security: Any,
              source: str | None = None) -> Iterator[Any]:
    """Every kind of target, once: a client for ``target`` (see the module docstring)."""
    from distributed import Client
    from distributed.deploy import Cluster

    if isinstance(target, Client):
        yield target
        return
    if isinstance(target, Cluster):
        with _client(target.scheduler_address, timeout, security=target.security,
                     cluster=target, source=source) as client:
            yield client
        return
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if target is None or target == "local":
        if security is not None:
            raise ClusterError("TLS files apply to a remote scheduler, not to 'local'")
        with _started(lambda: local_cluster(workers, dashboard=dashboard), timeout,
                      source) as client:
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
        where = f"scheduler file {Path(path).expanduser()}"
        address = read_scheduler_file(path)
        with _client(address, timeout, security=security,
                     source=f"{source}, {where}" if source else where) as client:
            yield client
        return
    if is_address(target):
        address = normalize_address(target, tls=security is not None)
        with _client(address, timeout, security=security, source=source) as client:
            yield client
        return
    if source is not None:  # a profile's address that is no address: never a profile again
        raise ClusterError(f"{source}: {target!r} is not a scheduler address (host:port)")
    if security is not None:
        raise ClusterError(
            f"TLS files were given for profile {target!r}: put them in the profile "
            "(ca_file, cert, key) instead"
        )
    name = target.removeprefix(PROFILE_PREFIX)
    with _profile_client(get_profile(name, config), workers=workers, timeout=timeout,
                         dashboard=dashboard) as client:
        yield client


@contextmanager
def _profile_client(profile: Profile, *, workers: int | None, timeout: float,
                    dashboard: bool) -> Iterator[Any]:
    """A client for a profile: its address or scheduler file through :func:`_dispatch`,
    or the cluster :func:`cluster.profiles.build_cluster` starts (closed on exit); then
    ``wait_for_workers``."""
    opts = profile.options
    timeout = float(opts.get("timeout", timeout))
    if profile.kind in ("address", "scheduler-file"):
        security = make_security(opts.get("ca_file"), opts.get("cert"), opts.get("key"))
        inner = (str(opts["address"]) if profile.kind == "address"
                 else SCHEDULER_FILE_PREFIX + str(opts["scheduler_file"]))
        opened = _dispatch(inner, workers=None, timeout=timeout, dashboard=dashboard,
                           config=None, security=security, source=profile.where())
    else:
        opened = _started(lambda: build_cluster(profile, workers=workers, timeout=timeout,
                                                dashboard=dashboard),
                          timeout, profile.where())
    with opened as client:
        wait_for = opts.get("wait_for_workers", 0)
        if wait_for:
            try:
                client.wait_for_workers(wait_for, timeout=timeout)
            except TimeoutError:
                raise ClusterError(
                    f"{profile.where()}: fewer than {wait_for} workers joined within "
                    f"{timeout:g} s ({len(client.scheduler_info()['workers'])} did)"
                ) from None
        yield client


@contextmanager
def _started(build: Callable[[], Any], timeout: float, source: str | None) -> Iterator[Any]:
    """A client on the cluster ``build()`` starts; the cluster is closed on exit."""
    started = build()
    try:
        with _client(started.scheduler_address, timeout, cluster=started,
                     source=source) as client:
            yield client
    finally:
        # Workers before the scheduler: a worker whose scheduler closes before the close
        # message reaches it logs a failed heartbeat with a traceback (seen on a loaded
        # machine at the end of a sweep).
        if hasattr(started, "scale") and hasattr(started, "_correct_state"):
            with contextlib.suppress(Exception):
                started.scale(0)
                started.sync(started._correct_state)
        started.close()


@contextmanager
def _client(address: str, timeout: float, *, security: Any = None, cluster: Any = None,
            source: str | None = None) -> Iterator[Any]:
    """A Client on ``address`` that fails within ``timeout`` with a ClusterError."""
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
            client = _client_class()(cluster if cluster is not None else address,
                                     **kwargs)
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


# ----------------------------------------------------------------- the dashboard link
def _client_class() -> type:
    """distributed.Client whose ``dashboard_link`` is where the dashboard listens.

    Dask builds the link from the scheduler's address, so a scheduler reachable at
    10.0.0.5 whose dashboard listens on 127.0.0.1 only (as backsweep starts them) printed
    http://10.0.0.5:8787, where nothing answers. The class is made once, on first use (the
    package imports Dask lazily).
    """
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        from distributed import Client

        class BacksweepClient(Client):
            @property
            def dashboard_link(self) -> str | None:
                link = super().dashboard_link
                if not link or self.asynchronous:
                    return link
                cached = getattr(self, "_backsweep_link", None)
                if cached is None or cached[0] != link:
                    cached = (link, _listening_link(self, link))
                    self._backsweep_link = cached
                return cached[1]

        _CLIENT_CLASS = BacksweepClient
    return _CLIENT_CLASS


_CLIENT_CLASS: type | None = None


def dashboard_addresses(dask_scheduler: Any) -> list[tuple[str, int]]:
    """(host, port) of every socket the scheduler's HTTP server listens on (runs on the
    scheduler, or here for a scheduler in this process)."""
    server = getattr(dask_scheduler, "http_server", None)
    out = []
    for sock in list(getattr(server, "_sockets", {}).values()):
        try:
            host, port = sock.getsockname()[:2]
        except OSError:
            continue
        out.append((str(host), int(port)))
    return out


def _listening_link(client: Any, link: str) -> str:
    """``link`` (Dask's, from the scheduler's address) with the host the dashboard's
    port actually listens on, when that is one address and not all interfaces."""
    from distributed.scheduler import Scheduler
    from distributed.utils import format_dashboard_link

    try:
        port = int(client.scheduler_info(n_workers=0)["services"]["dashboard"])
        scheduler = getattr(client.cluster, "scheduler", None)
        if isinstance(scheduler, Scheduler):
            listening = dashboard_addresses(scheduler)
        else:
            listening = client.run_on_scheduler(dashboard_addresses)
    except Exception:  # a scheduler that runs no code of ours: keep Dask's link
        return link
    hosts = [host for host, p in listening if p == port]
    if not hosts or any(ipaddress.ip_address(h.split("%")[0]).is_unspecified
                        for h in hosts if _is_ip(h)):
        return link  # all interfaces: the scheduler's own address reaches it
    host = next((h for h in hosts if ":" not in h), hosts[0])
    return format_dashboard_link(f"[{host}]" if ":" in host else host, port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


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
