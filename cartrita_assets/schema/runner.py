"""The runner: lock, plan, apply each file in its own transaction, record the outcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import ChecksumMismatch, MigrationError, MigrationLockTimeout
from cartrita_assets.pg.connect import connect
from cartrita_assets.schema.files import Migration, check_dependencies, load_migrations
from cartrita_assets.schema.history import read_history, status_rows

# pg_advisory_lock key: the bytes of "cartrita" read as a signed 64-bit integer
LOCK_KEY = int.from_bytes(b"cartrita", "big", signed=True)

Log = Callable[[str], None]


@dataclass
class MigrationRunner:
    """Applies ``sql/migrations`` to one database.

    Args:
        settings: where to connect (a role that may create extensions and grant).
        folder: the migrations folder.
        app_role: the role the migrations grant to (``cartrita.app_role``); None grants nothing.
        applied_by: who is applying, recorded in the history (e.g. "cartrita db migrate").
        log: progress lines.
        lock_timeout: seconds to wait for another runner before failing.
        environment: ``local`` or ``kubernetes``; force is refused in kubernetes unless allowed.
        allow_force_in_kubernetes: the explicit permission to force there.
    """

    settings: PostgresSettings
    folder: Path
    app_role: str | None = None
    applied_by: str = "cartrita"
    log: Log = lambda _m: None
    lock_timeout: float = 60.0
    environment: str = "local"
    allow_force_in_kubernetes: bool = False

    def status(self) -> list[dict[str, object]]:
        """One row per file and per unknown history version: state, when, how long, checksum."""
        migrations = load_migrations(self.folder)
        with connect(self.settings, role="v2 PostgreSQL") as conn:
            history = read_history(conn)
        return status_rows(migrations, history)

    def migrate(self, force: bool = False, reason: str | None = None) -> list[Migration]:
        """Apply every pending migration in order; returns what was applied now.

        Raises:
            MigrationError: force without a reason or refused here; checksum mismatch; a
                version in the database with no file (downgrade); a failing migration; the lock
                held by another runner past the timeout.
        """
        self._check_force(force, reason)
        migrations = load_migrations(self.folder)
        check_dependencies(migrations)
        with connect(self.settings, role="v2 PostgreSQL") as conn:
            self._lock(conn)
            try:
                pending = self._plan(conn, migrations, force, reason)
                for migration in pending:
                    self._apply(conn, migration)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        return pending

    def _check_force(self, force: bool, reason: str | None) -> None:
        if not force:
            return
        if not (reason or "").strip():
            raise MigrationError(
                "Force needs a reason: pass --reason TEXT (or FORCE_MIGRATION_REASON); it is "
                "recorded in schema_migrations."
            )
        if self.environment == "kubernetes" and not self.allow_force_in_kubernetes:
            raise MigrationError(
                "Force is refused in the kubernetes environment: fix the migration files instead, "
                "or allow it explicitly with CARTRITA_ALLOW_FORCE_IN_KUBERNETES=true."
            )

    def _lock(self, conn: psycopg.Connection) -> None:
        deadline = time.monotonic() + self.lock_timeout
        announced = False
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
            holder = _lock_holder(conn)
            if time.monotonic() >= deadline:
                raise MigrationLockTimeout(
                    f"Another migration runner ({holder}) still holds the migration lock after "
                    f"{self.lock_timeout:.0f}s; nothing was applied. Let it finish, then run again."
                )
            if not announced:
                self.log(f"Waiting for the migration lock held by {holder}")
                announced = True
            time.sleep(0.2)

    def _plan(
        self, conn: psycopg.Connection, migrations: list[Migration], force: bool, reason: str | None
    ) -> list[Migration]:
        applied = {a.version: a for a in read_history(conn) if a.success}
        files = {m.version: m for m in migrations}
        unknown = sorted(set(applied) - set(files))
        if unknown:
            raise MigrationError(
                f"The database has migration(s) {', '.join(unknown)} that are not in "
                f"{self.folder}: it is newer than these files (a downgrade). Use the release that "
                "applied them; nothing was changed."
            )
        mismatched = [
            m
            for m in migrations
            if m.version in applied and applied[m.version].checksum != m.checksum
        ]
        if mismatched and not force:
            details = "; ".join(
                f"{m.filename}: applied {applied[m.version].checksum}, file now {m.checksum}"
                for m in mismatched
            )
            raise ChecksumMismatch(
                f"Applied migration(s) changed since they were applied ({details}). Restore the "
                "original file(s) and add a new migration for the change; nothing was applied."
            )
        for m in mismatched:
            self._accept_checksum(conn, m, applied[m.version].checksum, str(reason))
        return [m for m in migrations if m.version not in applied]

    def _accept_checksum(
        self, conn: psycopg.Connection, m: Migration, old: str, reason: str
    ) -> None:
        conn.execute(
            "UPDATE public.schema_migrations SET checksum = %s, forced_reason = %s "
            "WHERE version = %s AND success",
            (m.checksum, f"{reason} (forced by {self.applied_by}; checksum was {old})", m.version),
        )
        self.log(
            f"FORCED: accepted the edited {m.filename} ({old[:12]} -> {m.checksum[:12]}): {reason}"
        )

    def _apply(self, conn: psycopg.Connection, m: Migration) -> None:
        self.log(f"Applying {m.filename}: {m.description}")
        started = time.monotonic()
        try:
            if m.transactional:
                with conn.transaction():
                    self._run_sql(conn, m)
                    self._record(conn, m, started, None)
            else:
                self._run_sql(conn, m)
                self._record(conn, m, started, None)
        except psycopg.Error as exc:
            error = str(exc).strip()
            self._record_failure(conn, m, started, error)
            raise MigrationError(
                f"{m.filename} failed: {error.splitlines()[0] if error else type(exc).__name__}. "
                + (
                    "It ran in one transaction, so none of it was applied. "
                    if m.transactional
                    else ""
                )
                + "Fix the file and run the migrations again."
            ) from None
        self.log(f"Applied {m.filename} in {(time.monotonic() - started) * 1000:.0f} ms")

    def _run_sql(self, conn: psycopg.Connection, m: Migration) -> None:
        local = "true" if m.transactional else "false"
        conn.execute(f"SELECT set_config('cartrita.app_role', %s, {local})", (self.app_role or "",))
        conn.execute(m.text.encode())  # the whole file, as written: never split on ';'

    def _record(
        self, conn: psycopg.Connection, m: Migration, started: float, error: str | None
    ) -> None:
        conn.execute(
            "INSERT INTO public.schema_migrations "
            "(version, name, checksum, execution_ms, applied_by, success, error) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (m.version, m.name, m.checksum, int((time.monotonic() - started) * 1000),
             self.applied_by, error is None, error),
        )  # fmt: skip

    def _record_failure(
        self, conn: psycopg.Connection, m: Migration, started: float, error: str
    ) -> None:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        if (
            read_history(conn)
            or conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0]
        ):  # type: ignore[index]
            self._record(conn, m, started, error or "failed")


def _lock_holder(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT a.pid, coalesce(a.application_name, ''), a.backend_start::text FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s LIMIT 1",
        (LOCK_KEY & 0xFFFFFFFFFFFFFFFF,),
    ).fetchone()
    return (
        f"pid {row[0]}, {row[1] or 'unknown client'}, connected {row[2]}"
        if row
        else "another session"
    )
