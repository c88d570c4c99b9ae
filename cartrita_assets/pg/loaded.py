"""Hash each table as soon as a load has written it, and later vouch that it is unchanged
without hashing it again.

While pg_restore loads a database, :class:`LoadHasher` hashes every table whose data is in (one
session, whenever a loader is free, so the hash takes no core the load could use); the tables
still unhashed when the load ends are hashed with one session per core. Besides the rows and
the content hash (:data:`inventory.HASH_SQL`, the same sums :func:`measure.table_states`
gives), each table's :class:`LoadedState` records the one
transaction id every row carried then (a load writes a table's rows in one COPY) and the table's
layout (its storage file and columns).

:func:`unchanged_since_loaded` then says which tables may have changed since: a row written
since carries another xmin, a deleted row lowers the count, and TRUNCATE, VACUUM FULL, a rewrite
or a column added, dropped or retyped changes the layout. Only the tables it cannot vouch for
need hashing again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.pg import inventory, measure
from cartrita_assets.pg.inventory import TableState, qualified
from cartrita_assets.progress import Progress

Log = Callable[[str], None]

# The table's storage file and its columns as they are stored: what a rewrite, TRUNCATE or a
# column change alters (not indexes, constraints or statistics, which the load adds later).
LAYOUT_SQL = """
SELECT n.nspname, c.relname,
       md5(c.relfilenode::text || '|' || coalesce(string_agg(
           a.attnum || ' ' || a.attname || ' ' || a.atttypid || ' ' || a.atttypmod || ' '
           || a.attisdropped, ',' ORDER BY a.attnum), ''))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
