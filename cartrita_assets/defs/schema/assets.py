"""schema_version: v2's schema at the newest migration of sql/migrations."""

import dagster as dg

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, table_md, user_errors
from cartrita_assets.defs.facts import target_database
from cartrita_assets.defs.restore.assets import restored_db
from cartrita_assets.paths import data_path
from cartrita_assets.pg.connect import connect
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.schema import MigrationRunner, status_rows
from cartrita_assets.schema.files import load_migrations
from cartrita_assets.schema.history import read_history


@dg.asset(group_name="v2", kinds={"postgres", "sql"}, owners=OWNERS, deps=[restored_db])
def schema_version(
    context: dg.AssetExecutionContext, v1: V1Source, v2: V2Target, migration_lock: MigrationLock
) -> dg.MaterializeResult:
    """v2's database with every migration of sql/migrations applied in order, each checksummed
    and recorded in schema_migrations (the embeddings table, the search functions, metrics)."""
    with user_errors():
        migration_lock.hold(context)
        database = target_database(context)
        runner = MigrationRunner(
            v2.admin(database),
            data_path("sql") / "migrations",
            app_role=v1.settings().postgres.user,
            applied_by=f"schema_version asset, run {context.run_id[:8]}",
            log=progress(context),
        )
        applied = runner.migrate()
        rows = runner.status()
        current = max((r["version"] for r in rows if r["applied_at"]), default="none")
        return dg.MaterializeResult(
            metadata={
                "database": database,
                "current_version": str(current),
                "applied_now": ", ".join(m.filename for m in applied) or "nothing pending",
                "applied_count": len(applied),
                "history": table_md(
                    ["version", "name", "state", "applied_at", "ms", "checksum"],
                    [
                        [
                            r["version"],
                            r["name"],
                            r["state"],
                            r["applied_at"],
                            r["duration_ms"],
                            r["checksum"],
                        ]
                        for r in rows
                    ],
                ),  # fmt: skip
            }
        )


def history_rows(v2: V2Target, database: str) -> list[dict[str, object]]:
    """Status rows for the files against the database's history (used by the checks)."""
    with connect(v2.admin(database), role="v2 PostgreSQL") as conn:
        history = read_history(conn)
    return status_rows(load_migrations(data_path("sql") / "migrations"), history)
