"""The cluster seam through its in-memory stand-in, the waits, and error translation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException
from support.k8s_standin import InMemoryCluster

from cartrita_assets.cluster.k8s.cluster import (
    FIELD_MANAGER,
    Cluster,
    ClusterError,
    ConflictError,
    ImmutableError,
    InvalidObjectError,
    KubernetesCluster,
    translate_api_error,
)
from cartrita_assets.cluster.k8s.wait import wait_scaled_down, wait_statefulsets_ready
from cartrita_assets.errors import CartritaError

NS = "data-stack"
SECRET_VALUE = "Sup3r-Secret-Value-4242"


def namespace(name: str = NS) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def config_map(value: str = "a", name: str = "settings") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "cartrita"}},
        "data": {"mode": value},
    }


def secret(value: str = SECRET_VALUE, immutable: bool = False) -> dict:
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "postgres-auth", "namespace": NS},
        "type": "Opaque",
        "stringData": {"password": value},
    }
    if immutable:
        obj["immutable"] = True
    return obj


def service(port: object = 5432) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "postgres", "namespace": NS},
        "spec": {"selector": {"app": "postgres"}, "ports": [{"name": "pg", "port": port}]},
    }


def statefulset(name: str = "postgres", replicas: int = 1, image: str = "postgres:18") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


@pytest.fixture
def cluster() -> InMemoryCluster:
    stand_in = InMemoryCluster()
    stand_in.apply(namespace())
    return stand_in


def test_stand_in_satisfies_the_protocol(cluster):
    seam: Cluster = cluster
    assert seam.get("v1", "Namespace", NS, None) is not None
    assert issubclass(ConflictError, ClusterError) and issubclass(ClusterError, CartritaError)


# ------------------------------------------------------------------ apply


def test_apply_creates_then_is_idempotent(cluster):
    first = cluster.apply(config_map())
    assert first["data"] == {"mode": "a"}
    assert first["metadata"]["uid"] and first["metadata"]["resourceVersion"]
    second = cluster.apply(config_map())
    assert second == first  # no change at all, not even resourceVersion
    assert cluster.get("v1", "ConfigMap", "settings", NS) == first
    assert cluster.field_managers("v1", "ConfigMap", "settings", NS) == {
        FIELD_MANAGER: [".data.mode", ".metadata.labels.app"]
    }


def test_apply_updates_own_fields_and_drops_fields_no_longer_sent(cluster):
    cluster.apply(config_map())
    obj = config_map("b")
    obj["data"]["extra"] = "x"
    cluster.apply(obj)
    updated = cluster.apply(config_map("c"))
    assert updated["data"] == {"mode": "c"}


def test_another_manager_changing_an_owned_field_conflicts(cluster):
    cluster.apply(config_map("a"))
    with pytest.raises(ConflictError) as caught:
        cluster.apply(config_map("b"), field_manager="kubectl-edit")
    message = str(caught.value)
    assert "kubectl-edit" in message and FIELD_MANAGER in message and ".data.mode" in message
    assert caught.value.status == 409
    assert cluster.get("v1", "ConfigMap", "settings", NS)["data"] == {"mode": "a"}


def test_another_manager_applying_the_same_value_shares_ownership(cluster):
    cluster.apply(config_map("a"))
    cluster.apply(config_map("a"), field_manager="helm")
    managers = cluster.field_managers("v1", "ConfigMap", "settings", NS)
    assert ".data.mode" in managers["helm"] and ".data.mode" in managers[FIELD_MANAGER]
    with pytest.raises(ConflictError, match="helm"):
        cluster.apply(config_map("z"))


def test_service_port_as_a_string_is_invalid(cluster):
    with pytest.raises(InvalidObjectError) as caught:
        cluster.apply(service("abc"))
    message = str(caught.value)
    assert "Service data-stack/postgres" in message and ".spec.ports.0.port" in message
    assert caught.value.status == 422
    assert cluster.get("v1", "Service", "postgres", NS) is None


def test_unknown_field_is_invalid_in_strict_mode(cluster):
    obj = config_map()
    obj["spec"] = {"oops": True}
    with pytest.raises(InvalidObjectError, match="'spec' was unexpected"):
        cluster.apply(obj)


def test_unknown_kind_and_missing_namespace_are_cluster_errors(cluster):
    with pytest.raises(ClusterError, match="does not serve Widget"):
        cluster.apply({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}})
    elsewhere = config_map()
    elsewhere["metadata"]["namespace"] = "nowhere"
    with pytest.raises(ClusterError, match='namespaces "nowhere" not found') as caught:
        cluster.apply(elsewhere)
    assert caught.value.status == 404
    no_namespace = config_map()
    del no_namespace["metadata"]["namespace"]
    with pytest.raises(InvalidObjectError, match="metadata.namespace"):
        cluster.apply(no_namespace)


def test_secret_string_data_is_stored_as_base64_data(cluster):
    live = cluster.apply(secret())
    assert "stringData" not in live
    assert base64.b64decode(live["data"]["password"]).decode() == SECRET_VALUE


def test_immutable_secret_rejects_a_change_and_accepts_the_same_apply(cluster):
    cluster.apply(secret(immutable=True))
    again = cluster.apply(secret(immutable=True))
    assert again["immutable"] is True
    with pytest.raises(ImmutableError) as caught:
        cluster.apply(secret("another-password-123", immutable=True))
    assert "immutable" in str(caught.value) and caught.value.status == 422
    with pytest.raises(ImmutableError):
        cluster.apply(secret(immutable=False))
    live = cluster.get("v1", "Secret", "postgres-auth", NS)
    assert base64.b64decode(live["data"]["password"]).decode() == SECRET_VALUE


def test_delete_and_namespace_cascade(cluster):
    cluster.apply(config_map())
    assert cluster.delete("v1", "ConfigMap", "settings", NS) is True
    assert cluster.delete("v1", "ConfigMap", "settings", NS) is False
    cluster.apply(config_map())
    assert cluster.delete("v1", "Namespace", NS, None) is True
    assert cluster.get("v1", "ConfigMap", "settings", None) is None
    assert cluster.list("v1", "ConfigMap", NS) == []


def test_list_with_label_selector(cluster):
    cluster.apply(config_map(name="one"))
    other = config_map(name="two")
    other["metadata"]["labels"] = {"app": "other"}
    cluster.apply(other)
    names = [o["metadata"]["name"] for o in cluster.list("v1", "ConfigMap", NS, "app=cartrita")]
    assert names == ["one"]
    assert len(cluster.list("v1", "ConfigMap", NS)) == 2
    assert [o["metadata"]["name"] for o in cluster.list("v1", "ConfigMap", NS, "app!=cartrita")]


# ------------------------------------------------------------------ scale, events, logs


def test_scale_sets_replicas_and_takes_ownership_of_them(cluster):
    cluster.apply(statefulset(replicas=1))
    generation = cluster.get("apps/v1", "StatefulSet", "postgres", NS)["metadata"]["generation"]
    cluster.scale("StatefulSet", "postgres", NS, 0)
    live = cluster.get("apps/v1", "StatefulSet", "postgres", NS)
    assert live["spec"]["replicas"] == 0
    assert live["metadata"]["generation"] == generation + 1
    # as on a real server: re-applying a different replicas now conflicts with the scale update
    with pytest.raises(ConflictError, match="scale"):
        cluster.apply(statefulset(replicas=1))
    cluster.apply(statefulset(replicas=0))  # the same value is fine
    cluster.scale("StatefulSet", "postgres", NS, 1)
    cluster.apply(statefulset(replicas=1))


def test_scale_errors(cluster):
    with pytest.raises(ClusterError, match="404"):
        cluster.scale("StatefulSet", "missing", NS, 1)
    cluster.apply(statefulset())
    with pytest.raises(InvalidObjectError):
        cluster.scale("StatefulSet", "postgres", NS, -1)


def test_events_newest_last_and_pod_logs(cluster):
    cluster.add_event(NS, "postgres-0", "Pulling", "pulling image", type="Normal")
    cluster.add_event(NS, "redis-0", "BackOff", "back-off")
    cluster.add_event(NS, "postgres-0", "Failed", "ErrImagePull")
    events = cluster.events_for(NS, "postgres")
    assert [e["reason"] for e in events] == ["Pulling", "Failed"]
    cluster.add_pod(NS, "postgres-0", labels={"app": "postgres"}, logs="a\nb\nc\n")
    assert cluster.pod_logs(NS, "postgres-0", tail_lines=2) == "b\nc"
    assert len(cluster.list("v1", "Pod", NS, "app=postgres")) == 1
    with pytest.raises(ClusterError, match="404"):
        cluster.pod_logs(NS, "nope")


# ------------------------------------------------------------------ waiting


class FakeTime:
    """A clock that only moves when slept on; runs a callback at given sleep counts."""

    def __init__(self, actions: dict[int, object] | None = None) -> None:
        self.now = 0.0
        self.sleeps = 0
        self.actions = actions or {}

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        action = self.actions.get(self.sleeps)
        if callable(action):
            action()


def test_wait_ready_after_some_polls_logs_progress(cluster):
    cluster.apply(statefulset("postgres"))
    cluster.apply(statefulset("redis", image="redis:7"))
    cluster.set_ready("StatefulSet", "redis", NS, 1)
    fake = FakeTime({8: lambda: cluster.set_ready("StatefulSet", "postgres", NS, 1)})
    lines: list[str] = []
    wait_statefulsets_ready(
        cluster, NS, ["postgres", "redis"], 300, lines.append, 2.0, fake.clock, fake.sleep
    )
    assert fake.sleeps == 8
    progress = [line for line in lines if "waiting" in line]
    assert progress[0] == "postgres 0/1 ready, redis 1/1 ready, waiting 0s of 300s"
    assert len(progress) == 2  # at most one line every ~10 s over 16 s
    assert lines[-1] == "postgres, redis ready in namespace data-stack"


def test_wait_ready_needs_the_latest_generation_observed(cluster):
    cluster.apply(statefulset())
    cluster.set_ready("StatefulSet", "postgres", NS, 1)
    cluster.apply(statefulset(image="postgres:18.1"))  # new generation, old status
    fake = FakeTime({3: lambda: cluster.set_ready("StatefulSet", "postgres", NS, 1)})
    wait_statefulsets_ready(
        cluster, NS, ["postgres"], 60, lambda _: None, 2.0, fake.clock, fake.sleep
    )
    assert fake.sleeps == 3


def test_wait_ready_times_out_with_the_warning_events(cluster):
    cluster.apply(statefulset(image="postgres:does-not-exist"))
    cluster.add_event(
        NS, "postgres", "SuccessfulCreate", "create Pod postgres-0", "Normal", kind="StatefulSet"
    )
    cluster.add_event(NS, "postgres-0", "Failed", 'Failed to pull image "postgres:does-not-exist"')
    cluster.add_event(NS, "postgres-0", "ImagePullBackOff", "Back-off pulling image")
    cluster.add_event(NS, "postgres-exporter-0", "BackOff", "unrelated pod")
    fake = FakeTime()
    with pytest.raises(ClusterError) as caught:
        wait_statefulsets_ready(
            cluster, NS, ["postgres"], 30, lambda _: None, 2.0, fake.clock, fake.sleep
        )
    message = str(caught.value)
    assert "Timed out after 30s" in message and "postgres 0/1 ready" in message
    assert "Pod/postgres-0 ImagePullBackOff: Back-off pulling image" in message
    assert "does-not-exist" in message
    assert "imagePullSecrets" in message  # what to check
    assert "unrelated pod" not in message and "SuccessfulCreate" not in message
    assert fake.now == pytest.approx(30)


def test_wait_ready_timeout_explains_unbound_claims_and_probes(cluster):
    cluster.apply(statefulset())
    cluster.add_event(
        NS,
        "postgres-0",
        "FailedScheduling",
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
    )
    cluster.add_event(
        NS,
        "data-postgres-0",
        "ProvisioningFailed",
        "storageclass not found",
        kind="PersistentVolumeClaim",
    )
    cluster.add_event(NS, "postgres-0", "Unhealthy", "Readiness probe failed: no response")
    fake = FakeTime()
    with pytest.raises(ClusterError) as caught:
        wait_statefulsets_ready(
            cluster, NS, ["postgres"], 10, lambda _: None, 2.0, fake.clock, fake.sleep
        )
    message = str(caught.value)
    assert "PersistentVolumeClaim/data-postgres-0 ProvisioningFailed" in message
    assert "StorageClass" in message and "kubectl logs" in message


def test_wait_ready_for_a_missing_statefulset_times_out_clearly(cluster):
    fake = FakeTime()
    with pytest.raises(ClusterError, match="postgres does not exist"):
        wait_statefulsets_ready(
            cluster, NS, ["postgres"], 5, lambda _: None, 2.0, fake.clock, fake.sleep
        )


def test_wait_scaled_down(cluster):
    cluster.apply(statefulset())
    cluster.set_ready("StatefulSet", "postgres", NS, 1)
    cluster.scale("StatefulSet", "postgres", NS, 0)

    def terminated() -> None:
        cluster.set_ready("StatefulSet", "postgres", NS, 0)

    fake = FakeTime({2: terminated})
    lines: list[str] = []
    wait_scaled_down(
        cluster, NS, ["postgres", "gone"], 60, lines.append, 2.0, fake.clock, fake.sleep
    )
    assert fake.sleeps == 2
    assert "postgres 1 pod(s), 1 ready" in lines[0]


def test_wait_scaled_down_times_out_when_not_scaled(cluster):
    cluster.apply(statefulset())
    cluster.set_ready("StatefulSet", "postgres", NS, 1)
    fake = FakeTime()
    with pytest.raises(ClusterError, match="scale it to 0 first"):
        wait_scaled_down(cluster, NS, ["postgres"], 6, lambda _: None, 2.0, fake.clock, fake.sleep)


# ------------------------------------------------------------------ no secret in any message


def _all_text(exc: BaseException) -> str:
    """Message and repr of the exception and of the chain a traceback shows (Dagster, like
    Python, skips a context suppressed by ``raise ... from None``)."""
    parts: list[str] = []
    shown: BaseException | None = exc
    while shown is not None:
        parts += [str(shown), repr(shown)]
        hidden = shown.__suppress_context__
        shown = shown.__cause__ or (None if hidden else shown.__context__)
    return "\n".join(parts)


def test_no_secret_value_appears_in_any_error(cluster):
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    failures: list[BaseException] = []

    def expect_failure(action) -> None:
        with pytest.raises(ClusterError) as caught:
            action()
        failures.append(caught.value)

    cluster.apply(secret(immutable=True))
    expect_failure(lambda: cluster.apply(secret("changed-value-777", immutable=True)))
    expect_failure(lambda: cluster.apply(secret("other-value-555", True), field_manager="other"))
    bad_type = secret()
    bad_type["data"] = {"password": 42424242, "other": SECRET_VALUE}
    del bad_type["stringData"]
    expect_failure(lambda: cluster.apply(bad_type))
    not_string = secret()
    not_string["stringData"] = {"password": [SECRET_VALUE]}
    expect_failure(lambda: cluster.apply(not_string))
    not_base64 = secret()
    not_base64["data"] = {"password": SECRET_VALUE + "!"}
    del not_base64["stringData"]
    expect_failure(lambda: cluster.apply(not_base64))
    extra = secret()
    extra["bogus"] = SECRET_VALUE
    expect_failure(lambda: cluster.apply(extra))
    owned = secret("first-value-111")
    owned["metadata"]["name"] = "owned"
    cluster.apply(owned)
    expect_failure(
        lambda: cluster.apply(secret() | {"metadata": owned["metadata"]}, field_manager="x")
    )
    expect_failure(lambda: cluster.apply(secret() | {"metadata": {"name": "s", "namespace": "no"}}))
    api_error = ApiException(status=422, reason="Unprocessable Entity")
    api_error.body = json.dumps({"message": f"data[password]: Invalid value: {SECRET_VALUE!r}"})
    failures.append(translate_api_error(api_error, "apply Secret x", [SECRET_VALUE]))

    assert len(failures) == 9
    for failure in failures:
        text = _all_text(failure)
        for leaked in (
            SECRET_VALUE,
            encoded,
            "42424242",
            "changed-value-777",
            "first-value-111",
            "other-value-555",
        ):
            assert leaked not in text, (leaked, text)


# ------------------------------------------------------------------ the real seam, offline


def _api_error(status: int, reason: str, message: str) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": message, "code": status}).encode()
    return error


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (
            409,
            'Apply failed with 1 conflict: conflict with "kubectl" using v1: .data.a',
            ConflictError,
        ),
        (
            422,
            'Secret "s" is invalid: data: Forbidden: field is immutable when `immutable` is set',
            ImmutableError,
        ),
        (
            422,
            'StatefulSet.apps "p" is invalid: spec: Forbidden: updates to statefulset spec for '
            "fields other than 'replicas' are forbidden",
            ImmutableError,
        ),
        (
            422,
            'Service "p" is invalid: spec.ports[0].port: Invalid value: 70000: must be between',
            InvalidObjectError,
        ),
        (
            500,
            "failed to create typed patch object (/v1, Kind=Service): .spec.ports[0].port: "
            "expected numeric (int or float), got string",
            InvalidObjectError,
        ),
        (403, 'secrets is forbidden: User "x" cannot patch', ClusterError),
    ],
)
def test_api_errors_are_translated(status, message, expected):
    error = translate_api_error(_api_error(status, "Reason", message), "apply X ns/name")
    assert type(error) is expected
    assert error.status == status and message in str(error) and "apply X ns/name" in str(error)


def test_from_environment_names_what_it_tried(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterError) as caught:
        KubernetesCluster.from_environment()
    message = str(caught.value)
    assert "KUBERNETES_SERVICE_HOST is not set" in message
    assert "$KUBECONFIG: not set" in message and ".kube/config: does not exist" in message
    with pytest.raises(ClusterError, match="nope.yaml"):
        KubernetesCluster.from_environment(kubeconfig=str(tmp_path / "nope.yaml"))


def test_from_environment_prefers_an_explicit_kubeconfig(tmp_path: Path, monkeypatch):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "tok-not-in-messages"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    cluster = KubernetesCluster.from_environment(kubeconfig=str(kubeconfig))
    assert str(kubeconfig) in cluster.source
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert KubernetesCluster.from_environment(context="ctx").source.endswith("context ctx")
    with pytest.raises(ClusterError) as caught:
        cluster.get("v1", "ConfigMap", "x", NS)  # nothing listens on port 1
    assert "unreachable" in str(caught.value) and "tok-not-in-messages" not in str(caught.value)


class _Instance:
    def __init__(self, data: dict) -> None:
        self.data = data

    def to_dict(self) -> dict:
        return self.data


class _Resource:
    namespaced = True

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.subresources = {"scale": f"{kind}/scale"} if kind == "StatefulSet" else {}


class _Resources:
    def get(self, api_version: str, kind: str) -> _Resource:
        return _Resource(kind)


class FakeDynamic:
    """Records what KubernetesCluster asks the official DynamicClient to do."""

    def __init__(self, error: ApiException | None = None) -> None:
        self.resources = _Resources()
        self.calls: list[tuple[str, dict]] = []
        self.error = error

    def _answer(self, name: str, kwargs: dict, result: dict) -> _Instance:
        self.calls.append((name, kwargs))
        if self.error is not None:
            from kubernetes.dynamic.exceptions import api_exception

            raise api_exception(self.error)
        return _Instance(result)

    def server_side_apply(self, resource, **kwargs) -> _Instance:
        return self._answer("server_side_apply", kwargs, kwargs["body"])

    def patch(self, resource, **kwargs) -> _Instance:
        return self._answer("patch", {"resource": resource, **kwargs}, {})

    def get(self, resource, **kwargs) -> _Instance:
        return self._answer("get", kwargs, {"items": [{"involvedObject": {"name": "p-0"}}]})

    def delete(self, resource, **kwargs) -> _Instance:
        return self._answer("delete", kwargs, {})


def _real_with(fake: FakeDynamic) -> KubernetesCluster:
    from kubernetes.client import ApiClient, Configuration

    cluster = KubernetesCluster(ApiClient(Configuration()), "fake")
    cluster._dynamic_client = fake  # type: ignore[assignment]
    return cluster


def test_real_apply_is_server_side_apply_without_force():
    fake = FakeDynamic()
    live = _real_with(fake).apply(config_map())
    assert live == config_map()
    name, kwargs = fake.calls[0]
    assert name == "server_side_apply"
    assert kwargs["field_manager"] == FIELD_MANAGER and kwargs["force_conflicts"] is False
    assert kwargs["namespace"] == NS and kwargs["name"] == "settings"


def test_real_scale_patches_the_scale_subresource():
    fake = FakeDynamic()
    _real_with(fake).scale("StatefulSet", "postgres", NS, 0)
    name, kwargs = fake.calls[0]
    assert name == "patch" and kwargs["resource"] == "StatefulSet/scale"
    assert kwargs["body"] == {"spec": {"replicas": 0}}
    assert kwargs["content_type"] == "application/merge-patch+json"


def test_real_get_and_delete_map_404_and_translate_other_errors():
    missing = _real_with(FakeDynamic(_api_error(404, "Not Found", "not found")))
    assert missing.get("v1", "ConfigMap", "x", NS) is None
    assert missing.delete("v1", "ConfigMap", "x", NS) is False
    conflict = _api_error(409, "Conflict", 'conflict with "helm" using v1: .data.password')
    with pytest.raises(ConflictError, match="helm") as caught:
        _real_with(FakeDynamic(conflict)).apply(secret())
    assert SECRET_VALUE not in str(caught.value)


def test_real_events_are_filtered_by_prefix():
    events = _real_with(FakeDynamic()).events_for(NS, "p")
    assert [e["involvedObject"]["name"] for e in events] == ["p-0"]
    assert _real_with(FakeDynamic()).events_for(NS, "q") == []
