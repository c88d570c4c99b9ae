"""KubernetesV2Target against the test run's real API server: the Secrets
and the k8s/ objects apply (twice, idempotently) into a namespace made for the run; a rollback's
scale-down and the following re-apply do not conflict. Pods need not become ready here."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from cartrita_assets.cluster import k8s_target
from cartrita_assets.cluster.k8s.cluster import KubernetesCluster
from cartrita_assets.cluster.k8s.secret_objects import build_secrets
from cartrita_assets.cluster.k8s_target import KubernetesV2Target
from cartrita_assets.envfile import V1Settings, parse_env_text
from cartrita_assets.resources.v1 import V1Source

# The control plane is started once per worker: every k8s test runs on the same one
# (support/groups.py says why the mark is written here).
pytestmark = pytest.mark.xdist_group("k8s-control-plane")

ENV = (
    "POSTGRES_USER=cartrita\nPOSTGRES_PASSWORD=pw-{token}\nPOSTGRES_DB=cartrita\n"
    "REDIS_HOST=r\nREDIS_PASSWORD=rp-{token}\n"
)
# nodePort 0: the server allocates one, so the test never collides with a real 32432


@pytest.fixture
def target(
    tmp_path, monkeypatch, cluster
) -> Iterator[tuple[KubernetesV2Target, KubernetesCluster, V1Settings]]:
    monkeypatch.setattr(k8s_target, "make_cluster", lambda *_a: cluster)
    namespace = f"cartrita-test-{secrets.token_hex(4)}"
    env_file = tmp_path / ".env"
    env_file.write_text(ENV.format(token=secrets.token_hex(8)))
    settings = V1Settings.from_env_file(parse_env_text(env_file.read_text(), str(env_file)))
    v2 = KubernetesV2Target(v1=V1Source(env_file=str(env_file), allow_demo=False),
                            namespace=namespace, state_dir=str(tmp_path / "state"),
                            pg_node_port=0, redis_node_port=0)  # fmt: skip
    try:
        yield v2, cluster, settings
    finally:
        cluster.delete("v1", "Namespace", namespace, None)


def test_secrets_and_cluster_apply_idempotently_and_survive_a_scale_down(target):
    v2, cluster, settings = target
    log: list[str] = []
    objects = build_secrets(settings, v2.namespace, "redis-pw").objects()
    names = {
        str(o["metadata"]["name"]).rsplit("-", 1)[0].removeprefix("cartrita-"): o["metadata"][
            "name"
        ]
        for o in objects
    }
    for _ in range(2):
        v2.publish_secrets(objects, log.append)
    assert cluster.get("v1", "Secret", names["postgres"], v2.namespace)["immutable"] is True
    for _ in range(2):
        v2.publish_cluster(18, names, log.append)
    assert cluster.get("apps/v1", "StatefulSet", "postgres", v2.namespace) is not None
    for name in ("postgres", "redis"):
        cluster.scale("StatefulSet", name, v2.namespace, 0)  # what rollback does
    v2.publish_cluster(18, names, log.append)  # scales back, then applies without a conflict
    live = cluster.get("apps/v1", "StatefulSet", "postgres", v2.namespace)
    assert live["spec"]["replicas"] == 1


def test_a_migration_job_applied_from_an_earlier_render_does_not_block_the_preflight(target):
    v2, cluster, _settings = target
    log: list[str] = []
    cluster.apply(v2._namespace())
    cluster.apply(v2.migrate_job({"postgres": "cartrita-postgres-0000000000"}))
    newer = v2.migrate_job({"postgres": "cartrita-postgres-1111111111"})
    assert "dry run" in v2.preflight([newer], log.append)  # its template is immutable
    live = cluster.get("batch/v1", "Job", "cartrita-db-migrate", v2.namespace)
    refs = str(live["spec"]["template"])
    assert "cartrita-postgres-0000000000" in refs and "1111111111" not in refs
