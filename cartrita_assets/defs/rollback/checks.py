"""The check that the rollback left v1 equal to its backup."""

import dagster as dg

from cartrita_assets.backup.store import BackupStore
from cartrita_assets.defs.common import current_backup
from cartrita_assets.defs.rollback.assets import v1_reinstated
from cartrita_assets.resources.follow import FollowStore
from cartrita_assets.resources.v1 import V1Source
from cartrita_assets.rollback.steps import compare_v1, reference_for


@dg.asset_check(asset=v1_reinstated, blocking=True)
def v1_matches_backup(
    context: dg.AssetCheckExecutionContext,
    v1: V1Source,
    backups: BackupStore,
    follow: FollowStore,
) -> dg.AssetCheckResult:
    """v1's tables (rows and content hashes) and Redis keys equal the backup's manifest (after a
    follow-mode cutover: v1's state at the freeze, which the cutover recorded)."""
    folder, manifest = current_backup(context, backups)
    reference = reference_for(folder, manifest, follow.path())
    difference = compare_v1(v1.settings(), reference)
    return dg.AssetCheckResult(
        passed=not difference.any(),
        metadata={
            "backup_id": manifest.backup_id,
            "reference": reference.name,
            "tables_differing": len(difference.tables),
            "details": difference.describe(),
        },
    )
