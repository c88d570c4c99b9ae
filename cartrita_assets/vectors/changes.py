"""Which source rows changed since the last look: triggers on the sources, a log table, a reader.

``install_change_triggers`` puts trigger ``cartrita_embedding_changes`` on every source table
(insert, delete, and updates of the id, text and vector columns only): each changed row adds one
row to ``public.embedding_source_changes`` (migration 0007). The stale_embeddings_sensor reads
that table, never the source tables, and asks embeddings_index to compare only those ids.

Changes are read by transaction, not by id: ``pending_changes(conn, after)`` returns the changes
of the transactions with ``after <= xact_id < watermark``, where the watermark is the oldest
transaction still running. Everything below it is final (committed, or rolled back and gone), so
a transaction that took a low id and committed late is still read on a later tick; reading by id
(``id > last seen``) would lose it. A long-running writing transaction holds the watermark back
(its changes, and newer ones, wait for it; ``waiting`` says how many).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from cartrita_assets.errors import CartritaError
from cartrita_assets.vectors.sources import Source

TRIGGER = "cartrita_embedding_changes"
FUNCTION = "public.record_embedding_source_change"
# AFTER ... FOR EACH ROW, on INSERT, DELETE and UPDATE (pg_trigger.tgtype bits)
_TGTYPE = 1 | 4 | 8 | 16
_TRIGGER_RELKINDS = ("r", "p", "f")  # views and materialized views take no row triggers


class ChangeTrackingError(CartritaError):
    """v2's schema has no change log yet (migration 0007 is not applied)."""


@dataclass(frozen=True)
class PendingChanges:
    """The changes of the transactions in ``[after, watermark)``.

    Attributes:
        after: where this read started (a transaction id).
        watermark: the oldest transaction running when read: the next read starts here.
        rows: change rows read.
        first_id: the lowest change id read (None when nothing changed).
        last_id: the highest change id read.
        ids: source name -> sorted distinct source ids; None when there were more than
            ``max_ids`` distinct ids (compare everything instead).
        distinct: the number of distinct (source, id) pairs.
        waiting: change rows already committed but at or above the watermark (they wait for an
            older transaction still running).
    """

    after: int
    watermark: int
    rows: int
    first_id: int | None
    last_id: int | None
    ids: dict[str, list[str]] | None = field(default_factory=dict)
    distinct: int = 0
    waiting: int = 0


def tracked_columns(source: Source) -> list[str]:
    """The columns whose update changes what is embedded: id, text and vector columns."""
    return list(
        dict.fromkeys([source.id_column, *source.text_columns, *(v.column for v in source.vectors)])
    )


def install_change_triggers(conn: psycopg.Connection, sources: Iterable[Source]) -> list[str]:
    """Create or replace the change trigger on every source (idempotent: an identical trigger is
    left alone, so no lock is taken on a table whose trigger is already right).

    Returns:
        One line per source saying what was done ("installed", "unchanged", or why skipped).
    """
    (present,) = conn.execute(
        "SELECT to_regprocedure(%s) IS NOT NULL", (FUNCTION + "()",)
    ).fetchone()  # type: ignore[misc]
    if not present:
        raise ChangeTrackingError(
            f"{FUNCTION}() does not exist in this database: apply migration 0007 "
            "(materialize schema_version) before embeddings_index."
        )
    done = []
    for source in sources:
        relkind = conn.execute(
            "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (source.schema, source.table),
        ).fetchone()
        if relkind is None or str(relkind[0]) not in _TRIGGER_RELKINDS:
            done.append(f"{source.name}: skipped (not a table, changes are not tracked)")
            continue
        columns = tracked_columns(source)
        if _current(conn, source) == (sorted(columns), [source.name, source.id_column]):
            done.append(f"{source.name}: unchanged")
            continue
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT OR DELETE OR UPDATE OF {cols} "
                "ON {rel} FOR EACH ROW EXECUTE FUNCTION {function}({name}, {id})"
            ).format(
                trigger=sql.Identifier(TRIGGER),
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                rel=source.relation(),
                function=sql.SQL(FUNCTION),
                name=sql.Literal(source.name),
                id=sql.Literal(source.id_column),
            )
        )
        # ALWAYS: rows applied by logical replication (follow mode) run with
        # session_replication_role = replica, which skips ordinary triggers
        conn.execute(
            sql.SQL("ALTER TABLE {rel} ENABLE ALWAYS TRIGGER {trigger}").format(
                rel=source.relation(), trigger=sql.Identifier(TRIGGER)
            )
        )
        done.append(f"{source.name}: installed")
    return done


