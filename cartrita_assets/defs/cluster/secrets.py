"""k8s_secrets: v1's credentials as immutable Kubernetes Secrets, and the cutover env files."""

import dataclasses
import stat

import dagster as dg

from cartrita_assets.cluster.envswitch import write_env_files
from cartrita_assets.cluster.k8s.secret_objects import build_secrets
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, table_md, user_errors
from cartrita_assets.envfile import V1Settings
from cartrita_assets.envfile.cutover import cutover_file
from cartrita_assets.pg.connect import connect, server_major
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v1 import V1Source


@dg.asset(group_name="v2", kinds={"kubernetes"}, owners=OWNERS)
def k8s_secrets(
    context: dg.AssetExecutionContext, v1: V1Source, v2: V2Target, migration_lock: MigrationLock
) -> dg.MaterializeResult:
    """Three immutable Secrets built from v1's .env (PostgreSQL credentials, the Redis password,
    the remaining application keys), named by a hash of their content; beside that .env, an exact
    copy .env.v1 and a .env.v2 pointing at v2 (both 0600). The .env itself is never changed.
    Every object of v2 is validated first (in a cluster, by a server-side dry run)."""
    with user_errors():
        migration_lock.hold(context)
        log = progress(context)
        settings = v1.settings(log)
        env_path = v1.env_path(log)
        v1_redis_password = settings.redis.password if settings.redis else None
        redis_password = v2.redis_password(v1_redis_password)
        secrets = build_secrets(settings, v2.namespace, redis_password)
        names = secrets.names()
        # every object of the forward run is checked before the first one changes
        planned = [*v2.cluster_objects(v1_major(settings), names), v2.migrate_job(names)]
        validated = v2.preflight([*secrets.objects(), *planned], log)
        published = v2.publish_secrets(secrets.objects(), log)
        pg_endpoint, redis_endpoint = v2.app_endpoints()
        if v1_redis_password != redis_password:  # v1 had no Redis password: v2 has one
            redis_endpoint = dataclasses.replace(redis_endpoint, password=redis_password)
        v1_copy, v2_copy = write_env_files(env_path, pg_endpoint, redis_endpoint)
        rows = [
            [name, key, fp]
            for name, keys in secrets.fingerprints().items()
            for key, fp in keys.items()
        ]
        return dg.MaterializeResult(
            metadata={
                **{f"{role}_secret": name for role, name in secrets.names().items()},
                "secret_keys": table_md(["secret", "key", "sha256 fingerprint"], rows),
                "namespace": v2.namespace,
                "validated": validated,
                "published": published,
                "env_v1": dg.MetadataValue.path(str(v1_copy)),
                "env_v2": dg.MetadataValue.path(str(v2_copy)),
                "v2_postgres_endpoint": f"{pg_endpoint.host}:{pg_endpoint.port}",
                "v2_redis_endpoint": f"{redis_endpoint.host}:{redis_endpoint.port}",
            }
        )


def v1_major(settings: V1Settings) -> int:
    """v1's PostgreSQL major: v2's image must be at least that."""
    with connect(settings.postgres, role="v1 PostgreSQL", read_only=True) as conn:
        return server_major(conn)


@dg.asset_check(asset=k8s_secrets, blocking=True)
def env_copies_are_exact_and_private(v1: V1Source) -> dg.AssetCheckResult:
    """.env.v1 is byte-for-byte v1's .env, and both copies are readable by their owner only."""
    env_path = v1.env_path()
    problems = []
    for version in ("v1", "v2"):
        copy = cutover_file(env_path, version)
        if not copy.exists():
            problems.append(f"{copy.name} missing")
        elif stat.S_IMODE(copy.stat().st_mode) & 0o077:
            problems.append(f"{copy.name} is readable by others")
    v1_copy = cutover_file(env_path, "v1")
    if v1_copy.exists() and v1_copy.read_bytes() != env_path.read_bytes():
        problems.append(".env.v1 differs from .env")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"env_file": str(env_path), "problems": "; ".join(problems) or "none"},
    )
