"""The kubernetes environment end to end on the test run's real API server: demo v1 -> forward on
a fresh namespace -> the same run again (converges, nothing re-created) -> rollback -> forward.

Once in the default namespace, once in the namespace CARTRITA_NAMESPACE names, once with a v1
.env holding only the PostgreSQL and Redis keys. The stand-in kubelet marks the Pods ready.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from support.kube_env import KubeEnv, kube_env
from support.runs import check_results, event_log_text, failure_messages, run_job
from support.scratch import embedding_cache

from cartrita_assets.cluster.k8s.cluster import KubernetesCluster

# The control plane is started once per worker: every k8s test runs on the same one
# (support/groups.py says why the mark is written here).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("k8s-control-plane")]

NAMESPACED = (("v1", "Secret"), ("v1", "Service"), ("apps/v1", "StatefulSet"))
OTHER_KINDS = (("v1", "Service"), ("apps/v1", "StatefulSet"), ("v1", "Pod"),
               ("v1", "PersistentVolumeClaim"), ("v1", "Event"),
               ("apps/v1", "ControllerRevision"))  # fmt: skip


def identities(cluster: KubernetesCluster, namespace: str) -> dict[tuple[str, str], tuple]:
    """(kind, name) -> (uid, version) of the objects the forward run applies: the generation of
    a StatefulSet (its status changes with its pods), else the resourceVersion."""
    out = {}
    for api, kind in NAMESPACED:
        for obj in cluster.list(api, kind, namespace):
            meta = obj["metadata"]
            version = meta["generation"] if kind == "StatefulSet" else meta["resourceVersion"]
            out[(kind, meta["name"])] = (meta["uid"], version)
    namespace_meta = cluster.get("v1", "Namespace", namespace, None)["metadata"]
    out[("Namespace", namespace)] = (namespace_meta["uid"], namespace_meta["resourceVersion"])
    return out


def secret_values(cluster: KubernetesCluster, namespace: str) -> list[str]:
    """Every credential-like value the run's Secrets hold (decoded)."""
    return [
        base64.b64decode(value).decode()
        for secret in cluster.list("v1", "Secret", namespace)
        for key, value in (secret.get("data") or {}).items()
        if any(part in key for part in ("PASSWORD", "URL", "KEY", "SECRET"))
    ]


def left_behind(env: KubeEnv, kubeconfig: str, control_plane_logs: list[Path]) -> str:
    """The kubeconfig, the control plane's logs and every rendered file of the run."""
    files = [Path(kubeconfig), *control_plane_logs, *env.state.rglob("*.yaml")]
    return "\n".join(p.read_text(errors="replace") for p in files if p.is_file())


def assert_namespace_everywhere(cluster: KubernetesCluster, env: KubeEnv) -> None:
    kinds = {kind for kind, _name in identities(cluster, env.namespace)}
    assert {"Secret", "Service", "StatefulSet"} <= kinds
    secrets = cluster.list("v1", "Secret", env.namespace)
    urls = [base64.b64decode(s["data"][k]).decode() for s in secrets
            for k in ("DATABASE_URL", "REDIS_URL") if k in (s.get("data") or {})]  # fmt: skip
    assert len(urls) == 2
    assert all(f".{env.namespace}.svc.cluster.local:" in url for url in urls)
    job = (env.state / "kubernetes" / "job-db-migrate.yaml").read_text()
    postgres_secret = next(s for s in secrets if "DATABASE_URL" in (s.get("data") or {}))
    assert f"namespace: {env.namespace}" in job
    assert f"name: {postgres_secret['metadata']['name']}" in job


def run_cycle(env: KubeEnv, cluster: KubernetesCluster, instance) -> list[str]:
    """forward, forward again, rollback, forward; returns what each run did."""
    ns, resources = env.namespace, env.resources
    first = run_job(resources, instance)
    assert first.success, failure_messages(first)
    assert check_results(first) and all(check_results(first).values()), check_results(first)
    assert_namespace_everywhere(cluster, env)
    before = identities(cluster, ns)

    again = run_job(resources, instance)
    assert again.success, failure_messages(again)
    assert identities(cluster, ns) == before  # same uids, and not even updated

    back = run_job(resources, instance, job="rollback_job")
    assert back.success, failure_messages(back)
    for name in ("postgres", "redis"):
        assert cluster.get("apps/v1", "StatefulSet", name, ns)["spec"]["replicas"] == 0
    assert cluster.list("v1", "Pod", ns) == []

    after = run_job(resources, instance)
    assert after.success, failure_messages(after)
    assert cluster.get("apps/v1", "StatefulSet", "postgres", ns)["status"]["readyReplicas"] == 1

    values = secret_values(cluster, ns)
    others = [o for api, kind in OTHER_KINDS for o in cluster.list(api, kind, ns)]
    logs = [event_log_text(instance, r.run_id) for r in (first, again, back, after)]
    for value in values:
        assert value not in str(others)
        assert all(value not in log for log in logs)
    return [r.run_id for r in (first, again, back, after)]


@pytest.mark.parametrize(
    ("namespace", "app_keys"),
    [(None, True), ("cartrita-alt", True), ("cartrita-no-app-keys", False)],
    ids=["default-namespace", "CARTRITA_NAMESPACE", "no-application-keys"],
)
def test_forward_again_rollback_forward(
    namespace, app_keys, demo_v1, test_dir, base_dir, kubeconfig, cluster, control_plane,
    instance, monkeypatch,
):  # fmt: skip
    cache = embedding_cache(base_dir)
    with kube_env(test_dir, demo_v1.env_file, kubeconfig, monkeypatch, namespace=namespace,
                  app_keys=app_keys, embedding_cache=cache) as env:  # fmt: skip
        assert env.namespace == (namespace or "data-stack")
        assert cluster.get("v1", "Namespace", env.namespace, None) is None  # a fresh namespace
        run_cycle(env, cluster, instance)
        exposed = left_behind(env, kubeconfig, control_plane.log_paths())
        for value in secret_values(cluster, env.namespace):
            assert value not in exposed
        app = next(s for s in cluster.list("v1", "Secret", env.namespace)
                   if s["metadata"]["name"].startswith("cartrita-app-"))  # fmt: skip
        assert bool(app.get("data")) is app_keys
