"""Follow mode on v1: the slot whose exported snapshot the backup reads, the publication, the
catalog fingerprint (DDL detection), the freeze, and removing all of it again.

Every statement that changes v1 here is one the ledger lists first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import CartritaError
from cartrita_assets.pg.connect import connect

ROLE = "v1 PostgreSQL"
APP_NAME = "cartrita-assets"


class FollowError(CartritaError):
    """Follow mode cannot go on; the message names what to do."""


@dataclass(frozen=True)
class ExportedSlot:
    """A logical slot just created, and the snapshot it exported (valid while the replication
    connection that created it stays open and idle)."""

    name: str
    snapshot: str
    consistent_lsn: str


@contextlib.contextmanager
def exported_slot(settings: PostgresSettings, name: str) -> Iterator[ExportedSlot]:
    """Create logical slot ``name`` (pgoutput) over a replication connection and keep that
    connection open while the caller reads the exported snapshot.

    The snapshot is exactly the point where the slot's change stream begins: what a dump taken
    in it holds and what the slot streams meet with nothing lost or applied twice.
    """
    kwargs = settings.conninfo_kwargs()
    conn = psycopg.connect(
        **kwargs, replication="database", autocommit=True, connect_timeout=10,
        application_name=APP_NAME,
    )  # fmt: skip
    try:
        # replication commands go through the simple query protocol (PQexec)
        command = f"CREATE_REPLICATION_SLOT {_ident(name)} LOGICAL pgoutput (SNAPSHOT 'export')"
        result = conn.pgconn.exec_(command.encode())
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            message = (result.error_message or b"").decode(errors="replace").strip()
            raise FollowError(f"Could not create the replication slot {name} on v1: {message}")
        lsn = result.get_value(0, 1)
        snapshot = result.get_value(0, 2)
        assert lsn is not None and snapshot is not None
        yield ExportedSlot(name, snapshot.decode(), lsn.decode())
    finally:
        conn.close()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name.islower():
        raise FollowError(f"{name!r} is not a valid slot name (lower-case letters, digits, _).")
    return name


def writable(settings: PostgresSettings) -> psycopg.Connection:
    """A v1 session that may write even while v1's database defaults to read-only (the freeze)."""
    conn = connect(settings, role=ROLE)
    conn.execute("SET default_transaction_read_only = off")
    return conn


# v1's table definitions: names, columns, types, defaults-free. A change during follow (DDL) is
# not replicated, so the cutover compares this with the value taken at the snapshot.
_FINGERPRINT_SQL = """
SELECT md5(coalesce(string_agg(line, E'\\n' ORDER BY line), ''))
FROM (
  SELECT format('%s.%s %s %s %s', n.nspname, c.relname, a.attnum, a.attname,
                format_type(a.atttypid, a.atttypmod)) AS line
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
) t
"""

_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def catalog_fingerprint(conn: psycopg.Connection) -> str:
    """md5 over every user table's columns and types."""
    row = conn.execute(_FINGERPRINT_SQL).fetchone()
    assert row is not None
    return str(row[0])


def snapshot_fingerprint(settings: PostgresSettings, snapshot: str) -> str:
    """The catalog fingerprint as of an exported snapshot."""
    with connect(settings, role=ROLE, read_only=True, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        value = catalog_fingerprint(conn)
        conn.rollback()
    return value


def set_full_identity(conn: psycopg.Connection, tables: list[str]) -> None:
    """REPLICA IDENTITY FULL on ``tables`` (quoted ``schema.table`` names from preflight)."""
    for table in tables:
        conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.SQL(table)))


def create_publication(conn: psycopg.Connection, name: str) -> int:
    """A publication of every user table of v1's database (listed, so no superuser is needed
    beyond owning them). Returns how many tables it publishes."""
    tables = conn.execute(_TABLES_SQL).fetchall()
    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
    rels = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
    conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), rels))
    return len(tables)


def drop_slot(conn: psycopg.Connection, name: str) -> bool:
    """Drop slot ``name`` (ending the WAL sender that holds it first). False when absent."""
    row = conn.execute(
        "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (name,)
    ).fetchone()
    if row is None:
        return False
    if row[0] is not None:
        conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
    for _ in range(50):
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            return True
        except psycopg.errors.ObjectInUse:
            import time

            time.sleep(0.1)
    raise FollowError(f"Replication slot {name} on v1 stays in use; drop it by hand.")


def freeze(conn: psycopg.Connection, database: str) -> int:
    """Make v1's database refuse writes: new sessions default to read-only, then every other
    session of the database ends (a write in flight rolls back and is not acknowledged).

    Returns:
        The number of sessions ended.
    """
    db = sql.Identifier(database)
    conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(db))
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        (database,),
    ).fetchall()
    return len(rows)


def unfreeze(conn: psycopg.Connection, database: str) -> None:
    """Undo ``freeze``: v1's database takes writes again."""
    db = sql.Identifier(database)
    conn.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(db))


def current_lsn(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def slot_confirmed(conn: psycopg.Connection, slot: str, target: str) -> bool:
    """The subscriber has confirmed everything up to ``target`` on the slot."""
    row = conn.execute(
        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_catalog.pg_replication_slots "
        "WHERE slot_name = %s",
        (target, slot),
    ).fetchone()
    return bool(row and row[0])
