"""Measure a whole database fast: every table's rows and content hash, one session per core.

The hash is :data:`inventory.HASH_SQL`'s (an order-independent sum over rows), so it can be
computed in parts and added up: a large table is cut into block ranges (TID range scans,
PostgreSQL 14+) that run in parallel sessions, and the sums equal the single-pass value an older
manifest recorded. Inside a snapshot (``snapshot=``), every session reads exactly what the
exporting transaction (``pg_export_snapshot()``, or a replication slot's exported snapshot) sees.

:func:`v1_changes` answers "has v1 changed since the snapshot?" without hashing v1 again when it
can: rows counted plus rows whose ``xmin`` is not older than the snapshot's xmin horizon, plus
catalog rows of user tables written since; only then (or for an old manifest) does it fall back
to the full hash.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import CartritaError
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import canonical_session, connect
from cartrita_assets.pg.inventory import TableState, qualified
from cartrita_assets.progress import Progress

Log = Callable[[str], None]

# Tables above this many 8 KiB blocks (64 MiB) are hashed in block ranges in parallel.
SPLIT_BLOCKS = 8192
# Below this, the xid arithmetic on 32-bit xmin values is exact (PostgreSQL keeps every unfrozen
# xid within 2^31 of the next one); a horizon older than that falls back to the full hash.
_XID_WINDOW = 2**31 - 10_000_000


def default_jobs() -> int:
    """Parallel sessions / workers: one per core."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class _Part:
    schema: str
    table: str
    first_block: int | None = None  # None: the whole table
    end_block: int | None = None  # None: to the end


@contextlib.contextmanager
def snapshot_session(
    settings: PostgresSettings,
    *,
    role: str,
    snapshot: str | None,
    read_only: bool,
    dbname: str | None = None,
) -> Iterator[psycopg.Connection]:
    """A session with the canonical output settings, inside ``snapshot`` when one is given."""
    conn = connect(settings, role=role, dbname=dbname, read_only=read_only, autocommit=False)
    try:
        canonical_session(conn)
        conn.commit()
        if snapshot is not None:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        yield conn
        conn.rollback()
    finally:
        conn.close()


