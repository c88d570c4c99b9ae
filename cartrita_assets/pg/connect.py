"""Connections that never leak credentials and always fail with a clear message."""

from __future__ import annotations

import psycopg

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import ConnectionFailed
from cartrita_assets.redaction import redact

# Fixed output settings so a row's text form, and so its hash, is the same on every server.
CANONICAL_SESSION = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "search_path": "pg_catalog",
    # the binary row hash sends text columns in the client encoding: the same on every server
    "client_encoding": "UTF8",
}


def connect(
    settings: PostgresSettings,
    *,
    role: str,
    dbname: str | None = None,
    read_only: bool = False,
    autocommit: bool = True,
) -> psycopg.Connection:
    """Open a connection, or raise ``ConnectionFailed`` naming ``role`` and the masked DSN.

    Args:
        settings: host, port, user, password, database.
        role: what this server is to the user ("v1 PostgreSQL", "v2 PostgreSQL").
        dbname: overrides ``settings.dbname``.
        read_only: every transaction of the session is READ ONLY (used for v1).
        autocommit: psycopg autocommit mode.
    """
    kwargs = settings.conninfo_kwargs()
    if dbname is not None:
        kwargs["dbname"] = dbname
    options = "-c default_transaction_read_only=on" if read_only else None
    try:
        conn = psycopg.connect(
            **kwargs,
            options=options,
            autocommit=autocommit,
            connect_timeout=10,
            application_name="cartrita-assets",
        )
    except psycopg.OperationalError as exc:
        raise ConnectionFailed(_explain(exc, settings, role)) from None
    return conn


def _explain(exc: psycopg.OperationalError, settings: PostgresSettings, role: str) -> str:
    detail = redact(str(exc).strip(), [settings.password])
    where = settings.masked_dsn()
    if "password authentication failed" in detail:
        fix = f"check the password for user '{settings.user}' in the environment file"
    elif "does not exist" in detail:
        fix = "check the database and user names in the environment file"
    else:
        fix = "check that the server is running and the host and port are right"
    return f"Cannot connect to {role} at {where}: {detail.splitlines()[-1]} ({fix})."


def canonical_session(conn: psycopg.Connection) -> None:
    """Apply ``CANONICAL_SESSION`` to ``conn`` (session level)."""
    with conn.cursor() as cur:
        for name, value in CANONICAL_SESSION.items():
            cur.execute("SELECT set_config(%s, %s, false)", (name, value))


def server_major(conn: psycopg.Connection) -> int:
    """Major version of the server ``conn`` is connected to."""
    return conn.info.server_version // 10000
