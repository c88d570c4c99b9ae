"""Loading the v1 PostgreSQL database: schema, binary COPY per table, sequences, ANALYZE."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from cartrita_assets.demo.gen import _stream_key
from cartrita_assets.demo.rows import Row
from cartrita_assets.demo.tables import _TABLES, _Table, table_rows

PROGRESS_EVERY = 10_000
# pg_database_size after seed_postgres on PostgreSQL 18.6 + pgvector 0.8.6, seed 42:
# 13,091,343 bytes at scale 1 and 957,628,943 at scale 300 (an empty database is ~7.5 MB).
BYTES_PER_SCALE = 3_158_988
BASE_BYTES = 9_932_355

Log = Callable[[str], None]


def _copy_table(conn: psycopg.Connection, table: _Table, rows: Iterable[Row], log: Log) -> int:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    count = 0
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(list(table.types))
        for row in rows:
            copy.write_row(row)
            count += 1
            if count % PROGRESS_EVERY == 0:
                log(f"{table.name}: {count} rows")
    return count


def _fetch_keys(conn: psycopg.Connection, table: _Table) -> list[Any]:
    assert table.key is not None
    stmt = sql.SQL("SELECT {k} FROM {t} ORDER BY {k}").format(
        k=sql.Identifier(table.key), t=sql.Identifier(table.name)
    )
    return [r[0] for r in conn.execute(stmt)]


def _set_sequences(conn: psycopg.Connection, scale: int, seed: int) -> None:
    rng = random.Random(_stream_key(seed, "sequences"))
    invoice = 1000 + 7 * (40 * scale + rng.randrange(10))
    ticket = 500 * scale + rng.randrange(500)
    conn.execute("SELECT setval('invoice_number_seq', %s, true)", [invoice])
    conn.execute("SELECT setval('support_ticket_seq', %s, false)", [ticket])


def _load_tables(conn: psycopg.Connection, scale: int, seed: int, log: Log) -> dict[str, int]:
    parents: dict[str, list[Any]] = {}
    counts: dict[str, int] = {}
    for table in _TABLES:
        started = time.monotonic()
        rows = table_rows(table.name, scale, seed, parents)
        counts[table.name] = _copy_table(conn, table, rows, log)
        if table.key is not None:
            parents[table.name] = _fetch_keys(conn, table)
        log(f"{table.name}: {counts[table.name]} rows in {time.monotonic() - started:.1f}s")
    return counts


def seed_postgres(
    conn: psycopg.Connection, scale: int = 1, seed: int = 42, log: Log | None = None
) -> dict[str, int]:
    """Create the v1 schema in the (empty) database ``conn`` is connected to and load it;
    returns rows per table. Commits, then runs ``ANALYZE``."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    say: Log = log or (lambda _line: None)
    schema = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute(schema)
        register_vector(conn)
        counts = _load_tables(conn, scale, seed, say)
        _set_sequences(conn, scale, seed)
    conn.execute("ANALYZE")
    if not conn.autocommit:
        conn.commit()
    say(f"loaded {sum(counts.values())} rows (scale={scale}, seed={seed})")
    return counts


def approx_bytes_per_scale() -> int:
    """On-disk bytes (``pg_database_size``) one scale unit adds, measured on PostgreSQL 18 +
    pgvector 0.8; the fixed part (schema, 3 MB entry) is about ``BASE_BYTES``."""
    return BYTES_PER_SCALE
