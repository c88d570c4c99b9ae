"""Checks that v2 can hold vectors and that its Redis answers."""

import time

import dagster as dg
import psycopg
import redis

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.cluster.assets import pgvector_cluster
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.redis_copy.versions import server_version


@dg.asset_check(asset=pgvector_cluster, blocking=True)
def pgvector_extension_available(v2: V2Target) -> dg.AssetCheckResult:
    """The `vector` extension can be created in v2 and computes a distance (tried inside a
    transaction that is rolled back, so nothing is left behind)."""
    try:
        with connect(v2.admin(), role="v2 PostgreSQL", autocommit=False) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            version = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]  # type: ignore[index]
            distance = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector").fetchone()[0]  # type: ignore[index]
            conn.rollback()
    except psycopg.Error as exc:
        return dg.AssetCheckResult(
            passed=False,
            metadata={"error": str(exc).splitlines()[0], "fix": "use a pgvector image"},
        )
    return dg.AssetCheckResult(
        passed=abs(float(distance) - 1.0) < 1e-6,
        metadata={"pgvector_version": version, "l2_distance_probe": float(distance)},
    )


@dg.asset_check(asset=pgvector_cluster, blocking=True)
def redis_responds(v2: V2Target) -> dg.AssetCheckResult:
    """v2 Redis answers an authenticated PING (its server and version in the metadata, e.g.
    ``valkey 9.1.2``)."""
    client = client_for(v2.redis())
    started = time.perf_counter()
    try:
        client.ping()
        version = server_version(client)
    except redis.RedisError as exc:
        return dg.AssetCheckResult(passed=False, metadata={"error": type(exc).__name__})
    return dg.AssetCheckResult(
        passed=True,
        metadata={
            "redis_version": str(version),
            "ping_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
