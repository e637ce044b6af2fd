"""Static checks of the deploy recipes in cluster/deploy/ (docker, Kubernetes and SLURM are
not available on the development machine, so the recipes themselves are not run): they
parse, workers are single-threaded with NUMBA_NUM_THREADS=1, nothing is published on all
interfaces, and the DaskCluster manifest validates against the dask-kubernetes operator's
own schema (when dask-kubernetes is installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import cluster

DEPLOY = Path(cluster.__file__).parent / "deploy"


def test_dockerfile_pins_single_threaded_numba_and_warms_the_cache() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "NUMBA_NUM_THREADS=1" in text and "NUMBA_CACHE_DIR=" in text
    assert "warm_up()" in text and '"--nthreads", "1"' in text
    assert "USER backsweep" in text


def test_compose_workers_are_single_threaded_and_ports_are_local() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"scheduler", "worker", "client"} <= set(services)
    worker = services["worker"]["command"]
    assert worker[:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert worker[worker.index("--nthreads") + 1] == "1"
    assert services["worker"]["environment"]["NUMBA_NUM_THREADS"] == "1"
    for port in services["scheduler"]["ports"]:
        assert port.startswith("127.0.0.1:")


def test_slurm_jobqueue_config() -> None:
    conf = yaml.safe_load((DEPLOY / "slurm-jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert conf["cores"] == conf["processes"]
    assert any("NUMBA_NUM_THREADS=1" in line for line in conf["job-script-prologue"])
    assert conf["scheduler-options"]["dashboard_address"].startswith("127.0.0.1:")


def _external_refs_to_objects(node):
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref and not ref.startswith("#"):
            return {"type": "object"}  # Kubernetes core schemata are not bundled
        return {k: _external_refs_to_objects(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_external_refs_to_objects(v) for v in node]
    return node


def test_daskcluster_manifest_matches_the_operator_schema() -> None:
    dk = pytest.importorskip("dask_kubernetes", reason="backsweep[kubernetes] not installed")
    jsonschema = pytest.importorskip("jsonschema")
    templates = Path(dk.__file__).parent / "operator" / "customresources" / "templates.yaml"
    if not templates.exists():
        pytest.skip("this dask-kubernetes ships no CRD templates")
    text = templates.read_text().replace(
        "python://dask_kubernetes/operator/customresources/templates.yaml#", "#")
    definitions = _external_refs_to_objects(yaml.safe_load(text)["definitions"])
    schema = {"definitions": definitions, "$ref": "#/definitions/dask.k8s.api.v1.DaskCluster"}
    manifest = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    jsonschema.validate(manifest, schema)
    assert manifest["apiVersion"] == "kubernetes.dask.org/v1"
    worker = manifest["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "1"
    assert {"name": "NUMBA_NUM_THREADS", "value": "1"} in worker["env"]
    assert manifest["spec"]["scheduler"]["service"]["type"] == "ClusterIP"
    broken = {**manifest, "spec": {**manifest["spec"],
                                   "worker": {**manifest["spec"]["worker"], "replicas": "4"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
