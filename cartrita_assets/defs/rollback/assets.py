"""v1_reinstated: v1 serving again as its verified backup recorded it, v2 stopped."""

from collections.abc import Callable

import dagster as dg

from cartrita_assets.backup.store import BackupStore
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.backup.assets import v1_backup
from cartrita_assets.defs.common import OWNERS, current_backup, progress, user_errors
from cartrita_assets.defs.facts import restored_database, short_error
from cartrita_assets.errors import PreflightError, RestoreError
from cartrita_assets.follow import frozen
from cartrita_assets.follow import steps as follow_steps
from cartrita_assets.resources.follow import FollowStore
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.serving import ServingResource
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.restore.steps import restore_postgres, restore_redis, verify_backup
from cartrita_assets.rollback.steps import (
    V1Reference,
    backup_reference,
    check_can_restore,
    compare_v1,
    reference_for,
    restore_env_file,
    v2_changes_since,
)

Log = Callable[[str], None]


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
    follow: FollowStore,
    serving: ServingResource,
    migration_lock: MigrationLock,
) -> dg.MaterializeResult:
    """v1 serving again exactly as the verified backup recorded it (after a follow-mode cutover:
    as the cutover froze it, follow-period writes included), the application's .env back on
    v1's settings, follow mode's objects gone from v1, and v2 stopped. v1 is overwritten only
    when it differs and the run config confirms it; otherwise nothing is changed. The local
    pooler and read replica, when running, are stopped with v2."""
    with user_errors():
        migration_lock.hold(context)
        log = progress(context)
        folder, manifest = current_backup(context, backups)
        verify_backup(folder, manifest)
        settings = v1.settings(log)
        reference = reference_for(folder, manifest, follow.path())
        before = compare_v1(settings, reference)
        log(f"v1 against {reference.name}: {before.describe()}")
        if before.any() and not config.confirm_overwrite_v1:
            raise PreflightError(
                f"v1 differs from {reference.name} ({before.describe()}). Rolling back "
                f"would overwrite v1 with backup {manifest.backup_id} and lose those changes. "
                "Nothing was changed (v2 is still running). To proceed, set "
                "confirm_overwrite_v1: true in the v1_reinstated run config."
            )
        if before.any():
            check_can_restore(settings)
        metadata: dict[str, object] = {"v1_reference": reference.name}
        if reference.follow_cutover:
            metadata["v2_writes_not_carried_back"] = _v2_writes(context, v2, reference, log)
        # follow mode's objects go first: v1 takes writes again (and a restore can write)
        removed = follow_steps.abort(
            settings, follow.path(), log, v2_admin=v2.admin,
            v2_redis=lambda: v2.redis() if settings.redis else None,
        )  # fmt: skip
        metadata["follow_objects_removed"] = "; ".join(removed) or "none"
        stopped = serving.stop_local(v2) + v2.stop(log)
        action = f"none needed: v1 equals {reference.name}"
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
            # v1 now holds the backup: the frozen state is gone with what it described
            frozen.forget(follow.path())
            reference = backup_reference(folder, manifest)
            action = f"restored from backup {manifest.backup_id} ({before.describe()})"
        env_action = restore_env_file(v1.env_path(log), log)
        after = compare_v1(settings, reference)
        if after.any():
            raise RestoreError(f"v1 still differs from {reference.name} after the rollback: "
                               f"{after.describe()}")  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                "backup_id": manifest.backup_id,
                "v2_stopped": ", ".join(stopped) or "nothing was running",
                "v1_before": before.describe(),
                "v1_action": action,
                "env_file": env_action,
                "v1_verified": f"equal to {reference.name}",
                **metadata,
            }
        )


def _v2_writes(
    context: dg.AssetExecutionContext, v2: V2Target, reference: V1Reference, log: Log
) -> str:
    """Which of v1's tables v2 changed after the follow-mode switch (those writes stay in v2)."""
    database = restored_database(context.instance)
    if database is None:
        return "unknown: no restored v2 database is recorded"
    try:
        changed = v2_changes_since(v2.admin(database), reference)
    except Exception as exc:  # v2 may already be down: the rollback does not need it
        return f"unknown: v2 could not be read ({short_error(exc)})"
    if changed:
        log(f"v2 took writes after the switch in {', '.join(changed)}; they stay only in v2 "
            "(its volumes are kept) and are not carried back to v1")  # fmt: skip
        return ", ".join(changed)
    return "none"
