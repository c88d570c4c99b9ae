"""The newest v2 backup restores and matches its manifest; then retention removes old ones."""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from cartrita_assets.backup.retention import (
    apply_retention,
    over_policy,
    plan_retention,
    record_verification,
)
from cartrita_assets.backup.v2_store import V2BackupStore
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import progress
from cartrita_assets.defs.facts import required_metadata
from cartrita_assets.defs.v2_operations.assets import v2_backup
from cartrita_assets.restore.scratch import run_restore_test


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "v2_backup_restores",
            asset=v2_backup,
            blocking=True,
            description=(
                "The newest v2 backup's files match their sha256 sums, and it restores into a "
                "scratch database whose every table (rows, content hash) and sequence equal its "
                "manifest; the scratch database is dropped after."
            ),
        ),
        dg.AssetCheckSpec(
            "v2_backup_retention",
            asset=v2_backup,
            description=(
                "After the restore test passed, backups beyond the kept count or age are removed "
                "(never one newer than the newest verified); warns when the store is over policy."
            ),
        ),
    ]
)
def v2_backup_verified(
    context: dg.AssetCheckExecutionContext, v2: V2Target, v2_backups: V2BackupStore
) -> Iterator[dg.AssetCheckResult]:
    """Restore-test the newest backup, then apply retention: one function, so removal always
    follows a verification that passed."""
    recorded = required_metadata(
        context.instance, "v2_backup", "There is no v2 backup yet: materialize v2_backup first."
    )
    folder, manifest = v2_backups.load(str(recorded["backup_id"]))
    test = run_restore_test(v2.admin(), folder, manifest, progress(context), v2_backups.dump_jobs)
    record_verification(
        folder, test.passed, "; ".join(test.problems[:20]) or "restored and matched"
    )
    yield dg.AssetCheckResult(
        check_name="v2_backup_restores",
        passed=test.passed,
        metadata={
            "backup_id": manifest.backup_id,
            "scratch_database": f"{test.scratch_database} (dropped)",
            "restore_test_seconds": round(test.seconds, 2),
            "tables_compared": len(manifest.postgres.tables),
            "rows_restored": test.rows,
            "sequences_compared": len(manifest.postgres.sequences),
            "redis_keys_read_back": test.redis_keys,
            "problems": len(test.problems),
            "details": "; ".join(test.problems[:20]) or "restored and matched its manifest",
        },
    )
    now = datetime.now(UTC)
    plan = plan_retention(v2_backups.entries(), v2_backups.keep, v2_backups.max_age_days, now)
    removed = apply_retention(v2_backups.path(), plan) if test.passed else []
    reason = plan.reason if test.passed else "nothing removed: the newest backup failed its test"
    left = v2_backups.entries()
    over = over_policy(left, v2_backups.keep, v2_backups.max_age_days, now)
    yield dg.AssetCheckResult(
        check_name="v2_backup_retention",
        passed=not over,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "keep": v2_backups.keep,
            "max_age_days": v2_backups.max_age_days,
            "removed": ", ".join(removed) or "none",
            "removed_count": len(removed),
            "backups_left": len(left),
            "oldest_left": left[-1].backup_id if left else "none",
            "decision": reason,
            "over_policy": "; ".join(over) or "none",
        },
    )
