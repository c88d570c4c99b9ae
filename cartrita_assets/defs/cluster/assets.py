"""pgvector_cluster: v2's PostgreSQL with pgvector and its Redis, up and reachable."""

import dagster as dg

from cartrita_assets.backup.snapshot import redis_version
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.cluster.secrets import k8s_secrets, v1_major
from cartrita_assets.defs.common import OWNERS, progress, user_errors
from cartrita_assets.defs.facts import required_metadata
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.redis_copy.versions import ServerVersion, check_not_older, server_version
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v1 import V1Source


@dg.asset(
    group_name="v2", kinds={"postgres", "redis", "kubernetes"}, owners=OWNERS, deps=[k8s_secrets]
)
def pgvector_cluster(
    context: dg.AssetExecutionContext, v1: V1Source, v2: V2Target, migration_lock: MigrationLock
) -> dg.MaterializeResult:
    """v2's PostgreSQL (with the pgvector extension available) and Redis, running and accepting
    authenticated connections; v2 Redis requires v1's Redis password, so credentials carry over."""
    with user_errors():
        migration_lock.hold(context)
        settings = v1.settings(progress(context))
        v1_redis_password = settings.redis.password if settings.redis else None
        names = secret_names(context)
        v1_redis = redis_version(settings.redis) if settings.redis else ""
        # objects first: in a cluster, readiness is waited on after they are applied
        manifests = v2.publish_cluster(v1_major(settings), names, progress(context), v1_redis)
        endpoints = v2.ensure_running(progress(context), v2.redis_password(v1_redis_password))
        v2_redis = check_redis_not_older(v1_redis, v2)
        with connect(v2.admin(), role="v2 PostgreSQL") as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            vector = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
        return dg.MaterializeResult(
            metadata={
                **endpoints,
                "manifests": manifests,
                "postgres_version": version,
                "pgvector_version": vector[0] if vector else "not available",
                "v1_redis_version": v1_redis or "v1 has no Redis",
                "v2_redis_version": v2_redis,
            }
        )


def check_redis_not_older(v1_redis: str, v2: V2Target) -> str:
    """v2 Redis's version, refused (before anything is written to it) when older than v1's."""
    v2_redis = server_version(client_for(v2.redis()))
    if v1_redis:
        check_not_older(ServerVersion.parse(v1_redis), v2_redis)
    return str(v2_redis)


def secret_names(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The hash-suffixed Secret names k8s_secrets last created."""
    missing = "There are no Secrets yet: materialize k8s_secrets first."
    meta = required_metadata(context.instance, "k8s_secrets", missing)
    return {role: str(meta[f"{role}_secret"]) for role in ("postgres", "redis", "app")}
