"""Checks that v2 holds exactly what v1 held at the backup, and that v1 has not moved on."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import dagster as dg

from cartrita_assets import redis_copy
from cartrita_assets.backup.manifest import REDIS_NAME, Manifest
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import current_backup, progress, table_md
from cartrita_assets.defs.facts import latest_metadata
from cartrita_assets.defs.follow.facts import following
from cartrita_assets.defs.restore.assets import recorded_loaded, restored_db
from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.pg import inventory, measure
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.loaded import unchanged_since_loaded
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.resources.v1 import V1Source

ERROR = dg.AssetCheckSeverity.ERROR


def _spec(name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=restored_db, blocking=True, description=description)


@dg.multi_asset_check(
    specs=[
        _spec("row_counts_match_v1", "Every v1 table exists in v2 with the same number of rows."),
        _spec(
            "content_hashes_match_v1",
            "Every v2 table's order-independent content hash (computed server-side) equals v1's "
            "at the snapshot.",
        ),
        _spec(
            "sequences_match_v1",
            "Every sequence exists in v2 and continues at or after where v1 left it.",
        ),
        _spec(
            "redis_keys_match_v1",
            "Every Redis key of the backup is in v2 with the same value and the same absolute "
            "expiry (keys whose TTL ran out since the backup are not counted as missing).",
        ),
    ]
)
def postgres_matches_v1(
    context: dg.AssetCheckExecutionContext, v2: V2Target, backups: BackupStore
) -> Iterator[dg.AssetCheckResult]:
    """Measure v2 once, one session per core, and compare rows, hashes and sequences with the
    backup's manifest; v2's Redis is compared with the backup's keys at the same time."""
    folder, manifest = current_backup(context, backups)
    with ThreadPoolExecutor(max_workers=1) as beside:
        redis_result = beside.submit(_redis_result, folder, manifest, v2, following(context))
        admin = v2.admin(manifest.postgres.database)
        tables, measured = _v2_tables(context, admin, manifest, backups.dump_jobs)
        with connect(admin, role="v2 PostgreSQL") as conn:
            sequences = inventory.sequence_states(conn)
        yield _rows_result(manifest, tables, measured)
        yield _hash_result(manifest, tables, measured)
        yield _sequence_result(manifest, sequences)
        yield redis_result.result()


def _v2_tables(
    context: dg.AssetCheckExecutionContext, admin: PostgresSettings, manifest: Manifest, jobs: int
) -> tuple[dict[str, inventory.TableState], str]:
    """v2's tables, and how they were measured: the hashes restored_db took as pg_restore wrote
    each table, for the tables provably unchanged since (:mod:`cartrita_assets.pg.loaded`);
    every other table hashed now."""
    log = progress(context)
    oid, loaded = recorded_loaded(latest_metadata(context.instance, "restored_db"),
                                  manifest.backup_id)  # fmt: skip
    unchanged: dict[str, inventory.TableState] = {}
    why: dict[str, str] = {}
    if loaded:
        unchanged, why = unchanged_since_loaded(
            admin, loaded, role="v2 PostgreSQL", database_oid=oid, jobs=jobs
        )
    rest = set(manifest.postgres.tables) - set(unchanged)
    for name, reason in sorted(why.items()):
        log(f"{name} is hashed again: {reason}")
    tables = dict(unchanged)
    if rest:
        tables |= measure.table_states(
            admin, role="v2 PostgreSQL", jobs=jobs, log=log, label="v2 hashing", only=rest,
            method=manifest.postgres.hash_method,
        )  # fmt: skip
    if not loaded:
        how = "every table hashed now (restored_db recorded no hashes for this backup)"
    else:
        how = (f"{len(unchanged)} table(s) hashed as pg_restore wrote them and unchanged since "
               f"(row counts, xmin, layout); {len(rest)} hashed now")  # fmt: skip
        if why:
            how += ": " + "; ".join(f"{n} ({r})" for n, r in sorted(why.items())[:10])
    return tables, how


