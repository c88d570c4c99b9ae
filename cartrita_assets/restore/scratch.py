"""The restore test of a backup: restore it into a scratch database and compare it with its
manifest, then drop the scratch database. What proves a backup is a backup."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cartrita_assets import redis_copy
from cartrita_assets.backup.manifest import REDIS_NAME, Manifest, verify_files
from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import CartritaError
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import connect
from cartrita_assets.restore.steps import drop_database, restore_scratch

Log = Callable[[str], None]


@dataclass
class RestoreTest:
    """The outcome of one restore test."""

    backup_id: str
    scratch_database: str
    problems: list[str] = field(default_factory=list)
    tables: int = 0
    rows: int = 0
    sequences: int = 0
    redis_keys: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when the backup restored and matched its manifest."""
        return not self.problems


def scratch_name(backup_id: str) -> str:
    """The scratch database's name for ``backup_id`` (PostgreSQL names are at most 63 bytes)."""
    return "cartrita_restore_test_" + hashlib.sha256(backup_id.encode()).hexdigest()[:12]


def run_restore_test(
    admin: PostgresSettings, folder: Path, manifest: Manifest, log: Log, jobs: int = 2
) -> RestoreTest:
    """Check the backup's files, restore it into a scratch database on ``admin``'s server,
    compare every table's rows and content hash and every sequence with the manifest, and drop
    the scratch database whatever happened.

    Args:
        admin: a superuser connection to the server the scratch database is made on.
        folder: the backup folder.
        manifest: its manifest.
        log: progress lines.
        jobs: parallel pg_restore workers.
    """
    started = time.monotonic()
    result = RestoreTest(manifest.backup_id, scratch_name(manifest.backup_id))
    result.problems = verify_files(folder, manifest) + _redis_problems(folder, manifest, result)
    if result.problems:
        result.seconds = time.monotonic() - started
        return result  # a backup whose files changed is not restored anywhere
    log(f"Backup {manifest.backup_id}: files match; restoring into {result.scratch_database}")
    try:
        restore_scratch(admin, folder, manifest, result.scratch_database, log, jobs)
        with connect(admin, role="v2 PostgreSQL", dbname=result.scratch_database) as conn:
            tables = inventory.table_states(conn, method=manifest.postgres.hash_method)
            sequences = inventory.sequence_states(conn)
        result.problems += compare(manifest, tables, sequences)
        result.tables, result.sequences = len(tables), len(sequences)
        result.rows = sum(t.rows for t in tables.values())
    except CartritaError as exc:
        result.problems.append(f"restore failed: {str(exc).splitlines()[0][:300]}")
    finally:
        drop_database(admin, result.scratch_database)
        log(f"Scratch database {result.scratch_database} dropped")
    result.seconds = time.monotonic() - started
    return result


def _redis_problems(folder: Path, manifest: Manifest, result: RestoreTest) -> list[str]:
    """The Redis file read back whole: its records add up to the digest the manifest holds."""
    if manifest.redis is None:
        return []
    try:
        summary = redis_copy.verify_backup(folder / REDIS_NAME)
    except CartritaError as exc:
        return [f"{REDIS_NAME}: {str(exc).splitlines()[0][:300]}"]
    result.redis_keys = summary.total_keys
    if summary.digest != manifest.redis.digest:
        return [f"{REDIS_NAME}: keyspace digest differs from the manifest"]
    return []


def compare(
    manifest: Manifest,
    tables: dict[str, inventory.TableState],
    sequences: dict[str, inventory.SequenceState],
) -> list[str]:
    """Differences between a restored database and the manifest (empty when equal)."""
    expected = manifest.postgres.tables
    out = [
        f"{name}: restored {tables[name] if name in tables else 'missing'}, manifest {state}"
        for name, state in sorted(expected.items())
        if tables.get(name) != state
    ]
    out += [
        f"{name}: restored but not in the manifest" for name in sorted(set(tables) - set(expected))
    ]
    out += [
        f"sequence {name}: restored {sequences.get(name)}, manifest {state}"
        for name, state in sorted(manifest.postgres.sequences.items())
        if sequences.get(name) != state
    ]
    return out