def _current(conn: psycopg.Connection, source: Source) -> tuple[list[str], list[str]] | None:
    """(sorted column names, arguments) of the source's change trigger, if right (enabled
    ALWAYS, so replicated rows are seen too)."""
    row = conn.execute(
        "SELECT t.tgargs, t.tgtype, t.tgenabled, t.tgfoid = %s::regprocedure, "
        "ARRAY(SELECT a.attname::text FROM unnest(t.tgattr::int2[]) k "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = k ORDER BY 1) "
        "FROM pg_catalog.pg_trigger t WHERE t.tgrelid = %s::regclass AND t.tgname = %s",
        (FUNCTION + "()", source.relation().as_string(conn), TRIGGER),
    ).fetchone()
    if row is None:
        return None
    args, tgtype, enabled, same_function, cols = row
    if int(tgtype) != _TGTYPE or str(enabled) != "A" or not same_function:
        return None
    names = [a.decode() for a in bytes(args).split(b"\0")[:-1]]
    return sorted(cols), names


def _int(value: object) -> int:
    return int(str(value))


def pending_changes(
    conn: psycopg.Connection, after: int, max_ids: int | None = None
) -> PendingChanges:
    """The changes of the transactions in ``[after, oldest running transaction)``.

    Args:
        after: the previous read's watermark (0 the first time).
        max_ids: above this many distinct (source, id) pairs ``ids`` is None (too many to list).
    """
    (now,) = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()  # type: ignore[misc]
    watermark = max(_int(now), after)
    rows, first, last, distinct = conn.execute(
        "SELECT count(*), min(id), max(id), count(DISTINCT (source_table, source_id)) "
        "FROM public.embedding_source_changes WHERE xact_id >= %s::xid8 AND xact_id < %s::xid8",
        (str(after), str(watermark)),
    ).fetchone()  # type: ignore[misc]
    (waiting,) = conn.execute(
        "SELECT count(*) FROM public.embedding_source_changes WHERE xact_id >= %s::xid8",
        (str(watermark),),
    ).fetchone()  # type: ignore[misc]
    ids: dict[str, list[str]] | None = {}
    if max_ids is not None and distinct > max_ids:
        ids = None
    elif rows:
        found: dict[str, set[str]] = {}
        for source, source_id in conn.execute(
            "SELECT DISTINCT source_table, source_id FROM public.embedding_source_changes "
            "WHERE xact_id >= %s::xid8 AND xact_id < %s::xid8",
            (str(after), str(watermark)),
        ):
            found.setdefault(source, set()).add(source_id)
        ids = {source: sorted(values) for source, values in sorted(found.items())}
    return PendingChanges(
        after=after,
        watermark=watermark,
        rows=int(rows),
        first_id=int(first) if first is not None else None,
        last_id=int(last) if last is not None else None,
        ids=ids,
        distinct=int(distinct),
        waiting=int(waiting),
    )


def prune_changes(conn: psycopg.Connection, before: int) -> int:
    """Delete the changes of transactions below ``before`` (already handed to a run).

    Returns:
        How many change rows were deleted.
    """
    cur = conn.execute(
        "DELETE FROM public.embedding_source_changes WHERE xact_id < %s::xid8", (str(before),)
    )
    return cur.rowcount
