"""What a database holds, measured server-side: tables with row counts and content hashes,
sequences, extensions. The same code measures v1 (inside the backup's snapshot) and v2 (after the
restore), so any difference is a real difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from cartrita_assets.pg.connect import canonical_session

# User tables and partitions that hold rows; extension-owned tables (e.g. config tables) excluded.
TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

SEQUENCES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

# Order-independent: the sum of a 64-bit slice of each row's md5. Any changed, missing or extra
# row changes the sum; the row order on disk does not. ``{row}`` is the row's bytes (see
# ``HASH_METHODS``).
HASH_SQL = (
    "SELECT count(*), "
    "coalesce(sum(('x' || left(md5({row}), 16))::bit(64)::bigint), 0)::text{extra} "
    "FROM {table} AS t"
)

# How a row becomes the bytes its md5 is taken of. ``binary``: the row's binary form
# (``record_send``), the representation COPY BINARY sends, exact to the bit and several times
# cheaper than text for vectors and floats; a column of a type that is not built in is first
# turned into its own binary form (``vector_send``...) or text, because ``record_send`` writes
# each column's type OID, and those of extension types differ between databases. ``text``: the
# row's text form (``t::text``), what manifests recorded before ``binary``; still used to compare
# with them.
HASH_METHODS = ("binary", "text")
HASH_METHOD = "binary"

# Every column of every user table, with how the binary method sends it: ``native`` (a built-in
# type, or an array of one: its OID is the same in every database), the qualified name of the
# type's send function (an extension's base type or an enum), or ``text`` (domains, composites,
# ranges and arrays over types that are not built in).
COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname,
       CASE WHEN t.oid < 16384 THEN 'native'
            WHEN t.typtype IN ('b', 'e') AND t.typelem = 0 AND t.typsend <> 0
              THEN t.typsend::regproc::text
            ELSE 'text' END
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname, c.relname, a.attnum
"""


def row_bytes(columns: list[tuple[str, str]], method: str) -> sql.Composable:
    """The expression of a row's bytes for ``HASH_SQL`` (pure). ``columns``: (name, how) in
    column order, ``how`` as ``COLUMNS_SQL`` gives it."""
    if method == "text":
        return sql.SQL("t::text")
    if method != "binary":
        raise ValueError(f"unknown hash method {method!r}: one of {', '.join(HASH_METHODS)}")
    parts = []
    for name, how in columns:
        column = sql.SQL("t.{}").format(sql.Identifier(name))
        if how == "native":
            parts.append(column)
        elif how == "text":
            parts.append(sql.SQL("{}::text").format(column))
        else:  # a send function's name, as regproc prints it (quoted where needed)
            parts.append(sql.SQL("{}({})").format(sql.SQL(how), column))
    return sql.SQL("record_send(ROW({}))").format(sql.SQL(", ").join(parts))


def hash_queries(
    conn: psycopg.Connection,
    tables: list[tuple[str, str]],
    method: str = HASH_METHOD,
    extra: Callable[[str, str], sql.Composable] | None = None,
) -> dict[tuple[str, str], sql.Composed]:
    """``HASH_SQL`` for each of ``tables`` under ``method`` (one catalog read for all);
    ``extra(schema, table)``: more result columns after the hash (``, count(*) FILTER ...``)."""
    columns: dict[tuple[str, str], list[tuple[str, str]]] = {t: [] for t in tables}
    if method != "text":
        for schema, table, name, how in conn.execute(COLUMNS_SQL).fetchall():
            if (schema, table) in columns:
                columns[(schema, table)].append((name, how))
    return {
        (schema, table): sql.SQL(HASH_SQL).format(
            row=row_bytes(cols, method),
            table=sql.Identifier(schema, table),
            extra=extra(schema, table) if extra else sql.SQL(""),
        )
        for (schema, table), cols in columns.items()
    }


@dataclass(frozen=True)
class TableState:
    """Rows and content hash of one table."""

    rows: int
    content_hash: str


@dataclass(frozen=True)
class SequenceState:
    """Where one sequence stands."""

    last_value: int
    is_called: bool


