"""pgvector_cluster: v2's PostgreSQL with pgvector and its Redis, up and reachable."""

import dagster as dg

from cartrita_assets.defs.common import OWNERS, progress, user_errors
from cartrita_assets.pg.connect import connect
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v2 import V2Target


@dg.asset(group_name="v2", kinds={"postgres", "redis", "kubernetes"}, owners=OWNERS)
def pgvector_cluster(
    context: dg.AssetExecutionContext, v2: V2Target, migration_lock: MigrationLock
) -> dg.MaterializeResult:
    """v2's PostgreSQL (with the pgvector extension available) and Redis, running and accepting
    authenticated connections."""
    with user_errors():
        migration_lock.hold(context)
        endpoints = v2.ensure_running(progress(context))
        with connect(v2.admin(), role="v2 PostgreSQL") as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            vector = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
        return dg.MaterializeResult(
            metadata={
                **endpoints,
                "postgres_version": version,
                "pgvector_version": vector[0] if vector else "not available",
            }
        )
