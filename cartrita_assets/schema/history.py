"""The history table ``schema_migrations`` and the status derived from it."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from cartrita_assets.schema.files import Migration


@dataclass(frozen=True)
class Applied:
    """One row of ``schema_migrations``."""

    version: str
    name: str
    checksum: str
    applied_at: str
    execution_ms: int
    applied_by: str
    success: bool
    error: str | None
    forced_reason: str | None


def read_history(conn: psycopg.Connection) -> list[Applied]:
    """Every row of ``schema_migrations`` (empty when the table does not exist yet)."""
    if conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0] is None:  # type: ignore[index]
        return []
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at::text, execution_ms, applied_by, success, "
        "error, forced_reason FROM public.schema_migrations ORDER BY id"
    ).fetchall()
    return [Applied(*row) for row in rows]


def status_rows(migrations: list[Migration], history: list[Applied]) -> list[dict[str, object]]:
    """The state of each migration for ``cartrita db status`` and the asset metadata."""
    applied = {a.version: a for a in history if a.success}
    failed = {a.version: a for a in history if not a.success}
    rows: list[dict[str, object]] = []
    for m in migrations:
        rec = applied.get(m.version)
        if rec is None:
            state = "failed (last attempt)" if m.version in failed else "pending"
        else:
            state = "applied" if rec.checksum == m.checksum else "CHECKSUM MISMATCH"
        rows.append(_row(m.version, m.name, state, rec, m.checksum))
    for version in sorted(set(applied) - {m.version for m in migrations}):
        rec = applied[version]
        rows.append(_row(version, rec.name, "NO FILE (database is newer)", rec, rec.checksum))
    return rows


def _row(
    version: str, name: str, state: str, rec: Applied | None, digest: str
) -> dict[str, object]:
    return {
        "version": version,
        "name": name,
        "state": state,
        "applied_at": rec.applied_at if rec else "",
        "duration_ms": rec.execution_ms if rec else "",
        "checksum": digest[:12],
        "applied_by": rec.applied_by if rec else "",
        "forced": (rec.forced_reason or "") if rec else "",
    }
