"""v2_backup: a consistent, checksummed backup of the serving v2 (PostgreSQL and Redis)."""

import time

import dagster as dg

from cartrita_assets.backup.snapshot import take_origin_backup
from cartrita_assets.backup.v2_store import V2BackupStore, v2_origin
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, table_md, user_errors
from cartrita_assets.defs.facts import v2_database
from cartrita_assets.defs.restore.assets import restored_db


@dg.asset(
    group_name="v2_operations",
    kinds={"postgres", "redis"},
    owners=OWNERS,
    deps=[restored_db],
)
def v2_backup(
    context: dg.AssetExecutionContext, v2: V2Target, v2_backups: V2BackupStore
) -> dg.MaterializeResult:
    """A pg_dump of v2's serving database taken in one snapshot, v2's Redis keys with their
    TTLs, and the same manifest as v1_backup's (row counts, content hashes, sequences, file
    checksums). v2 is only read; the blocking check restores it before older backups go."""
    with user_errors():
        database, why = v2_database(context.instance)
        if database is None:
            raise dg.Failure(description=f"Nothing to back up: {why}.", allow_retries=False)
        origin = v2_origin(v2.admin(database), v2.redis())
        started = time.monotonic()
        folder, manifest = take_origin_backup(
            origin,
            v2_backups.path(),
            source={"note": f"v2 database {database}", "kind": "v2", "database": database},
            log=progress(context),
            min_free_ratio=v2_backups.min_free_ratio,
            jobs=v2_backups.dump_jobs,
        )
        seconds = time.monotonic() - started
        pg = manifest.postgres
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        entries = v2_backups.entries()
        return dg.MaterializeResult(
            metadata={
                "backup_id": manifest.backup_id,
                "backup_path": dg.MetadataValue.path(str(folder)),
                "database": database,
                "v2_postgres": origin.postgres.masked_dsn(),
                "backup_seconds": round(seconds, 2),
                "backup_bytes": size,
                "tables": len(pg.tables),
                "dagster/row_count": sum(t.rows for t in pg.tables.values()),
                "sequences": len(pg.sequences),
                "redis_keys": sum(manifest.redis.keys_per_db.values()) if manifest.redis else 0,
                "retention": (
                    f"keep {v2_backups.keep} newest, max age {v2_backups.max_age_days} days "
                    "(0: none); older ones go after a newer one is verified"
                ),
                "backups": table_md(
                    ["backup", "created", "MiB", "verified"],
                    [
                        [
                            e.backup_id,
                            e.created_at.isoformat(timespec="seconds"),
                            round(e.bytes / 2**20, 1),
                            {True: "yes", False: "FAILED"}.get(e.verified, "not yet"),
                        ]
                        for e in entries
                    ],
                ),  # fmt: skip
            }
        )