def qualified(schema: str, name: str) -> str:
    """``schema.name`` as a plain key (used in manifests and metadata).

    A part holding a ``.`` or a ``"`` is double-quoted (inner quotes doubled), so two different
    tables never share a key (schema ``a.b`` table ``c`` vs schema ``a`` table ``b.c``).
    """
    return f"{_key_part(schema)}.{_key_part(name)}"


def _key_part(part: str) -> str:
    return '"' + part.replace('"', '""') + '"' if "." in part or '"' in part else part


def list_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every user table as (schema, name), discovered from the catalog."""
    return [(s, t) for s, t in conn.execute(TABLES_SQL).fetchall()]


def table_state(
    conn: psycopg.Connection, schema: str, table: str, method: str = HASH_METHOD
) -> TableState:
    """Count the rows of one table and hash their content, server-side."""
    query = hash_queries(conn, [(schema, table)], method)[(schema, table)]
    rows, digest = conn.execute(query).fetchone()  # type: ignore[misc]
    return TableState(rows=int(rows), content_hash=str(digest))


def table_states(
    conn: psycopg.Connection,
    log: Callable[[str], None] = lambda _m: None,
    method: str = HASH_METHOD,
) -> dict[str, TableState]:
    """Rows and content hash of every user table (one session, one table after the other),
    with progress lines through ``log``."""
    canonical_session(conn)
    tables = list_tables(conn)
    queries = hash_queries(conn, tables, method)
    states: dict[str, TableState] = {}
    for i, (schema, table) in enumerate(tables, 1):
        rows, digest = conn.execute(queries[(schema, table)]).fetchone()  # type: ignore[misc]
        states[qualified(schema, table)] = state = TableState(int(rows), str(digest))
        log(f"[{i}/{len(tables)}] {qualified(schema, table)}: {state.rows} rows hashed")
    return states


def sequence_states(conn: psycopg.Connection) -> dict[str, SequenceState]:
    """The position of every user sequence."""
    states: dict[str, SequenceState] = {}
    for schema, name in conn.execute(SEQUENCES_SQL).fetchall():
        query = sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
        last_value, is_called = conn.execute(query).fetchone()  # type: ignore[misc]
        states[qualified(schema, name)] = SequenceState(int(last_value), bool(is_called))
    return states


def extensions(conn: psycopg.Connection) -> dict[str, dict[str, str]]:
    """Installed extensions: name -> {version, schema}."""
    rows = conn.execute(
        "SELECT e.extname, e.extversion, n.nspname FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1"
    ).fetchall()
    return {name: {"version": version, "schema": schema} for name, version, schema in rows}


def referenced_roles(conn: psycopg.Connection) -> list[str]:
    """Roles that own objects of, or hold privileges in, the current database."""
    rows = conn.execute(
        """
        SELECT DISTINCT r.rolname FROM pg_roles r WHERE r.oid IN (
          SELECT datdba FROM pg_database WHERE datname = current_database()
          UNION SELECT relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg\\_%'
          UNION SELECT nspowner FROM pg_namespace
          UNION SELECT proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          UNION SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL
        ) AND NOT r.rolname LIKE 'pg\\_%' ORDER BY 1
        """
    ).fetchall()
    return [r[0] for r in rows]


# What a user could have put into a database: relations, routines, types (not the array types
# PostgreSQL adds), schemas besides public, extensions besides plpgsql, large objects.
USER_OBJECTS_SQL = """
WITH user_ns AS (
  SELECT oid FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
)
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM user_ns))
     + (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM user_ns))
     + (SELECT count(*) FROM pg_type WHERE typnamespace IN (SELECT oid FROM user_ns)
          AND typrelid = 0 AND typcategory <> 'A')
     + (SELECT count(*) FROM user_ns u JOIN pg_namespace n ON n.oid = u.oid
          WHERE n.nspname <> 'public')
     + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
     + (SELECT count(*) FROM pg_largeobject_metadata)
"""


def user_object_count(conn: psycopg.Connection) -> int:
    """How many objects a user created in the connected database (0: it is as created).

    Args:
        conn: a connection to the database to inspect.
    """
    row = conn.execute(USER_OBJECTS_SQL).fetchone()
    return int(row[0]) if row else 0
