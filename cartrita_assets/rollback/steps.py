"""Bring v1 back to the state its verified backup recorded, and the application back to v1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cartrita_assets import redis_copy
from cartrita_assets.backup.manifest import REDIS_NAME, Manifest
from cartrita_assets.envfile import PostgresSettings, V1Settings
from cartrita_assets.envfile.cutover import cutover_file
from cartrita_assets.errors import PreflightError
from cartrita_assets.follow import frozen
from cartrita_assets.pg import measure
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.inventory import HASH_METHOD, TableState
from cartrita_assets.redaction import write_private_file
from cartrita_assets.redis_copy.client import client_for

Log = Callable[[str], None]


@dataclass(frozen=True)
class V1Difference:
    """How v1 differs from the backup's manifest."""

    tables: list[str]
    redis: str | None

    def any(self) -> bool:
        """True when anything differs."""
        return bool(self.tables or self.redis)

    def describe(self) -> str:
        """A one-line account for messages and metadata."""
        parts = []
        if self.tables:
            parts.append(f"{len(self.tables)} table(s) differ: {', '.join(self.tables[:10])}")
        if self.redis:
            parts.append(f"Redis: {self.redis}")
        return "; ".join(parts) or "v1 equals the backup"


@dataclass(frozen=True)
class V1Reference:
    """The state a rollback returns v1 to, and how messages name it.

    Attributes:
        name: e.g. ``backup pre_migration_...`` or ``v1 as frozen at the follow-mode cutover``.
        tables: every table's rows and content hash.
        redis_file: the Redis keys in the backup file format, or None (no Redis recorded).
        follow_cutover: the state is v1's at a follow-mode cutover's freeze, not the backup's.
        method: how ``tables`` were hashed (:data:`inventory.HASH_METHODS`).
    """

    name: str
    tables: dict[str, TableState]
    redis_file: Path | None
    follow_cutover: bool = False
    method: str = HASH_METHOD


def backup_reference(folder: Path, manifest: Manifest) -> V1Reference:
    """v1 as the backup recorded it."""
    redis_file = folder / REDIS_NAME if manifest.redis is not None else None
    return V1Reference(
        f"backup {manifest.backup_id}", manifest.postgres.tables, redis_file,
        method=manifest.postgres.hash_method,
    )  # fmt: skip


def reference_for(folder: Path, manifest: Manifest, follow_root: Path) -> V1Reference:
    """What v1 must equal: the backup, or, after a follow-mode cutover from this backup, v1's
    state at the freeze (v1 took the follow period's writes after the backup's snapshot, and
    those are v1's data too)."""
    record = frozen.load(follow_root)
    if record is None or record.backup_id != manifest.backup_id:
        return backup_reference(folder, manifest)
    redis_file = frozen.redis_path(follow_root) if record.redis else None
    return V1Reference(
        f"v1 as frozen at the follow-mode cutover ({record.frozen_at}, backup "
        f"{manifest.backup_id})", record.tables, redis_file, follow_cutover=True,
        method=record.hash_method,
    )  # fmt: skip


def compare_v1(v1: V1Settings, reference: V1Reference) -> V1Difference:
    """Compare v1 (read-only) with ``reference``: every table's rows and hash (one session per
    core), and the Redis keys."""
    now = measure.table_states(
        v1.postgres, role="v1 PostgreSQL", label="v1 hashing", method=reference.method
    )
    expected = reference.tables
    tables = sorted(n for n in set(now) | set(expected) if now.get(n) != expected.get(n))
    redis_note = None
    if reference.redis_file is not None and v1.redis is not None:
        settings = v1.redis
        diff = redis_copy.compare_keyspace(
            lambda db: client_for(replace(settings, db=db)),
            redis_copy.read_backup(reference.redis_file),
        )
        redis_note = None if diff.ok() else diff.describe()
    return V1Difference(tables, redis_note)


def v2_changes_since(v2: PostgresSettings, reference: V1Reference) -> list[str]:
    """v1's tables whose rows or content in v2 differ from ``reference`` (after a follow-mode
    cutover: the tables the application wrote in v2 after the switch; the rollback does not
    carry those writes back to v1)."""
    now = measure.table_states(
        v2, role="v2 PostgreSQL", label="v2 hashing", only=set(reference.tables),
        method=reference.method,
    )  # fmt: skip
    return sorted(n for n in reference.tables if now.get(n) != reference.tables[n])


def check_can_restore(v1: V1Settings) -> None:
    """Refuse before anything changes when v1's role cannot restore v1 (it must create the
    staging database and the extensions: docker-compose's POSTGRES_USER, a superuser, can)."""
    with connect(v1.postgres, role="v1 PostgreSQL", read_only=True) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not (row and row[0]):
        raise PreflightError(
            f"Restoring v1 needs a superuser, and v1's role '{v1.postgres.user}' is not one "
            "(it must create databases and extensions such as vector). Nothing was changed. Run "
            "the rollback with the environment file of v1's superuser (docker-compose's "
            "POSTGRES_USER), or restore the backup by hand as a superuser."
        )


def restore_env_file(env_file: Path, log: Log) -> str:
    """Put ``.env.v1`` back as ``.env``; returns what happened."""
    saved = cutover_file(env_file, "v1")
    if not saved.exists():
        return f"{env_file} was never switched (no {saved.name}); left as it is"
    if env_file.exists() and env_file.read_bytes() == saved.read_bytes():
        return f"{env_file} already holds v1's settings"
    write_private_file(env_file, saved.read_bytes())
    log(f"{env_file} restored from {saved.name}")
    return f"{env_file} restored from {saved.name}"
