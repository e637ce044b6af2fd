"""TLS: a TLS-only `dask scheduler` and `dask worker` with a CA and certificates made here.
A client with certificates signed by that CA connects and computes; without certificates,
with a certificate from another CA, or over plain tcp:// it is refused with a ClusterError,
quickly."""

from __future__ import annotations

import time

import dask
import pytest
from test_cluster_support import DaskProcesses, make_certs, wait_for_worker_names

import cluster
from cluster import ClusterError


@pytest.fixture(scope="module")
def tls_procs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    certs = make_certs(root / "certs")
    procs = DaskProcesses(root, tls={"ca": certs["ca"], "cert": certs["node_cert"],
                                     "key": certs["node_key"]})
    procs.certs = certs
    try:
        procs.start_scheduler()
        procs.add_worker("secure")
        yield procs
    finally:
        procs.stop()


def _refused(target, match, **kwargs):
    started = time.monotonic()
    with pytest.raises(ClusterError, match=match) as info:
        with cluster.connect(target, timeout=5, **kwargs):
            pass
    assert time.monotonic() - started < 120  # a hang guard, not a speed test
    return str(info.value)


def test_scheduler_is_tls_only(tls_procs) -> None:
    assert tls_procs.address.startswith("tls://127.0.0.1:")


def test_client_with_certificates_computes(tls_procs, tmp_path) -> None:
    c = tls_procs.certs
    with cluster.connect(tls_procs.address, timeout=10, tls_ca_file=c["ca"],
                         tls_cert=c["client_cert"], tls_key=c["client_key"]) as client:
        wait_for_worker_names(client, {"secure"})
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        cluster.check_environment(client)
    # the same through a profile (bare host:port + TLS files = tls://)
    config = tmp_path / "clusters.toml"
    config.write_text(f"""
[profiles.secure]
address = "{tls_procs.address.removeprefix('tls://')}"
ca_file = "{c['ca']}"
cert = "{c['client_cert']}"
key = "{c['client_key']}"
""")
    with cluster.connect("secure", config=config) as client:
        assert client.submit(sum, [2, 2]).result(timeout=30) == 4
    # and through Dask's own TLS config, as is
    with dask.config.set({"distributed.comm.tls.ca-file": str(c["ca"]),
                          "distributed.comm.tls.client.cert": str(c["client_cert"]),
                          "distributed.comm.tls.client.key": str(c["client_key"])}):
        with cluster.connect(tls_procs.address, timeout=10) as client:
            assert client.submit(sum, [3, 3]).result(timeout=30) == 6


def test_clients_without_valid_certificates_are_refused(tls_procs) -> None:
    c = tls_procs.certs
    text = _refused(tls_procs.address, "no TLS certificates")
    assert tls_procs.address in text and "tls_ca_file" in text
    text = _refused(tls_procs.address, "refused the TLS connection", tls_ca_file=c["ca"],
                    tls_cert=c["rogue_cert"], tls_key=c["rogue_key"])
    assert "not signed by the CA" in text
    plain = tls_procs.address.replace("tls://", "tcp://")
    _refused(plain, "TLS scheduler|cannot reach")
    assert tls_procs.scheduler.alive()
