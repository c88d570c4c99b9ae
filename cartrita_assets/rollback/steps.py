"""Bring v1 back to the state its verified backup recorded, and the application back to v1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cartrita_assets import redis_copy
from cartrita_assets.backup.manifest import REDIS_NAME, Manifest
from cartrita_assets.envfile import V1Settings
from cartrita_assets.envfile.cutover import cutover_file
from cartrita_assets.errors import PreflightError
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import connect
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


def compare_v1(v1: V1Settings, folder: Path, manifest: Manifest) -> V1Difference:
    """Compare v1 (read-only) with the backup: every table's rows and hash, and the Redis keys."""
    with connect(v1.postgres, role="v1 PostgreSQL", read_only=True) as conn:
        now = inventory.table_states(conn)
    expected = manifest.postgres.tables
    tables = sorted(n for n in set(now) | set(expected) if now.get(n) != expected.get(n))
    redis_note = None
    if manifest.redis is not None and v1.redis is not None:
        settings = v1.redis
        diff = redis_copy.compare_keyspace(
            lambda db: client_for(replace(settings, db=db)),
            redis_copy.read_backup(folder / REDIS_NAME),
        )
        redis_note = None if diff.ok() else diff.describe()
    return V1Difference(tables, redis_note)


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
