"""v1_reinstated: v1 serving again as its verified backup recorded it, v2 stopped."""

import dagster as dg

from cartrita_assets.backup.store import BackupStore
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.backup.assets import v1_backup
from cartrita_assets.defs.common import OWNERS, current_backup, progress, user_errors
from cartrita_assets.errors import PreflightError, RestoreError
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.restore.steps import restore_postgres, restore_redis, verify_backup
from cartrita_assets.rollback.steps import check_can_restore, compare_v1, restore_env_file


class RollbackConfig(dg.Config):
    """Run-time knobs of the rollback."""

    confirm_overwrite_v1: bool = False
    """Required when v1 differs from the backup: the rollback then overwrites v1 with it."""


@dg.asset(group_name="rollback", kinds={"postgres", "redis"}, owners=OWNERS, deps=[v1_backup])
def v1_reinstated(
    context: dg.AssetExecutionContext,
    config: RollbackConfig,
    v1: V1Source,
    v2: V2Target,
    backups: BackupStore,
    migration_lock: MigrationLock,
) -> dg.MaterializeResult:
    """v1 serving again exactly as the verified backup recorded it, the application's .env back
    on v1's settings, and v2 stopped. v1 is overwritten only when it differs and the run config
    confirms it; otherwise nothing is changed."""
    with user_errors():
        migration_lock.hold(context)
        log = progress(context)
        folder, manifest = current_backup(context, backups)
        verify_backup(folder, manifest)
        settings = v1.settings(log)
        before = compare_v1(settings, folder, manifest)
        log(f"v1 against backup {manifest.backup_id}: {before.describe()}")
        if before.any() and not config.confirm_overwrite_v1:
            raise PreflightError(
                f"v1 differs from backup {manifest.backup_id} ({before.describe()}). Rolling back "
                "would overwrite v1 with the backup and lose those changes. Nothing was changed "
                "(v2 is still running). To proceed, set confirm_overwrite_v1: true in the "
                "v1_reinstated run config."
            )
        if before.any():
            check_can_restore(settings)
        stopped = v2.stop(log)
        action = "none needed: v1 equals the backup"
        if before.any():
            restore_postgres(
                settings.postgres,
                folder,
                manifest,
                settings.postgres,
                log=log,
                replace_existing=True,
                jobs=backups.dump_jobs,
                label="v1 PostgreSQL",
            )
            if manifest.redis is not None and settings.redis is not None:
                restore_redis(settings.redis, folder, log)
            action = f"restored from backup {manifest.backup_id} ({before.describe()})"
        env_action = restore_env_file(v1.env_path(log), log)
        after = compare_v1(settings, folder, manifest)
        if after.any():
            raise RestoreError(
                f"v1 still differs from the backup after the rollback: {after.describe()}"
            )
        return dg.MaterializeResult(
            metadata={
                "backup_id": manifest.backup_id,
                "v2_stopped": ", ".join(stopped) or "nothing was running",
                "v1_before": before.describe(),
                "v1_action": action,
                "env_file": env_action,
                "v1_verified": "equal to the backup",
            }
        )
