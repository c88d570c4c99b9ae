"""The cluster seam against the test run's real API server (tests/k8s/conftest.py).

Every test works in one namespace made for this run (``cartrita-test-<random>``), deleted in
``finally`` whatever happens. Nothing here needs a pod to start: the StatefulSet has 0 replicas.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest

from cartrita_assets.cluster.k8s.cluster import (
    FIELD_MANAGER,
    ClusterError,
    ConflictError,
    ImmutableError,
    InvalidObjectError,
    KubernetesCluster,
)
from cartrita_assets.cluster.k8s.wait import wait_scaled_down, wait_statefulsets_ready

# The control plane is started once per worker: every k8s test runs on the same one
# (support/groups.py says why the mark is written here).
pytestmark = pytest.mark.xdist_group("k8s-control-plane")

OTHER_MANAGER = "cartrita-test-other"
SECRET_VALUE = "real-cluster-Secret-9731"


@pytest.fixture(scope="module")
def namespace(cluster: KubernetesCluster) -> Iterator[str]:
    name = f"cartrita-test-{uuid.uuid4().hex[:10]}"
    try:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        yield name
    finally:
        cluster.delete("v1", "Namespace", name, None)


def config_map(namespace: str, name: str, value: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"test": name}},
        "data": {"mode": value},
    }


@pytest.mark.k8s
def test_apply_config_map_twice_is_idempotent(cluster, namespace):
    first = cluster.apply(config_map(namespace, "idempotent", "a"))
    second = cluster.apply(config_map(namespace, "idempotent", "a"))
    assert second["data"] == {"mode": "a"}
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    managers = {m["manager"] for m in second["metadata"]["managedFields"]}
    assert FIELD_MANAGER in managers
    live = cluster.get("v1", "ConfigMap", "idempotent", namespace)
    assert live is not None and live["data"] == {"mode": "a"}
    listed = cluster.list("v1", "ConfigMap", namespace, "test=idempotent")
    assert [o["metadata"]["name"] for o in listed] == ["idempotent"]


@pytest.mark.k8s
def test_get_and_delete_of_a_missing_object(cluster, namespace):
    assert cluster.get("v1", "ConfigMap", "never-created", namespace) is None
    assert cluster.delete("v1", "ConfigMap", "never-created", namespace) is False
    cluster.apply(config_map(namespace, "short-lived", "x"))
    assert cluster.delete("v1", "ConfigMap", "short-lived", namespace) is True
    with pytest.raises(ClusterError) as caught:
        cluster.pod_logs(namespace, "no-such-pod")
    assert caught.value.status == 404


@pytest.mark.k8s
def test_another_field_manager_causes_a_conflict(cluster, namespace, kubeconfig):
    from kubernetes import config
    from kubernetes.dynamic import DynamicClient

    raw = DynamicClient(config.new_client_from_config(config_file=kubeconfig))
    configmaps = raw.resources.get(api_version="v1", kind="ConfigMap")
    raw.server_side_apply(
        configmaps,
        body=config_map(namespace, "contested", "theirs"),
        namespace=namespace,
        field_manager=OTHER_MANAGER,
        force_conflicts=False,
    )
    with pytest.raises(ConflictError) as caught:
        cluster.apply(config_map(namespace, "contested", "ours"))
    message = str(caught.value)
    assert caught.value.status == 409
    assert OTHER_MANAGER in message and ".data.mode" in message
    live = cluster.get("v1", "ConfigMap", "contested", namespace)
    assert live is not None and live["data"] == {"mode": "theirs"}
    cluster.apply(config_map(namespace, "contested", "theirs"))  # same value: shared, no conflict


@pytest.mark.k8s
def test_invalid_service_is_rejected_with_422(cluster, namespace):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "invalid-port", "namespace": namespace},
        "spec": {"selector": {"app": "x"}, "ports": [{"name": "pg", "port": 70000}]},
    }
    with pytest.raises(InvalidObjectError) as caught:
        cluster.apply(service)
    assert caught.value.status == 422
    assert "Service" in str(caught.value) and "invalid-port" in str(caught.value)
    assert cluster.get("v1", "Service", "invalid-port", namespace) is None


@pytest.mark.k8s
def test_immutable_secret_rejects_a_change(cluster, namespace):
    def secret(value: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "frozen", "namespace": namespace},
            "type": "Opaque",
            "immutable": True,
            "stringData": {"password": value},
        }

    cluster.apply(secret(SECRET_VALUE))
    cluster.apply(secret(SECRET_VALUE))  # unchanged: accepted
    with pytest.raises(ImmutableError) as caught:
        cluster.apply(secret(SECRET_VALUE + "-changed"))
    assert caught.value.status == 422
    message = str(caught.value)
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    assert SECRET_VALUE not in message and encoded not in message
    live = cluster.get("v1", "Secret", "frozen", namespace)
    assert live is not None
    assert base64.b64decode(live["data"]["password"]).decode() == SECRET_VALUE


@pytest.mark.k8s
def test_statefulset_scale_subresource(cluster, namespace):
    labels = {"app": "tiny"}
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "tiny", "namespace": namespace, "labels": labels},
        "spec": {
            "serviceName": "tiny",
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]},
            },
        },
    }
    cluster.apply(statefulset)
    cluster.scale("StatefulSet", "tiny", namespace, 0)
    live = cluster.get("apps/v1", "StatefulSet", "tiny", namespace)
    assert live is not None and live["spec"]["replicas"] == 0
    lines: list[str] = []
    wait_scaled_down(cluster, namespace, ["tiny"], timeout=60, log=lines.append, poll=1.0)
    assert lines[-1].endswith(f"scaled down in namespace {namespace}")
    assert isinstance(cluster.events_for(namespace, "tiny"), list)
    with pytest.raises(ClusterError) as caught:
        cluster.scale("StatefulSet", "missing", namespace, 0)
    assert caught.value.status == 404


@pytest.mark.k8s
def test_dry_run_validates_without_creating_even_in_a_namespace_to_come(cluster, namespace):
    missing = f"{namespace}-later"
    good = config_map(missing, "checked", "a")
    cluster.dry_run(good)
    assert cluster.get("v1", "Namespace", missing, None) is None
    assert cluster.list("v1", "ConfigMap", "default", "test=checked") == []
    bad = {**config_map(missing, "checked", "a"), "data": {"not a key!": "a"}}
    with pytest.raises(InvalidObjectError) as caught:
        cluster.dry_run(bad)
    assert "checked" in str(caught.value) and "dry run" in str(caught.value)
    cluster.dry_run(config_map(namespace, "in-place", "a"))
    assert cluster.get("v1", "ConfigMap", "in-place", namespace) is None


def secret_with(namespace: str, name: str, **fields: object) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace}, **fields}  # fmt: skip


@pytest.mark.k8s
def test_apply_drops_fields_no_longer_sent_and_stores_string_data_as_data(cluster, namespace):
    cluster.apply(config_map(namespace, "shrinking", "a"))
    smaller = config_map(namespace, "shrinking", "a")
    del smaller["metadata"]["labels"]
    live = cluster.apply(smaller)
    assert "labels" not in live["metadata"] or "test" not in live["metadata"]["labels"]
    live = cluster.apply(secret_with(namespace, "plain", stringData={"password": SECRET_VALUE}))
    assert "stringData" not in live
    assert base64.b64decode(live["data"]["password"]).decode() == SECRET_VALUE


@pytest.mark.k8s
def test_no_secret_value_appears_in_the_servers_refusals(cluster, namespace):
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    refused = [
        secret_with(namespace, "bad-key", data={"not a key!": encoded}),
        secret_with(namespace, "bad-base64", data={"password": SECRET_VALUE + "!"}),
        secret_with(namespace, "Bad_Name", stringData={"password": SECRET_VALUE}),
    ]
    for obj in refused:
        for action in (cluster.apply, cluster.dry_run):
            with pytest.raises(ClusterError) as caught:
                action(obj)
            message = str(caught.value)
            assert obj["metadata"]["name"] in message
            assert SECRET_VALUE not in message and encoded not in message


@pytest.mark.k8s
def test_a_statefulset_whose_pods_never_start_times_out_naming_it(cluster, namespace):
    labels = {"app": "stuck"}
    cluster.apply({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "stuck", "namespace": namespace, "labels": labels},
        "spec": {"serviceName": "stuck", "replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}}},
    })  # fmt: skip
    lines: list[str] = []
    with pytest.raises(ClusterError) as caught:  # no kubelet watches this namespace
        wait_statefulsets_ready(cluster, namespace, ["stuck"], timeout=3, log=lines.append,
                                poll=0.5)  # fmt: skip
    message = str(caught.value)
    assert f"namespace {namespace} to be ready: stuck 0/1 ready" in message
    assert "Check:" in message and lines
