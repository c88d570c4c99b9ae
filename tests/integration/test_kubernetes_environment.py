"""The kubernetes environment end to end, with the API server played by the in-memory stand-in
and the NodePorts played by local servers set up the way the pgvector image sets itself up
(v1's POSTGRES_USER as superuser, Redis requiring v1's password)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from helpers import check_results, event_log_text, failure_messages, run_job, v1_source
from support.k8s_standin import InMemoryCluster

from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.redis import LocalRedis
from cartrita_assets.local.system import free_port
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.roles import ensure_role
from cartrita_assets.resources import k8s_target
from cartrita_assets.resources.embedder import EmbedderResource
from cartrita_assets.resources.k8s_target import KubernetesV2Target
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.reports import ReportStore
from cartrita_assets.resources.store import BackupStore

pytestmark = pytest.mark.integration


class ClusterWithController(InMemoryCluster):
    """The stand-in plus what a StatefulSet controller would do: pods follow spec.replicas."""

    def apply(self, obj, **kwargs):
        live = super().apply(obj, **kwargs)
        if obj["kind"] == "StatefulSet":
            self._follow(obj["metadata"]["name"], obj["metadata"]["namespace"])
        return live

    def scale(self, kind, name, namespace, replicas):
        super().scale(kind, name, namespace, replicas)
        self._follow(name, namespace)

    def _follow(self, name, namespace):
        replicas = self.get("apps/v1", "StatefulSet", name, namespace)["spec"].get("replicas", 1)
        self.set_ready("StatefulSet", name, namespace, replicas, replicas=replicas,
                       updated_replicas=replicas)  # fmt: skip


@pytest.fixture
def kube(demo_v1, test_dir, monkeypatch):
    env_file = test_dir / "app" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(demo_v1.env_file.read_text())
    v1 = v1_source(demo_v1, env_file)
    settings = v1.settings()
    pg = LocalPostgres(test_dir / "node-pg", free_port(), durable=False)
    rds = LocalRedis(test_dir / "node-redis", free_port())
    admin = pg.ensure_running()
    with connect(admin, role="test") as conn:  # what the image's entrypoint does with the Secret
        ensure_role(conn, settings.postgres.user, {"superuser": True, "login": True},
                    settings.postgres.password)  # fmt: skip
    rds.ensure_running(settings.redis.password)
    cluster = ClusterWithController()
    monkeypatch.setattr(k8s_target, "make_cluster", lambda *_a: cluster)
    target = KubernetesV2Target(
        v1=v1, node_host="127.0.0.1", pg_node_port=pg.port, redis_node_port=rds.port,
        ready_timeout=5, state_dir=str(test_dir / "kube-state"),
    )  # fmt: skip
    resources = {
        "v1": v1,
        "v2": target,
        "backups": BackupStore(root=str(test_dir / "backups")),
        "migration_lock": MigrationLock(path=str(test_dir / "lock"), across_processes=True),
        "embedder": EmbedderResource(),
        "reports": ReportStore(root=str(test_dir / "reports")),
    }
    try:
        yield resources, cluster, env_file
    finally:
        pg.stop()
        rds.stop()


def test_forward_and_rollback_in_the_kubernetes_environment(kube, instance):
    resources, cluster, env_file = kube
    forward = run_job(resources, instance)
    assert forward.success, failure_messages(forward)
    assert all(check_results(forward).values()), check_results(forward)

    secrets = cluster.list("v1", "Secret", "data-stack")
    assert sorted(s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets) == [
        "cartrita-app", "cartrita-postgres", "cartrita-redis"]  # fmt: skip
    assert all(s.get("immutable") for s in secrets)
    postgres = cluster.get("apps/v1", "StatefulSet", "postgres", "data-stack")
    container = postgres["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "pgvector/pgvector:pg18"  # tracks v1's major (18 here)
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert refs == {
        next(s["metadata"]["name"] for s in secrets if "postgres" in s["metadata"]["name"])
    }
    env_v2 = (env_file.parent / ".env.v2").read_text()
    assert f"127.0.0.1:{resources['v2'].pg_node_port}/" in env_v2

    # no Secret value in any non-Secret object or in the run's event log
    credential_keys = {"POSTGRES_PASSWORD", "DATABASE_URL", "REDIS_PASSWORD", "REDIS_URL",
                       "OPENAI_API_KEY", "JWT_SECRET"}  # fmt: skip
    values = [base64.b64decode(v).decode() for s in secrets
              for k, v in s["data"].items() if k in credential_keys]  # fmt: skip
    assert len(values) == 6
    log = event_log_text(instance, forward.run_id)
    others = [
        o
        for kind in ("Service", "StatefulSet", "Namespace")
        for o in cluster.list("apps/v1" if kind == "StatefulSet" else "v1", kind, "data-stack")
    ]
    for value in values:
        assert value not in log
        assert all(value not in str(o) for o in others)

    back = run_job(resources, instance, job="rollback_job")
    assert back.success, failure_messages(back)
    for name in ("postgres", "redis"):
        assert cluster.get("apps/v1", "StatefulSet", name, "data-stack")["spec"]["replicas"] == 0

    status = "\n".join(resources["v2"].status_lines())
    assert "Service" in status and f"5432->{resources['v2'].pg_node_port}" in status

    again = run_job(resources, instance)  # scaled-down StatefulSets come back without a conflict
    assert again.success, failure_messages(again)
    assert cluster.get("apps/v1", "StatefulSet", "postgres", "data-stack")["spec"]["replicas"] == 1


def test_no_v1_env_file_is_an_error_in_kubernetes(test_dir):
    from cartrita_assets.errors import EnvFileError
    from cartrita_assets.resources.v1 import V1Source

    source = V1Source(default_env_file=str(test_dir / "missing.env"), allow_demo=False)
    with pytest.raises(EnvFileError, match="demo v1 is off"):
        source.settings()
    assert not Path(test_dir / "demo-v1").exists()