def _rows_result(
    manifest: Manifest, tables: dict[str, inventory.TableState], measured: str
) -> dg.AssetCheckResult:
    expected = manifest.postgres.tables
    bad = [
        [name, state.rows, tables[name].rows if name in tables else "missing"]
        for name, state in sorted(expected.items())
        if name not in tables or tables[name].rows != state.rows
    ]
    return dg.AssetCheckResult(
        check_name="row_counts_match_v1",
        passed=not bad,
        severity=ERROR,
        metadata={
            "tables_compared": len(expected),
            "rows_v1": sum(s.rows for s in expected.values()),
            "rows_v2": sum(s.rows for s in tables.values()),
            "mismatched_tables": len(bad),
            "mismatches": table_md(["table", "v1 rows", "v2 rows"], bad[:50]),
            "v2_measured": measured,
        },
    )


def _hash_result(
    manifest: Manifest, tables: dict[str, inventory.TableState], measured: str
) -> dg.AssetCheckResult:
    expected = manifest.postgres.tables
    bad = sorted(
        name
        for name, state in expected.items()
        if name not in tables or tables[name].content_hash != state.content_hash
    )
    return dg.AssetCheckResult(
        check_name="content_hashes_match_v1",
        passed=not bad,
        severity=ERROR,
        metadata={
            "tables_compared": len(expected),
            "mismatched_tables": len(bad),
            "details": ", ".join(bad[:50]) or "every table's content is identical",
            "v2_measured": measured,
        },
    )


def _sequence_result(
    manifest: Manifest, sequences: dict[str, inventory.SequenceState]
) -> dg.AssetCheckResult:
    bad = []
    for name, want in sorted(manifest.postgres.sequences.items()):
        got = sequences.get(name)
        behind = got is None or got.last_value < want.last_value
        # a sequence at the same value that was called in v1 but not in v2 would reissue an id
        reissues = (
            got is not None and got.last_value == want.last_value and want.is_called > got.is_called
        )
        if behind or reissues:
            bad.append([name, want.last_value, got.last_value if got else "missing"])
    return dg.AssetCheckResult(
        check_name="sequences_match_v1",
        passed=not bad,
        severity=ERROR,
        metadata={
            "sequences_compared": len(manifest.postgres.sequences),
            "behind_or_missing": len(bad),
            "details": table_md(["sequence", "v1", "v2"], bad[:50]),
        },
    )


def _redis_result(
    folder: Path, manifest: Manifest, v2: V2Target, follow: bool
) -> dg.AssetCheckResult:
    if manifest.redis is None:
        return dg.AssetCheckResult(
            check_name="redis_keys_match_v1",
            passed=True,
            metadata={"note": "v1 has no Redis configured"},
        )
    if follow:
        note = (
            "follow mode: v2 Redis replicates v1 (REPLICAOF), so it holds v1's keys as of "
            "now, not the backup's; v2_matches_frozen_v1 compares the keyspaces at the cutover"
        )
        return dg.AssetCheckResult(
            check_name="redis_keys_match_v1", passed=True, metadata={"note": note}
        )
    settings = v2.redis()
    diff = redis_copy.compare_keyspace(
        lambda db: client_for(replace(settings, db=db)),
        redis_copy.read_backup(folder / REDIS_NAME),
    )
    return dg.AssetCheckResult(
        check_name="redis_keys_match_v1",
        passed=diff.ok(),
        severity=ERROR,
        metadata={
            "keys_compared": diff.compared,
            "missing": diff.missing_count,
            "different": diff.different_count,
            "ttl_mismatch": diff.ttl_mismatch_count,
            "extra_in_v2": diff.extra_count,
            "expired_since_backup": diff.expired_skipped,
            "summary": diff.describe(),
        },
    )


@dg.asset_check(asset=restored_db, blocking=False)
def v1_unchanged_since_backup(
    context: dg.AssetCheckExecutionContext, v1: V1Source, backups: BackupStore
) -> dg.AssetCheckResult:
    """v1 still holds exactly what the backup recorded (read-only); if not, writes reached v1
    after the snapshot and are not in v2 yet: take a new backup before cutting over."""
    _, manifest = current_backup(context, backups)
    settings = v1.settings()
    found = measure.v1_changes(
        settings.postgres,
        manifest.postgres.tables,
        manifest.postgres.snapshot_xmin,
        jobs=backups.dump_jobs,
        log=progress(context),
        method=manifest.postgres.hash_method,
    )
    return dg.AssetCheckResult(
        passed=not found.changed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "tables_changed_since_backup": len(found.changed),
            "details": ", ".join(found.changed[:50]) or "v1 is unchanged",
            "method": found.method,
        },
    )
