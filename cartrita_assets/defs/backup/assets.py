"""v1_backup: a consistent, checksummed snapshot of v1 PostgreSQL and Redis."""

import dagster as dg

from cartrita_assets.backup.snapshot import take_backup
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, table_md, user_errors
from cartrita_assets.defs.follow.begin import BackupConfig, backup_in_follow_mode
from cartrita_assets.resources.follow import FollowStore
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v1 import V1Source


@dg.asset(
    group_name="v1",
    kinds={"postgres", "redis"},
    owners=OWNERS,
)
def v1_backup(
    context: dg.AssetExecutionContext,
    config: BackupConfig,
    v1: V1Source,
    backups: BackupStore,
    migration_lock: MigrationLock,
    follow: FollowStore,
    v2: V2Target,
) -> dg.MaterializeResult:
    """A pg_dump of v1 taken in one snapshot, v1's Redis keys with their TTLs, and a manifest of
    row counts, content hashes, sequences and file checksums that every later step is checked
    against. v1 is only read.
    """
    with user_errors():
        migration_lock.hold(context)
        source = v1.describe()
        context.log.info(source["note"])
        settings = v1.settings(progress(context))
        if config.follow:
            folder, manifest, follow_md = backup_in_follow_mode(
                context, config, settings, source, backups, follow, v2
            )
        else:
            follow_md = {}
            folder, manifest = take_backup(
                settings,
                backups.path(),
                source=source,
                log=progress(context),
                min_free_ratio=backups.min_free_ratio,
                jobs=backups.dump_jobs,
            )
        pg = manifest.postgres
        rows = sum(t.rows for t in pg.tables.values())
        return dg.MaterializeResult(
            metadata={
                "v1_source": source["note"],
                "backup_id": manifest.backup_id,
                "backup_path": dg.MetadataValue.path(str(folder)),
                "v1_postgres": settings.postgres.masked_dsn(),
                "v1_server_version": pg.server_version,
                "database_bytes": pg.size_bytes,
                "tables": len(pg.tables),
                "dagster/row_count": rows,
                "sequences": len(pg.sequences),
                "extensions": ", ".join(f"{k} {v['version']}" for k, v in pg.extensions.items()),
                "redis_keys": sum(manifest.redis.keys_per_db.values()) if manifest.redis else 0,
                **follow_md,
                "table_rows": table_md(
                    ["table", "rows"], [[name, t.rows] for name, t in sorted(pg.tables.items())]
                ),
            }
        )
