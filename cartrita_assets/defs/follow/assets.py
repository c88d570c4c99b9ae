"""replication_stream and v2_cutover: v2 follows v1 until the switch, then becomes the primary."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import psycopg

from cartrita_assets.cluster.envswitch import write_env_files
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, table_md, user_errors
from cartrita_assets.defs.facts import target_database
from cartrita_assets.defs.follow.facts import following
from cartrita_assets.defs.restore.assets import restored_db
from cartrita_assets.follow import cutover, frozen, steps
from cartrita_assets.follow import ledger as ledgers
from cartrita_assets.follow.verify import SwitchPointDiff, verify_switch_point
from cartrita_assets.pg.inventory import TableState
from cartrita_assets.resources.follow import FollowStore
from cartrita_assets.resources.lock import MigrationLock
from cartrita_assets.resources.v1 import V1Source


@dg.asset(group_name="v2", kinds={"postgres", "redis"}, owners=OWNERS, deps=[restored_db],
          output_required=False)  # fmt: skip
def replication_stream(
    context: dg.AssetExecutionContext, v1: V1Source, v2: V2Target, follow: FollowStore
) -> Iterator[dg.MaterializeResult]:
    """v2 following v1 in follow mode: a subscription from the backup's own slot (no initial
    copy) and v2 Redis a replica of v1. Not materialized when the backup was not in follow mode."""
    if not following(context):
        context.log.info("Follow mode is off for this backup: nothing to stream")
        return
    with user_errors():
        log = progress(context)
        settings = v1.settings(log)
        ledger = steps.subscribe(
            settings, follow.path(), v2.admin(target_database(context)),
            v2.redis() if settings.redis else None, v1_host_for_v2=follow.v1_host_for_v2,
            log=log,
        )  # fmt: skip
        yield dg.MaterializeResult(
            metadata={
                "subscription": f"{ledger.subscription} (in v2 database {ledger.v2_database})",
                "slot": ledger.slot,
                "start_lsn": ledger.snapshot_lsn,
                "redis": "v2 REPLICAOF v1" if ledger.redis_replica else "v1 has no Redis",
                "written_on_v1": "; ".join(ledger.v1_objects()),
                "ledger": dg.MetadataValue.path(str(ledgers.ledger_path(follow.path()))),
                "conninfo_stored": "only in v2's pg_subscription (superuser-only)",
            }
        )


@dg.asset(
    group_name="v2",
    kinds={"postgres", "redis"},
    owners=OWNERS,
    deps=[replication_stream],
    check_specs=[
        dg.AssetCheckSpec(
            "v2_matches_frozen_v1",
            asset="v2_cutover",
            blocking=True,
            description="Every v1 table's count and content hash in v2's switch-point snapshot "
            "equal frozen v1's, and the Redis keyspaces are equal.",
        )
    ],
)
def v2_cutover(
    context: dg.AssetExecutionContext,
    v1: V1Source,
    v2: V2Target,
    follow: FollowStore,
    migration_lock: MigrationLock,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """v2 as the primary: v1 refused writes, v2 applied v1's last position and Redis offset,
    sequences copied, replication stopped, .env.v2 written. Downtime is freeze to v2 ready."""
    with user_errors():
        migration_lock.hold(context)
        log = progress(context)
        settings = v1.settings(log)
        found: list[tuple[SwitchPointDiff, dict[str, TableState]]] = []
        env_path = v1.env_path(log)

        def write_env() -> None:
            pg, rds = v2.app_endpoints()
            write_env_files(env_path, pg, rds if settings.redis else None)

        database = target_database(context)
        ledger = ledgers.load(follow.path())

        def verify(_snap: psycopg.Connection, snapshot: str) -> None:
            # runs after v2 is ready, outside the downtime, in v2's switch-point snapshot
            v2_redis = v2.redis() if settings.redis else None
            begun = time.monotonic()
            found.append(verify_switch_point(
                settings.postgres, v2.admin(database), snapshot, settings.redis, v2_redis,
                frozen.redis_path(follow.path()), log=log,
            ))  # fmt: skip
            timings.append(time.monotonic() - begun)

        timings: list[float] = []
        done = cutover.switch(
            settings, follow.path(), v2.admin(database),
            v2.redis() if settings.redis else None, limits=follow.limits(),
            write_env=write_env, log=log, on_snapshot=verify,
            freeze_below_bytes=follow.freeze_below_bytes,
        )  # fmt: skip
        verify_seconds = timings[0]
        diff, frozen_tables = found[0]
        frozen.save(follow.path(), frozen.FrozenV1(
            backup_id=ledger.backup_id if ledger else "", database=settings.postgres.dbname,
            freeze_lsn=done.freeze_lsn, frozen_at=datetime.now(UTC).isoformat(),
            tables=frozen_tables, redis=settings.redis is not None,
        ))  # fmt: skip
    yield dg.MaterializeResult(
        metadata={
            "downtime_seconds": round(done.downtime_seconds, 3),
            "catch_up_seconds": round(done.wait_seconds, 3),
            "verify_seconds": round(verify_seconds, 3),
            "freeze_lsn": done.freeze_lsn,
            "sessions_ended_on_v1": done.sessions_ended,
            "sequences_copied": done.sequences,
            "removed_from_v1": "; ".join(done.removed),
            "left_on_v1": "default_transaction_read_only = on (v1 refuses writes; "
            "`cartrita follow abort` or a rollback reverts it)",
            "frozen_v1_record": dg.MetadataValue.path(str(follow.path() / frozen.FROZEN_NAME)),
        }
    )
    yield dg.AssetCheckResult(
        check_name="v2_matches_frozen_v1",
        passed=diff.ok(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "tables_compared": diff.tables_compared,
            "rows_v1": diff.rows_v1,
            "tables_different": table_md(["difference"], [[d] for d in diff.tables_different]),
            "redis_keys_compared": diff.redis_keys_compared,
            "redis": diff.redis_summary,
        },
    )
