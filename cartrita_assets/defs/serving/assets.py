"""v2_pooler and v2_read_replica: the embedded default's PgBouncer and streaming read replica."""

import dataclasses
import subprocess
from collections.abc import Callable

import dagster as dg

from cartrita_assets.cluster.envswitch import Endpoint, write_env_files
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, user_errors
from cartrita_assets.defs.facts import target_database
from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.pg.connect import connect
from cartrita_assets.resources.serving import ServingResource
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.serving.pooler import pgbouncer_binary, pooled_connect, role_verifier
from cartrita_assets.serving.replica import SLOT, measure_lag

GROUP = "v2_serving"


class PoolerConfig(dg.Config):
    """``via_pooler``: also point ``.env.v2``'s PostgreSQL endpoint at the pooler
    (``cartrita forward --via-pooler``)."""

    via_pooler: bool = False


def app_settings(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, v1: V1Source, v2: V2Target
) -> PostgresSettings:
    """The application's role and password (v1's, recreated in v2) on v2's current database."""
    app = v1.settings().postgres
    admin = v2.admin(target_database(context))
    return dataclasses.replace(admin, user=app.user, password=app.password)


@dg.asset(group_name=GROUP, kinds={"postgres"}, owners=OWNERS, deps=["schema_version"])
def v2_pooler(
    context: dg.AssetExecutionContext,
    config: PoolerConfig,
    v1: V1Source,
    v2: V2Target,
    serving: ServingResource,
) -> dg.MaterializeResult:
    """A PgBouncer in front of v2 (transaction pooling, SCRAM with the application role's own
    verifier), accepting the application's logins; optionally .env.v2 points at it."""
    with user_errors():
        log = progress(context)
        app = app_settings(context, v1, v2)
        pooler = serving.pooler(v2, log)
        with connect(v2.admin(), role="v2 PostgreSQL") as conn:
            verifier = role_verifier(conn, app.user)
        pooler.configure({app.user: verifier})
        pooler.ensure_running()
        with pooled_connect(pooler.settings(app)) as conn:
            user = conn.execute("SELECT current_user").fetchone()
        log(f"The application role {user[0] if user else '?'} logs in through PgBouncer")
        env_v2 = "not rewritten (via_pooler is off)"
        if config.via_pooler:
            env_v2 = point_env_at_pooler(v1, v2, pooler.port, log)
        return dg.MaterializeResult(
            metadata={
                "endpoint": f"127.0.0.1:{pooler.port}",
                "server": f"127.0.0.1:{app.port}",
                "pgbouncer": _version(pooler.binary),
                "pool_mode": "transaction",
                "auth": "scram-sha-256 (the role's verifier from pg_authid; no password stored)",
                "config_file": dg.MetadataValue.path(str(pooler.config_file)),
                "auth_file": dg.MetadataValue.path(str(pooler.auth_file)),
                "env_v2": env_v2,
            }
        )


def point_env_at_pooler(v1: V1Source, v2: V2Target, port: int, log: Callable[[str], None]) -> str:
    """Rewrite .env.v2 with the pooler as its PostgreSQL endpoint (Redis as k8s_secrets set it)."""
    settings = v1.settings()
    v1_redis_password = settings.redis.password if settings.redis else None
    redis_password = v2.redis_password(v1_redis_password)
    pg_endpoint, redis_endpoint = v2.app_endpoints()
    if v1_redis_password != redis_password:
        redis_endpoint = dataclasses.replace(redis_endpoint, password=redis_password)
    _, v2_copy = write_env_files(v1.env_path(), Endpoint(pg_endpoint.host, port), redis_endpoint)
    log(f"{v2_copy} now points the application at the pooler (127.0.0.1:{port})")
    return f"{v2_copy} points at the pooler 127.0.0.1:{port}"


def _version(binary: str) -> str:
    out = subprocess.run(
        [pgbouncer_binary(binary), "--version"], capture_output=True, text=True, check=False
    )
    return (out.stdout.splitlines() or ["unknown"])[0]


@dg.asset(group_name=GROUP, kinds={"postgres"}, owners=OWNERS, deps=["schema_version"])
def v2_read_replica(
    context: dg.AssetExecutionContext, v2: V2Target, serving: ServingResource
) -> dg.MaterializeResult:
    """A streaming replica of v2 (hot standby, read-only queries) on its own port, fed from a
    physical replication slot; its lag in the metadata."""
    with user_errors():
        log = progress(context)
        replica = serving.replica(v2, log)
        primary = serving.primary(v2, log)
        action = replica.ensure_running(primary)
        lag = measure_lag(v2.admin(), replica.settings())
        return dg.MaterializeResult(
            metadata={
                "endpoint": f"127.0.0.1:{replica.port}",
                "primary": f"127.0.0.1:{primary.port}",
                "action": action,
                "slot": SLOT,
                "data_dir": dg.MetadataValue.path(str(replica.server().data_dir)),
                "lag_bytes": lag.bytes,
                "write_visible_after_ms": round(lag.seconds * 1000, 3),
                "replay_lag_ms": None if lag.replay_lag_seconds is None
                else round(lag.replay_lag_seconds * 1000, 3),
            }
        )  # fmt: skip
