"""The pooler serves the application, and the replica serves what the primary serves."""

import dataclasses

import dagster as dg
import psycopg

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.facts import target_database
from cartrita_assets.defs.serving.assets import app_settings, v2_pooler, v2_read_replica
from cartrita_assets.errors import CartritaError
from cartrita_assets.pg.connect import connect
from cartrita_assets.resources.serving import ServingResource
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.serving.pooler import pooled_connect
from cartrita_assets.serving.probe import (
    differences,
    p50_ms,
    sample_queries,
    search_results,
)
from cartrita_assets.serving.replica import measure_lag


def _failed(exc: Exception) -> dg.AssetCheckResult:
    text = str(exc).strip().splitlines()
    return dg.AssetCheckResult(
        passed=False, metadata={"error": f"{type(exc).__name__}: {text[0] if text else ''}"}
    )


@dg.asset_check(asset=v2_pooler, blocking=True)
def pooler_serves_application_role(
    context: dg.AssetCheckExecutionContext, v1: V1Source, v2: V2Target, serving: ServingResource
) -> dg.AssetCheckResult:
    """The application role logs in through PgBouncer and `similarity_search` / `hybrid_search`
    return what they return on a direct connection, run often enough that psycopg would prepare
    them, on two pooled connections at once; p50 latency pooled and direct."""
    try:
        app = app_settings(context, v1, v2)
        pooled_app = serving.pooler(v2).settings(app)
        with (
            connect(app, role="v2 PostgreSQL (application role)") as direct,
            pooled_connect(pooled_app) as pooled,
            pooled_connect(pooled_app) as other,
        ):
            user = pooled.execute("SELECT current_user").fetchone()
            queries = sample_queries(direct)
            expected = search_results(direct, queries)
            # interleaved: the two clients' transactions go to different server connections
            got = [search_results(c, queries) for c in (pooled, other, pooled, other)]
            problems = [d for result in got for d in differences(expected, result)]
            pooled_p50, direct_p50 = p50_ms(pooled, queries), p50_ms(direct, queries)
    except (CartritaError, psycopg.Error) as exc:
        return _failed(exc)
    login = user is not None and user[0] == app.user
    return dg.AssetCheckResult(
        passed=login and not problems,
        metadata={
            "logged_in_as": user[0] if user else "nobody",
            "searches_compared": len(queries) * 2 * len(got),
            "differences": "; ".join(problems[:5]) or "none",
            "p50_ms_pooled": pooled_p50,
            "p50_ms_direct": direct_p50,
            "prepared_statements": "off on pooled connections (prepare_threshold=None)",
        },
    )


@dg.asset_check(asset=v2_read_replica, blocking=True)
def replica_serves_primary_results(
    context: dg.AssetCheckExecutionContext, v1: V1Source, v2: V2Target, serving: ServingResource
) -> dg.AssetCheckResult:
    """A write on v2 reaches the replica, and the same searches on the replica return what they
    return on v2 (as the application role); lag in bytes and milliseconds."""
    try:
        app = app_settings(context, v1, v2)
        replica = serving.replica(v2)
        database = target_database(context)
        on_replica = replica.settings(database)
        replica_app = dataclasses.replace(on_replica, user=app.user, password=app.password)
        with connect(app, role="v2 PostgreSQL (application role)") as primary:
            queries = sample_queries(primary)
            expected = search_results(primary, queries)
        # the heartbeat is written after the primary's searches: once the replica shows it, it
        # has replayed everything they saw
        lag = measure_lag(v2.admin(), replica.settings())
        with connect(replica_app, role="v2 read replica (application role)") as standby:
            got = search_results(standby, queries)
            read_only = standby.execute("SELECT pg_is_in_recovery()").fetchone()
    except (CartritaError, psycopg.Error) as exc:
        return _failed(exc)
    problems = differences(expected, got)
    return dg.AssetCheckResult(
        passed=not problems and bool(read_only and read_only[0]),
        metadata={
            "searches_compared": len(queries) * 2,
            "differences": "; ".join(problems[:5]) or "none",
            "replica_is_standby": bool(read_only and read_only[0]),
            "lag_bytes": lag.bytes,
            "write_visible_after_ms": round(lag.seconds * 1000, 3),
            "replay_lag_ms": None if lag.replay_lag_seconds is None
            else round(lag.replay_lag_seconds * 1000, 3),
        },
    )  # fmt: skip