def _plan(
    conn: psycopg.Connection,
    jobs: int,
    only: Collection[str] | None,
    method: str,
    extra: Callable[[str, str], sql.Composable] | None = None,
) -> tuple[list[_Part], int, dict[tuple[str, str], sql.Composed]]:
    """Work units, largest first, the estimated total rows (for progress), and each table's
    hash query (``extra``: see :func:`inventory.hash_queries`)."""
    tables = inventory.list_tables(conn)
    if only is not None:
        tables = [(s, t) for s, t in tables if qualified(s, t) in only]
    if not tables:
        return [], 0, {}
    queries = inventory.hash_queries(conn, tables, method, extra)
    split_ok = conn.info.server_version >= 140000 and jobs > 1
    sizes = conn.execute(
        "SELECT n.nspname, c.relname, pg_relation_size(c.oid) / current_setting('block_size')::int,"
        " greatest(c.reltuples, 0)::bigint "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    blocks = {(s, t): int(b) for s, t, b, _ in sizes}
    estimate = sum(int(r) for *_, r in sizes)
    parts: list[tuple[int, _Part]] = []
    for schema, table in tables:
        n = blocks.get((schema, table), 0)
        if split_ok and n > SPLIT_BLOCKS:
            pieces = min(jobs * 4, max(2, n // SPLIT_BLOCKS))
            step = -(-n // pieces)
            for start in range(0, n, step):
                end = start + step if start + step < n else None  # the last part is open-ended
                parts.append((min(step, n - start), _Part(schema, table, start, end)))
        else:
            parts.append((n, _Part(schema, table)))
    parts.sort(key=lambda p: -p[0])
    return [p for _, p in parts], estimate, queries


def _part_query(part: _Part, query: sql.Composed) -> sql.Composed:
    conds = []
    if part.first_block is not None and part.first_block > 0:
        conds.append(sql.SQL("t.ctid >= {}::tid").format(sql.Literal(f"({part.first_block},0)")))
    if part.end_block is not None:
        conds.append(sql.SQL("t.ctid < {}::tid").format(sql.Literal(f"({part.end_block},0)")))
    if conds:
        query = sql.SQL(" ").join([query, sql.SQL("WHERE"), sql.SQL(" AND ").join(conds)])
    return query


def table_states(
    settings: PostgresSettings,
    *,
    role: str,
    snapshot: str | None = None,
    read_only: bool = True,
    dbname: str | None = None,
    jobs: int | None = None,
    log: Log = lambda _m: None,
    label: str = "hashing",
    only: Collection[str] | None = None,
    method: str = inventory.HASH_METHOD,
) -> dict[str, TableState]:
    """Rows and content hash of every user table, measured by ``jobs`` parallel sessions.

    Args:
        settings: where to connect.
        role: what the server is to the user, for error messages.
        snapshot: an exported snapshot every session reads (None: each its own).
        read_only: sessions are READ ONLY (v1 is only ever read).
        dbname: overrides ``settings.dbname``.
        jobs: parallel sessions (default: the core count).
        log: progress lines (rows done, rate, ETA at least every 10 s).
        label: the progress lines' prefix.
        only: measure just these tables (``schema.table`` names); None: every user table.
        method: how rows are hashed (:data:`inventory.HASH_METHODS`); a comparison with a
            manifest uses the manifest's.
    """
    jobs = jobs or default_jobs()
    with snapshot_session(
        settings, role=role, snapshot=snapshot, read_only=read_only, dbname=dbname
    ) as conn:
        parts, estimate, queries = _plan(conn, jobs, only, method)
        if not parts:
            return {}
        progress = Progress(label, estimate or None, "rows", log)
        opener = functools.partial(
            snapshot_session, settings, role=role, snapshot=snapshot, read_only=read_only,
            dbname=dbname,
        )  # fmt: skip
        sums = hash_parts(parts, queries, jobs, opener, progress, role, first=conn)
        progress.finish()
    return {
        qualified(s, t): TableState(rows=c[0], content_hash=str(c[1]))
        for (s, t), c in sorted(sums.items())
    }


def hash_parts(
    parts: list[_Part],
    queries: dict[tuple[str, str], sql.Composed],
    jobs: int,
    opener: Callable[[], contextlib.AbstractContextManager[psycopg.Connection]],
    progress: Progress,
    role: str,
    first: psycopg.Connection | None = None,
) -> dict[tuple[str, str], list[int]]:
    """Run each part's query in ``jobs`` parallel sessions (``first``, when given, is one of
    them; ``opener`` opens the others) and add up every result column per table (the rows, the
    hash and any ``extra`` columns).

    Raises:
        CartritaError: a session lost its connection (nothing was changed).
    """
    sums: dict[tuple[str, str], list[int]] = {}
    work: queue.SimpleQueue[_Part] = queue.SimpleQueue()
    for part in parts:
        work.put(part)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(own: psycopg.Connection | None) -> None:
        try:
            with contextlib.ExitStack() as stack:
                session = own or stack.enter_context(opener())
                while not errors:
                    try:
                        part = work.get_nowait()
                    except queue.Empty:
                        return
                    row = session.execute(
                        _part_query(part, queries[(part.schema, part.table)])
                    ).fetchone()
                    assert row is not None
                    values = [int(v) for v in row]
                    with lock:
                        total = sums.setdefault((part.schema, part.table), [0] * len(values))
                        for i, v in enumerate(values):
                            total[i] += v
                    progress.advance(values[0])
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(None,), daemon=True)
        for _ in range(min(jobs, len(parts)) - (first is not None))
    ]
    with progress.ticking():
        for thread in threads:
            thread.start()
        if first is not None:
            worker(first)  # the planning session hashes too
        for thread in threads:
            thread.join()
    if errors:
        if isinstance(errors[0], psycopg.OperationalError):
            raise CartritaError(
                f"Lost the connection to {role} while hashing its tables "
                f"({type(errors[0]).__name__}); nothing was changed. Check that the server "
                "is up, then run the step again."
            ) from None
        raise errors[0]
    return sums


def snapshot_xmin(conn: psycopg.Connection) -> int:
    """The xmin horizon (a 64-bit xid, epoch included) of the transaction's snapshot: every
    transaction older than it had finished when the snapshot was taken."""
    row = conn.execute("SELECT txid_snapshot_xmin(txid_current_snapshot())").fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class V1Changes:
    """What :func:`v1_changes` found."""

    changed: list[str]  # tables whose rows or content differ from the manifest
    method: str  # "xmin horizon" or "full hash (<why>)"


# Rows written by a transaction not older than the horizon (an xid 32-bit arithmetic compare, as
# PostgreSQL's TransactionIdFollowsOrEquals; xids 0-2 are the invalid, bootstrap and frozen ids,
# written before any snapshot). The xmin column keeps the original xid even after a freeze.
_NEWER = (
    "(t.xmin::text::bigint >= 3 AND "
    "((t.xmin::text::bigint - {h}) % 4294967296 + 4294967296) % 4294967296 < 2147483648)"
)
_COUNT_SQL = "SELECT count(*), count(*) FILTER (WHERE " + _NEWER + ") FROM {table} AS t"

# Catalog rows that describe user tables (the table itself, its columns, its type) written since
# the horizon: DDL, TRUNCATE (a new relfilenode), VACUUM FULL/CLUSTER (a rewrite).
_CATALOG_SQL = (
    "SELECT count(*) FROM ("
    " SELECT t.xmin FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace"
    "  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
    " UNION ALL SELECT t.xmin FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
    " UNION ALL SELECT t.xmin FROM pg_namespace t"
    ") AS t WHERE " + _NEWER
)


def v1_changes(
    settings: PostgresSettings,
    recorded: dict[str, TableState],
    horizon: int | None,
    *,
    jobs: int | None = None,
    log: Log = lambda _m: None,
    method: str = inventory.HASH_METHOD,
) -> V1Changes:
    """Tables of v1 whose rows or content differ from ``recorded`` (the manifest's).

    Without a second full hash when nothing moved: with the snapshot's xmin ``horizon`` every
    table's rows are counted and its rows written since the horizon looked for (no row is
    converted to text). Any such row, a changed count, a changed table list or a catalog change
    of a user table sends every table through the full hash instead; so does an old manifest
    without a horizon.
    """
    why = "the manifest records no snapshot horizon" if horizon is None else ""
    if horizon is not None:
        why = _fast_check(settings, recorded, horizon, jobs or default_jobs())
        if not why:
            return V1Changes([], "xmin horizon")
    log(f"v1 may have changed since the backup ({why}): hashing every table to compare")
    now = table_states(
        settings, role="v1 PostgreSQL", jobs=jobs, log=log, label="v1 hashing", method=method
    )
    changed = sorted(n for n in set(now) | set(recorded) if now.get(n) != recorded.get(n))
    return V1Changes(changed, f"full hash ({why})")


def _fast_check(
    settings: PostgresSettings, recorded: dict[str, TableState], horizon: int, jobs: int
) -> str:
    """Why the fast check cannot vouch for v1 (empty: v1 is unchanged)."""
    with snapshot_session(settings, role="v1 PostgreSQL", snapshot=None, read_only=True) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        next_xid = conn.execute("SELECT txid_snapshot_xmax(txid_current_snapshot())").fetchone()
        if next_xid is None or int(next_xid[0]) - horizon >= _XID_WINDOW or horizon < 3:
            return "the snapshot is too many transactions old to compare xids"
        h = sql.Literal(horizon % 2**32)
        tables = {qualified(s, t): (s, t) for s, t in inventory.list_tables(conn)}
        if set(tables) != set(recorded):
            return "the list of tables differs"
        (catalog,) = conn.execute(sql.SQL(_CATALOG_SQL).format(h=h)).fetchone()  # type: ignore[misc]
        if catalog:
            return "a table's definition changed"
    names: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in sorted(tables, key=lambda n: -recorded[n].rows):
        names.put(name)
    reasons: list[str] = []

    def worker() -> None:
        try:
            with snapshot_session(
                settings, role="v1 PostgreSQL", snapshot=None, read_only=True
            ) as session:
                while not reasons:
                    try:
                        name = names.get_nowait()
                    except queue.Empty:
                        return
                    query = sql.SQL(_COUNT_SQL).format(h=h, table=sql.Identifier(*tables[name]))
                    rows, newer = session.execute(query).fetchone()  # type: ignore[misc]
                    if rows != recorded[name].rows:
                        reasons.append(f"{name} has {rows} rows, the backup {recorded[name].rows}")
                    elif newer:
                        reasons.append(f"{name} has {newer} row(s) written since the snapshot")
        except Exception as exc:  # a failed count is no proof: fall back to the full hash
            reasons.append(f"the row count failed: {type(exc).__name__}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reasons[0] if reasons else ""
