"""restored_db: v1's data in v2, restored from the verified backup."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import dagster as dg

from cartrita_assets.backup.store import BackupStore
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.backup.assets import v1_backup
from cartrita_assets.defs.cluster.assets import pgvector_cluster
from cartrita_assets.defs.common import OWNERS, current_backup, progress, user_errors
from cartrita_assets.defs.follow.facts import following
from cartrita_assets.pg.loaded import LoadedState
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.restore.steps import (
    RestoreOutcome,
    restore_postgres,
    restore_redis,
    verify_backup,
)


class RestoreConfig(dg.Config):
    """Run-time knobs of the restore."""

    replace_existing_database: bool = False
    """Replace a v2 database that this project did not restore, or that changed since."""
    redis_copy_path: Literal["auto", "dump", "logical"] = "auto"
    """How Redis keys reach v2: ``dump`` (byte-exact DUMP/RESTORE, where v2 loads v1's
    payloads), ``logical`` (rebuilt command by command), or ``auto`` (dump where possible)."""


@dg.asset(
    group_name="v2",
    kinds={"postgres", "redis"},
    owners=OWNERS,
    deps=[v1_backup, pgvector_cluster],
)
def restored_db(
    context: dg.AssetExecutionContext,
    config: RestoreConfig,
    v1: V1Source,
    v2: V2Target,
    backups: BackupStore,
    migration_lock: MigrationLock,
) -> dg.MaterializeResult:
    """v1's database and Redis keys in v2, restored from the latest verified backup (checksums
    verified first, no major downgrade, pgvector created before the restore)."""
    with user_errors():
        migration_lock.hold(context)
        log = progress(context)
        folder, manifest = current_backup(context, backups)
        verify_backup(folder, manifest)
        log(f"Backup {manifest.backup_id}: every file matches its sha256")
        app = v1.settings(log).postgres
        with ThreadPoolExecutor(max_workers=1) as beside:
            # v2's Redis is written while pg_restore runs: the two share no server
            redis_job = None
            redis_restored, redis_paths = 0, "v1 has no Redis"
            if following(context):
                # v2 Redis becomes v1's replica in replication_stream: a full sync, then every
                # write
                redis_paths = "left to replication (follow mode: v2 REPLICAOF v1)"
            elif manifest.redis is not None:
                redis_job = beside.submit(
                    restore_redis, v2.redis(), folder, log, config.redis_copy_path,
                    manifest.redis.server_version, sum(manifest.redis.keys_per_db.values()),
                )  # fmt: skip
            outcome = restore_postgres(
                v2.admin(), folder, manifest, app,
                log=log, replace_existing=config.replace_existing_database, jobs=backups.dump_jobs,
                hash_while_loading=True,
            )  # fmt: skip
            if redis_job is not None:
                summary = redis_job.result()
                redis_restored = summary.restored
                redis_paths = ", ".join(f"db{db}: {how}" for db, how in summary.paths.items())
        return dg.MaterializeResult(
            metadata={
                "backup_id": manifest.backup_id,
                "v1_source": manifest.source.get("note", ""),
                "database": outcome.database,
                "action": outcome.action,
                "restore_seconds": round(outcome.seconds, 2),
                "v2_postgres": v2.admin(outcome.database).masked_dsn(),
                "roles": ", ".join(f"{k}: {v}" for k, v in outcome.roles.items()) or "unchanged",
                "extensions": ", ".join(outcome.extensions),
                "tables": len(manifest.postgres.tables),
                "dagster/row_count": sum(t.rows for t in manifest.postgres.tables.values()),
                "redis_keys_restored": redis_restored,
                "redis_copy_paths": redis_paths or "no keys",
                **loaded_metadata(manifest.backup_id, outcome),
            }
        )


# restored_db's metadata entry holding each table as hashed right after pg_restore wrote it
LOADED_KEY = "v2_tables_hashed_while_restoring"


def loaded_metadata(backup_id: str, outcome: RestoreOutcome) -> dict[str, dg.MetadataValue]:
    """The tables as hashed while restoring, for postgres_matches_v1 (none: nothing restored)."""
    if not outcome.loaded:
        return {}
    recorded = {
        "backup_id": backup_id,
        "database_oid": outcome.database_oid,
        "tables": {name: state.to_json() for name, state in outcome.loaded.items()},
    }
    return {LOADED_KEY: dg.MetadataValue.json(recorded)}


def recorded_loaded(
    metadata: dict[str, Any] | None, backup_id: str
) -> tuple[int, dict[str, LoadedState]]:
    """(database OID, tables) restored_db recorded for ``backup_id``; (0, {}) when it recorded
    none for that backup."""
    recorded = (metadata or {}).get(LOADED_KEY)
    if not isinstance(recorded, dict) or recorded.get("backup_id") != backup_id:
        return 0, {}
    tables = {n: LoadedState.from_json(v) for n, v in (recorded.get("tables") or {}).items()}
    return int(recorded.get("database_oid") or 0), tables