GROUP BY n.nspname, c.relname, c.relfilenode
"""

_NEXT_XID_SQL = "SELECT txid_snapshot_xmax(txid_current_snapshot())"


@dataclass(frozen=True)
class LoadedState:
    """One table as hashed after its load.

    Attributes:
        rows: its rows then.
        content_hash: its content hash then (the manifest's method).
        xid: the transaction id (32-bit, as the xmin column shows it) every row carried then;
            None when the table was empty or its rows came from several transactions.
        layout: md5 of its storage file and column definitions then (``LAYOUT_SQL``).
        next_xid: the server's next 64-bit transaction id then (xid comparisons are only exact
            within 2^31 transactions).
    """

    rows: int
    content_hash: str
    xid: int | None
    layout: str
    next_xid: int

    @property
    def state(self) -> TableState:
        return TableState(self.rows, self.content_hash)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadedState:
        return cls(
            rows=int(data["rows"]),
            content_hash=str(data["content_hash"]),
            xid=None if data.get("xid") is None else int(data["xid"]),
            layout=str(data["layout"]),
            next_xid=int(data["next_xid"]),
        )


def _layouts(conn: psycopg.Connection) -> dict[str, str]:
    return {qualified(s, t): str(h) for s, t, h in conn.execute(LAYOUT_SQL).fetchall()}


def _next_xid(conn: psycopg.Connection) -> int:
    row = conn.execute(_NEXT_XID_SQL).fetchone()
    assert row is not None
    return int(row[0])


def _other_xids(xid: int | None) -> sql.Composable:
    """The extra result column: rows written by a transaction other than ``xid``."""
    if xid is None:
        return sql.SQL(", count(*)")
    return sql.SQL(", count(*) FILTER (WHERE t.xmin <> {}::xid)").format(sql.Literal(str(xid)))


class LoadHasher:
    """Hashes the tables of a database being loaded, each as soon as the load reports it done.

    ``loaded(name)`` queues a table (the load's own thread may call it); one session hashes the
    queue while the load runs; ``finish`` hashes what is left with one session per core and
    returns every table's :class:`LoadedState`.
    """

    def __init__(
        self,
        settings: PostgresSettings,
        *,
        dbname: str,
        role: str,
        tables: Collection[str],
        method: str,
        log: Log = lambda _m: None,
        idle: Callable[[], bool] = lambda: True,
    ) -> None:
        self.opener = partial(
            measure.snapshot_session, settings, role=role, snapshot=None, read_only=True,
            dbname=dbname,
        )  # fmt: skip
        self.role, self.method, self.log = role, method, log
        self.tables = set(tables)
        self.states: dict[str, LoadedState] = {}
        self.todo: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.queued: set[str] = set()
        self.error: BaseException | None = None
        self.while_loading = 0  # tables hashed while the load was still running
        # while the load keeps every core busy, a hash would only slow it down: a table waits
        # for ``idle()`` (a loader is free) before it is hashed
        self.idle = idle
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._hash_queue, daemon=True)

    def start(self) -> LoadHasher:
        self.thread.start()
        return self

    def loaded(self, name: str) -> None:
        """The load has written every row of ``name`` (``schema.table``)."""
        if name in self.tables and name not in self.queued:
            self.queued.add(name)
            self.todo.put(name)

    def _hash_queue(self) -> None:
        try:
            with self.opener() as conn:
                while (name := self.todo.get()) is not None:
                    while not self.idle() and not self.stopping.is_set():
                        time.sleep(0.05)
                    if self.stopping.is_set():
                        return  # finish() hashes it with every core
                    self.states.update(self._hash(conn, [name], jobs=1))
                    conn.commit()
                    self.while_loading += 1
        except BaseException as exc:  # the rest is hashed in finish(); a failure is no proof
            self.error = exc

    def stop(self) -> None:
        """Stop the background session after the table it is hashing, if any."""
        self.stopping.set()
        self.todo.put(None)
        self.thread.join()

    def finish(self, jobs: int) -> dict[str, LoadedState]:
        """Wait for the background session's current table, then hash every table not hashed
        yet with ``jobs`` sessions (large tables in block ranges)."""
        self.stop()
        rest = sorted(self.tables - set(self.states))
        if rest:
            with self.opener() as conn:
                self.states.update(self._hash(conn, rest, jobs))
        return dict(sorted(self.states.items()))

    def _hash(
        self, conn: psycopg.Connection, names: list[str], jobs: int
    ) -> dict[str, LoadedState]:
        """Hash ``names`` in ``conn`` (plus ``jobs - 1`` more sessions), recording each table's
        single xmin and layout first."""
        wanted = set(names)
        xids: dict[tuple[str, str], int | None] = {}
        for schema, table in inventory.list_tables(conn):
            if qualified(schema, table) in wanted:
                row = conn.execute(
                    sql.SQL("SELECT t.xmin::text FROM {} AS t LIMIT 1").format(
                        sql.Identifier(schema, table)
                    )
                ).fetchone()
                xids[(schema, table)] = int(row[0]) if row else None
        layouts, next_xid = _layouts(conn), _next_xid(conn)
        parts, estimate, queries = measure._plan(
            conn, jobs, wanted, self.method, extra=lambda s, t: _other_xids(xids.get((s, t)))
        )
        progress = Progress("v2 hashing", estimate or None, "rows", self.log)
        sums = measure.hash_parts(
            parts, queries, jobs, self.opener, progress, self.role, first=conn
        )
        out = {}
        for (schema, table), (rows, digest, others) in sums.items():
            name = qualified(schema, table)
            xid = xids.get((schema, table))
            out[name] = LoadedState(
                rows=rows,
                content_hash=str(digest),
                xid=xid if rows and not others else None,
                layout=layouts.get(name, ""),
                next_xid=next_xid,
            )
        return out


def unchanged_since_loaded(
    settings: PostgresSettings,
    loaded: dict[str, LoadedState],
    *,
    role: str,
    database_oid: int,
    dbname: str | None = None,
    jobs: int | None = None,
) -> tuple[dict[str, TableState], dict[str, str]]:
    """Which of ``loaded`` are provably unchanged since they were hashed in the database whose
    OID was ``database_oid``.

    Returns:
        (the recorded states of the tables that are unchanged, why each other table may have
        changed): every table of ``loaded`` is in exactly one of the two.
    """
    why: dict[str, str] = {}
    opener = partial(
        measure.snapshot_session, settings, role=role, snapshot=None, read_only=True,
        dbname=dbname,
    )  # fmt: skip
    with opener() as conn:
        tables = {qualified(s, t): (s, t) for s, t in inventory.list_tables(conn)}
        layouts, next_xid = _layouts(conn), _next_xid(conn)
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    for name, state in loaded.items():
        if row is None or int(row[0]) != database_oid:
            why[name] = "the database is not the one it was hashed in"
        elif name not in tables:
            why[name] = "it is missing"
        elif state.rows and state.xid is None:
            why[name] = "its rows were not written by one transaction when it was hashed"
        elif next_xid - state.next_xid >= measure._XID_WINDOW:
            why[name] = "too many transactions ran since it was hashed to compare xids"
        elif layouts.get(name) != state.layout:
            why[name] = "its storage or columns changed since it was hashed"
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in sorted(set(loaded) - set(why), key=lambda n: -loaded[n].rows):
        todo.put(name)
    lock = threading.Lock()

    def worker() -> None:
        name = ""
        try:
            with opener() as session:
                while True:
                    try:
                        name = todo.get_nowait()
                    except queue.Empty:
                        return
                    state = loaded[name]
                    query = sql.SQL("SELECT count(*){} FROM {} AS t").format(
                        _other_xids(state.xid), sql.Identifier(*tables[name])
                    )
                    rows, others = session.execute(query).fetchone()  # type: ignore[misc]
                    reason = ""
                    if rows != state.rows:
                        reason = f"it has {rows} rows, {state.rows} when it was hashed"
                    elif others:
                        reason = f"{others} of its rows were written since it was hashed"
                    if reason:
                        with lock:
                            why[name] = reason
        except Exception as exc:  # a failed count is no proof: those tables are hashed again
            failed = f"the row count failed: {type(exc).__name__}"
            with lock:
                if name:
                    why[name] = failed
                while True:
                    try:
                        why[todo.get_nowait()] = failed
                    except queue.Empty:
                        break

    sessions = jobs or measure.default_jobs()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    unchanged = {n: s.state for n, s in loaded.items() if n not in why}
    return unchanged, why
