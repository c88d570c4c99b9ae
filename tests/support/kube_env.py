"""The kubernetes environment wired to the test run's real API server, for the k8s tests.

Resources come from ``environments.build_resources`` exactly as ``CARTRITA_ENV=kubernetes``
makes them (namespace, NodePorts, node host all from the environment variables a user sets);
what a kubelet would run behind the NodePorts is a local PostgreSQL and Redis set up the way the
postgres and redis images set themselves up from the Secrets: v1's POSTGRES_USER as superuser,
the empty POSTGRES_DB database, Redis requiring v1's password.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cartrita_assets.cluster.k8s.cluster import KubernetesCluster
from cartrita_assets.environments import build_resources
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.redis import LocalRedis
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.roles import ensure_role
from cartrita_assets.resources.embedder import EmbedderResource
from support.kubelet import StandInKubelet
from support.ports import free_port

APP_KEYS = ("OPENAI_API_KEY", "JWT_SECRET", "NODE_ENV")


@dataclass
class KubeEnv:
    """One kubernetes-environment setup: its resources, namespace and files."""

    resources: dict[str, Any]
    namespace: str
    env_file: Path
    state: Path
    kubelet: StandInKubelet


def v1_env_text(demo_env: Path, app_keys: bool) -> str:
    """The demo v1's .env, optionally without its application keys."""
    lines = demo_env.read_text().splitlines()
    if not app_keys:
        lines = [line for line in lines if not line.startswith(APP_KEYS)]
    return "\n".join(lines) + "\n"


def set_environment(
    monkeypatch: pytest.MonkeyPatch, folder: Path, kubeconfig: str, namespace: str | None
) -> None:
    """The variables a user sets for the kubernetes environment (namespace only when given)."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("CARTRITA_ENV", "kubernetes")
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    monkeypatch.setenv("CARTRITA_NODE_HOST", "127.0.0.1")
    monkeypatch.setenv("CARTRITA_V1_ENV_FILE", str(folder / "app" / ".env"))
    monkeypatch.setenv("CARTRITA_BACKUP_DIR", str(folder / "backups"))
    monkeypatch.setenv("CARTRITA_REPORTS_DIR", str(folder / "reports"))
    if namespace:
        monkeypatch.setenv("CARTRITA_NAMESPACE", namespace)
    else:
        monkeypatch.delenv("CARTRITA_NAMESPACE", raising=False)


def image_like_postgres(folder: Path, port: int, settings: Any) -> LocalPostgres:
    """A PostgreSQL set up as the pgvector image sets itself up from the Secret."""
    pg = LocalPostgres(folder, port, durable=False)
    admin = pg.ensure_running()
    with connect(admin, role="test") as conn:
        ensure_role(conn, settings.user, {"superuser": True, "login": True}, settings.password)
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(settings.dbname), sql.Identifier(settings.user)
            )
        )
    return pg


@contextlib.contextmanager
def kube_env(
    folder: Path,
    demo_env: Path,
    kubeconfig: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    namespace: str | None = None,
    app_keys: bool = True,
    embedding_cache: Path | None = None,
) -> Iterator[KubeEnv]:
    """The kubernetes environment on the real API server, with its stand-in kubelet running."""
    env_file = folder / "app" / ".env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(v1_env_text(demo_env, app_keys))
    env_file.chmod(0o600)
    pg_port, redis_port = free_port(), free_port()
    set_environment(monkeypatch, folder, kubeconfig, namespace)
    monkeypatch.setenv("CARTRITA_V2_PG_PORT", str(pg_port))
    monkeypatch.setenv("CARTRITA_V2_REDIS_PORT", str(redis_port))
    resources = build_resources(state=folder / "state")
    if embedding_cache is not None:
        resources["embedder"] = EmbedderResource(cache_path=str(embedding_cache))
    settings = resources["v1"].settings()
    pg = image_like_postgres(folder / "node-pg", pg_port, settings.postgres)
    rds = LocalRedis(folder / "node-redis", redis_port)
    try:
        rds.ensure_running(settings.redis.password)
        ns = resources["v2"].namespace
        with StandInKubelet(kubeconfig, [ns]) as kubelet:
            try:
                yield KubeEnv(resources, ns, env_file, folder / "state", kubelet)
            finally:  # frees its NodePorts for the next test; the kubelet ends its Pods
                KubernetesCluster.from_environment(kubeconfig).delete("v1", "Namespace", ns, None)
    finally:
        pg.stop()
        rds.stop()
