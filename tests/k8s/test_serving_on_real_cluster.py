"""The pooler (k8s/pgbouncer.yaml) and the read replica overlay (k8s/overlays/replica) applied to
the test run's real control plane (tests/k8s/conftest.py).

No container runs here (there is no kubelet): the stand-in kubelet binds and reports the Pods
ready, so what is proven is the API server's acceptance, the controllers' work (a ReplicaSet and
Pods for the Deployment, Pods and claims for both StatefulSets) and which Pods each Service
selects. That the images start and replicate is proven only locally, by
tests/integration/test_v2_serving.py on real PostgreSQL and PgBouncer servers.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.kubelet import StandInKubelet

from cartrita_assets.cluster.k8s.cluster import KubernetesCluster
from cartrita_assets.cluster.k8s.manifests import sort_for_apply, validate_objects
from cartrita_assets.cluster.k8s.wait import wait_statefulsets_ready
from cartrita_assets.serving.k8s import render_pooler, render_replica_overlay

# The control plane is one per session: every test using it runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("k8s-control-plane")

PASSWORD = f"pw-{secrets.token_urlsafe(12)}"


@pytest.fixture(scope="module")
def namespace(cluster: KubernetesCluster) -> Iterator[str]:
    name = f"cartrita-serving-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        cluster.delete("v1", "Namespace", name, None)


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _endpoint_pods(cluster: KubernetesCluster, namespace: str, service: str) -> set[str]:
    endpoints = cluster.get("v1", "Endpoints", service, namespace) or {}
    return {
        address["targetRef"]["name"]
        for subset in endpoints.get("subsets") or []
        for address in subset.get("addresses") or []
    }


def test_pooler_and_replica_apply_and_serve_the_right_pods(
    cluster: KubernetesCluster, kubeconfig: str, namespace: str
) -> None:
    names = {"postgres": "cartrita-postgres-t1", "redis": "cartrita-redis-t1"}
    objects = render_replica_overlay(namespace, names, 18) + render_pooler(
        namespace, names["postgres"]
    )
    validate_objects(objects)
    pg_secret = {"POSTGRES_USER": "cartrita", "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": "app"}
    secrets_ = [
        _secret(namespace, names["postgres"], pg_secret),
        _secret(namespace, names["redis"], {"REDIS_PASSWORD": PASSWORD + "r"}),
    ]
    ordered = sort_for_apply(objects)
    assert ordered[0]["kind"] == "Namespace"
    with StandInKubelet(kubeconfig, [namespace]):
        cluster.apply(ordered[0])
        for obj in [*secrets_, *ordered[1:]]:
            cluster.apply(obj)
        wait_statefulsets_ready(
            cluster, namespace, ["postgres", "redis", "postgres-replica"], 90, lambda _m: None,
            poll=0.5,
        )  # fmt: skip
        _wait(
            lambda: (
                (cluster.get("apps/v1", "Deployment", "pgbouncer", namespace) or {})
                .get("status", {})
                .get("readyReplicas")
                == 2
            ),
            "the pgbouncer Deployment's 2 replicas",
        )
        # the read-only Service reaches the replica only; the primary's Service the primary only
        _wait(lambda: _endpoint_pods(cluster, namespace, "postgres-read"), "postgres-read")
        assert _endpoint_pods(cluster, namespace, "postgres-read") == {"postgres-replica-0"}
        _wait(lambda: _endpoint_pods(cluster, namespace, "postgres"), "postgres endpoints")
        assert _endpoint_pods(cluster, namespace, "postgres") == {"postgres-0"}
        _wait(lambda: len(_endpoint_pods(cluster, namespace, "pgbouncer")) == 2, "pgbouncer")

    pods = cluster.list("v1", "Pod", namespace, "app.kubernetes.io/part-of=cartrita")
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert "postgres-replica-0" in by_name
    assert sum(name.startswith("pgbouncer-") for name in by_name) == 2
    primary = by_name["postgres-0"]["spec"]
    assert primary["containers"][0]["args"] == ["-c", "hba_file=/etc/cartrita/pg_hba.conf"]
    assert {"name": "hba", "configMap": {"name": "postgres-hba", "defaultMode": 420}} in primary[
        "volumes"
    ]
    # credentials reach the Pods only through the Secret's name, never as a value or an argument
    assert PASSWORD not in json.dumps(pods)
    for pod in pods:
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            for env in container.get("env", []):
                if env["name"].endswith("PASSWORD"):
                    assert env["valueFrom"]["secretKeyRef"]["name"] in names.values()
    claims = cluster.list("v1", "PersistentVolumeClaim", namespace, "")
    assert "data-postgres-replica-0" in {c["metadata"]["name"] for c in claims}
    hba = cluster.get("v1", "ConfigMap", "postgres-hba", namespace)
    assert (
        hba is not None and "host  replication all all scram-sha-256" in hba["data"]["pg_hba.conf"]
    )
