"""The fast measurements on a real PostgreSQL: the parallel hash equals the single-pass one, reads
exactly a given snapshot, and the xmin-horizon check catches every kind of write to v1 after the
snapshot (falling back to the full hash when it cannot vouch for a table)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import psycopg
import pytest

from cartrita_assets.backup.manifest import DUMP_NAME, Manifest
from cartrita_assets.backup.snapshot import take_backup
from cartrita_assets.envfile import PostgresSettings, V1Settings
from cartrita_assets.pg import inventory, loaded, measure
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.inventory import qualified
from cartrita_assets.pg.tools import count_copy_rows, read_toc
from cartrita_assets.restore import steps as restore_steps

pytestmark = pytest.mark.integration

_names = itertools.count()


@dataclass
class Recorded:
    """A database and what a backup would have recorded of it at a snapshot."""

    settings: PostgresSettings
    tables: dict[str, inventory.TableState]
    horizon: int


@pytest.fixture
def own_db(demo_v1) -> Iterator[PostgresSettings]:
    """A database of this test's own on the demo v1 server: two tables with a few thousand rows
    of every common type (text with tabs and newlines, NULLs, floats, vectors, json)."""
    admin = demo_v1.ensure().postgres
    name = f"fastcheck_{next(_names)}"
    with connect(admin, role="test", dbname="postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    settings = replace(admin, dbname=name)
    with connect(settings, role="test") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text, price float8, v vector(3), "
            "doc jsonb, at timestamptz)"
        )
        conn.execute(
            "INSERT INTO items (name, price, v, doc, at) SELECT "
            "CASE WHEN g % 7 = 0 THEN NULL ELSE 'item' || g || E'\\t\\n' END, g / 3.0, "
            "('[' || g || ',' || (g * 0.1) || ',1e-7]')::vector, jsonb_build_object('g', g), "
            "'2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 3000) g"
        )
        conn.execute("CREATE TABLE notes (id bigint PRIMARY KEY, body text)")
        conn.execute(
            "INSERT INTO notes SELECT g, repeat('x', g % 50) FROM generate_series(1, 500) g"
        )
        conn.execute("CREATE TABLE empty_one (id int)")
    try:
        yield settings
    finally:
        with connect(admin, role="test", dbname="postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _record(settings: PostgresSettings) -> Recorded:
    """What v1_backup records: hashes and the xmin horizon, read in one exported snapshot."""
    with connect(settings, role="test", read_only=True, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        horizon = measure.snapshot_xmin(conn)
        tables = measure.table_states(settings, role="test", snapshot=snapshot, jobs=2)
        conn.rollback()
    return Recorded(settings, tables, horizon)


def test_parallel_hash_in_block_ranges_equals_the_single_pass(own_db, monkeypatch):
    with connect(own_db, role="test") as conn:
        single = inventory.table_states(conn)
    monkeypatch.setattr(measure, "SPLIT_BLOCKS", 2)  # items (a few dozen blocks) is cut in parts
    lines: list[str] = []
    parallel = measure.table_states(own_db, role="test", jobs=3, log=lines.append)
    assert parallel == single
    assert set(parallel) == {"public.items", "public.notes", "public.empty_one"}
    assert parallel["public.empty_one"] == inventory.TableState(0, "0")
    assert lines and lines[-1].startswith("hashing: done, 3,500 rows")


def test_hashing_reads_exactly_the_given_snapshot(own_db):
    with connect(own_db, role="test", autocommit=False) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        with connect(own_db, role="test") as writer:
            writer.execute("DELETE FROM notes WHERE id <= 10")
            writer.execute("UPDATE items SET price = price + 1 WHERE id = 5")
        inside = measure.table_states(own_db, role="test", snapshot=snapshot, jobs=2)
        holder.rollback()
    now = measure.table_states(own_db, role="test", jobs=2)
    assert inside["public.notes"].rows == 500 and now["public.notes"].rows == 490
    assert inside["public.items"] != now["public.items"]


def test_unchanged_v1_is_vouched_for_without_a_second_hash(own_db):
    recorded = _record(own_db)
    found = measure.v1_changes(own_db, recorded.tables, recorded.horizon, jobs=2)
    assert found.changed == [] and found.method == "xmin horizon"
    with connect(own_db, role="test") as conn:  # reads, row locks and ANALYZE write no row
        conn.execute("SELECT * FROM items WHERE id = 1 FOR UPDATE")
        conn.execute("ANALYZE")
    found = measure.v1_changes(own_db, recorded.tables, recorded.horizon, jobs=2)
    assert found.changed == [] and found.method == "xmin horizon"


WRITES: dict[str, Callable[[psycopg.Connection], None]] = {
    "insert": lambda c: c.execute("INSERT INTO notes VALUES (100000, 'new')"),
    "update": lambda c: c.execute("UPDATE items SET name = 'changed' WHERE id = 42"),
    "delete": lambda c: c.execute("DELETE FROM notes WHERE id = 7"),
    "delete_and_insert_keep_the_count": lambda c: c.execute(
        "WITH d AS (DELETE FROM notes WHERE id = 8) INSERT INTO notes VALUES (200000, 'other')"
    ),
    "truncate": lambda c: c.execute("TRUNCATE notes"),
    "truncate_of_an_empty_table_and_a_row": lambda c: (
        c.execute("TRUNCATE empty_one"),
        c.execute("INSERT INTO empty_one VALUES (1)"),
    ),
    "add_column": lambda c: c.execute("ALTER TABLE notes ADD COLUMN extra int DEFAULT 1"),
    "drop_column": lambda c: c.execute("ALTER TABLE items DROP COLUMN doc"),
    "column_type": lambda c: c.execute("ALTER TABLE items ALTER COLUMN price TYPE numeric(12, 1)"),
    "new_table": lambda c: c.execute("CREATE TABLE extra (id int)"),
    "dropped_table": lambda c: c.execute("DROP TABLE empty_one"),
    "renamed_table": lambda c: c.execute("ALTER TABLE empty_one RENAME TO other_one"),
    "update_then_vacuum_freeze": lambda c: (
        c.execute("UPDATE notes SET body = 'frozen later' WHERE id = 3"),
        c.execute("VACUUM (FREEZE) notes"),
    ),
    "update_then_vacuum_full": lambda c: (
        c.execute("UPDATE notes SET body = 'rewritten' WHERE id = 4"),
        c.execute("VACUUM FULL notes"),
    ),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_after_the_snapshot_is_detected(own_db, write):
    recorded = _record(own_db)
    with connect(own_db, role="test") as conn:
        WRITES[write](conn)
    found = measure.v1_changes(own_db, recorded.tables, recorded.horizon, jobs=2)
    assert found.changed, (write, found)
    assert found.method.startswith("full hash"), found


def test_a_write_undone_falls_back_to_the_hash_and_finds_v1_equal(own_db):
    recorded = _record(own_db)
    with connect(own_db, role="test") as conn:
        (name,) = conn.execute("SELECT name FROM items WHERE id = 9").fetchone()
        conn.execute("UPDATE items SET name = 'temporary' WHERE id = 9")
        conn.execute("UPDATE items SET name = %s WHERE id = 9", (name,))
    found = measure.v1_changes(own_db, recorded.tables, recorded.horizon, jobs=2)
    assert found.changed == []
    assert found.method == "full hash (public.items has 1 row(s) written since the snapshot)"


def test_a_manifest_without_a_horizon_is_checked_by_the_full_hash(own_db):
    recorded = _record(own_db)
    found = measure.v1_changes(own_db, recorded.tables, None, jobs=2)
    assert found.changed == []
    assert found.method == "full hash (the manifest records no snapshot horizon)"
    with connect(own_db, role="test") as conn:
        conn.execute("UPDATE notes SET body = 'changed' WHERE id = 1")
    assert measure.v1_changes(own_db, recorded.tables, None, jobs=2).changed == ["public.notes"]


def test_an_older_manifest_hashed_as_text_is_compared_as_text(own_db):
    """Manifests written before the binary hash hold text hashes (and no ``hash_method``): they
    load as ``text`` and are compared by hashing the rows' text again."""
    with connect(own_db, role="test") as conn:
        text_tables = inventory.table_states(conn, method="text")
        assert text_tables != inventory.table_states(conn)  # the two methods are not mixed up
    assert Manifest.from_dict(_manifest_without_method(text_tables)).postgres.hash_method == "text"
    found = measure.v1_changes(own_db, text_tables, None, jobs=2, method="text")
    assert found.changed == []
    with connect(own_db, role="test") as conn:
        conn.execute("UPDATE notes SET body = 'changed' WHERE id = 2")
    changed = measure.v1_changes(own_db, text_tables, None, jobs=2, method="text").changed
    assert changed == ["public.notes"]


def _manifest_without_method(tables: dict[str, inventory.TableState]) -> dict[str, object]:
    """A manifest as written before ``hash_method`` was recorded."""
    postgres = {
        "server_version": "16", "major": 16, "database": "d", "owner": "o", "encoding": "UTF8",
        "collate": "C", "size_bytes": 0, "extensions": {}, "roles": {}, "sequences": {},
        "tables": {k: {"rows": v.rows, "content_hash": v.content_hash} for k, v in tables.items()},
        "snapshot": "s", "pg_dump_version": "16",
    }  # fmt: skip
    return {"backup_id": "b", "created_at": "c", "source": {}, "postgres": postgres, "redis": None}


def test_a_horizon_from_an_older_xid_epoch_never_vouches(own_db):
    recorded = _record(own_db)
    # 2^32 transactions earlier: the same 32-bit xid, a different epoch
    found = measure.v1_changes(own_db, recorded.tables, recorded.horizon - 2**32, jobs=2)
    assert found.method.startswith("full hash (the snapshot is too many transactions old")


def test_backup_inside_a_given_snapshot_dumps_and_hashes_that_snapshot(own_db, tmp_path):
    """A snapshot exported elsewhere (as a replication slot exports one) is what both pg_dump
    and the hash read; writes after it are in neither, and the horizon is the snapshot's."""
    v1 = V1Settings(source="test", postgres=own_db, redis=None, other_keys={})
    root = tmp_path / "backups"
    with connect(own_db, role="test", autocommit=False) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        horizon = measure.snapshot_xmin(holder)
        with connect(own_db, role="test") as writer:
            writer.execute("DELETE FROM notes WHERE id <= 20")
        folder, manifest = take_backup(
            v1, root, source={"note": "test"}, log=lambda _m: None, snapshot=snapshot
        )
        holder.rollback()
    assert manifest.postgres.snapshot == snapshot
    assert manifest.postgres.snapshot_xmin == horizon
    assert manifest.postgres.tables["public.notes"].rows == 500
    data = {
        qualified(e.schema, e.name): folder / DUMP_NAME / f"{e.dump_id}.dat"
        for e in read_toc(folder / DUMP_NAME)
        if e.kind == "TABLE DATA"
    }
    assert count_copy_rows(data["public.notes"]) == 500
    assert Manifest.load(folder) == manifest
    # the delete came after the snapshot: the horizon check sees it
    found = measure.v1_changes(own_db, manifest.postgres.tables, horizon, jobs=2)
    assert found.changed == ["public.notes"]


ODD_TYPES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 100);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE odd (id int PRIMARY KEY, m mood, ms mood[], d short_text, p pair, v vector(2),
                  f float8, n numeric, j jsonb, tags text[], r int4range, b bytea);
CREATE TABLE no_columns ();
INSERT INTO odd VALUES
  (1, 'ok', '{sad,happy}', 'x', ROW(1, 'a'), '[1,2]', 0.0, 1.0, '{"a": 1}', '{a,b}', '[1,5)', ''),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 'happy', '{}', '', ROW(NULL, ''), '[1e-45,-0]', 'NaN', 'Infinity', 'null', '{NULL}',
   'empty', '\\x00');
INSERT INTO no_columns DEFAULT VALUES;
"""


def _odd_db(admin: PostgresSettings, name: str, decoys: int) -> PostgresSettings:
    """A database holding ``ODD_TYPES``; ``decoys`` types created first shift every OID."""
    with connect(admin, role="test", dbname="postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    settings = replace(admin, dbname=name)
    with connect(settings, role="test") as conn:
        for i in range(decoys):
            conn.execute(f"CREATE TYPE decoy_{i} AS ENUM ('x')")
        conn.execute("CREATE EXTENSION vector")
        conn.execute(ODD_TYPES)
    return settings


def test_the_binary_hash_is_equal_across_databases_and_sees_every_bit(demo_v1) -> None:
    """Extension types, enums, domains, composites and arrays of them get different OIDs in two
    databases; the binary hash of the same rows is still equal, and it tells 0.0 from -0.0 and
    1.0 from 1.00 (a text-free, exact comparison); every method agrees on what differs."""
    admin = demo_v1.ensure().postgres
    first, second = _odd_db(admin, "oddhash_a", 0), _odd_db(admin, "oddhash_b", 3)
    try:
        with connect(first, role="test") as a, connect(second, role="test") as b:
            oid = "SELECT 'mood'::regtype::oid"
            assert a.execute(oid).fetchone() != b.execute(oid).fetchone()
            for method in inventory.HASH_METHODS:
                assert inventory.table_states(a, method=method) == inventory.table_states(
                    b, method=method
                ), method
            assert measure.table_states(first, role="test", jobs=2) == inventory.table_states(a)
            assert inventory.table_states(a)["public.no_columns"].rows == 1
            before = inventory.table_states(b)
            b.execute("UPDATE public.odd SET f = '-0' WHERE id = 1")  # same number, other bits
            assert inventory.table_states(b)["public.odd"] != before["public.odd"]
            b.execute("UPDATE public.odd SET f = 0.0, n = 1.00 WHERE id = 1")  # 1.0 and 1.00 differ
            assert inventory.table_states(b)["public.odd"] != before["public.odd"]
            b.execute("UPDATE public.odd SET n = 1.0 WHERE id = 1")
            assert inventory.table_states(b) == before
    finally:
        with connect(admin, role="test", dbname="postgres") as conn:
            for name in ("oddhash_a", "oddhash_b"):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _hash_as_loaded(settings: PostgresSettings, *loaded_first: str) -> loaded.LoadHasher:
    """Every table of ``settings`` hashed as :class:`LoadHasher` does during a restore:
    ``loaded_first`` by the background session, the rest by ``finish``."""
    with connect(settings, role="test") as conn:
        names = [qualified(s, t) for s, t in inventory.list_tables(conn)]
    hasher = loaded.LoadHasher(
        settings, dbname=settings.dbname, role="test", tables=names, method=inventory.HASH_METHOD
    ).start()
    for name in loaded_first:
        hasher.loaded(name)
    deadline = time.monotonic() + 30
    while hasher.while_loading < len(loaded_first) and time.monotonic() < deadline:
        time.sleep(0.05)  # as while a load runs: the background session hashes them
    hasher.finish(jobs=2)
    return hasher


def _oid(settings: PostgresSettings) -> int:
    with connect(settings, role="test") as conn:
        return conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]


def test_tables_hashed_as_they_load_equal_the_full_hash_and_are_vouched_for(own_db):
    hasher = _hash_as_loaded(own_db, "public.notes")
    assert hasher.while_loading == 1  # notes by the background session, the others in finish
    full = measure.table_states(own_db, role="test", jobs=1)
    assert {n: s.state for n, s in hasher.states.items()} == full
    assert hasher.states["public.items"].xid is not None  # one INSERT wrote every row
    with connect(own_db, role="test") as conn:  # reads, row locks and ANALYZE write no row
        conn.execute("SELECT * FROM items WHERE id = 1 FOR UPDATE")
        conn.execute("ANALYZE")
    unchanged, why = loaded.unchanged_since_loaded(
        own_db, hasher.states, role="test", database_oid=_oid(own_db), jobs=2
    )
    assert why == {} and unchanged == full


@pytest.mark.parametrize("write", sorted(set(WRITES) - {"new_table"}))
def test_every_write_after_a_table_was_hashed_as_loaded_is_detected(own_db, write):
    hasher = _hash_as_loaded(own_db, "public.items", "public.notes")
    before = measure.table_states(own_db, role="test", jobs=2)
    with connect(own_db, role="test") as conn:
        WRITES[write](conn)
    after = measure.table_states(own_db, role="test", jobs=2)
    unchanged, why = loaded.unchanged_since_loaded(
        own_db, hasher.states, role="test", database_oid=_oid(own_db), jobs=2
    )
    changed = {n for n in before if after.get(n) != before[n]}
    assert changed and changed <= set(why), (write, changed, why)
    assert set(unchanged) | set(why) == set(hasher.states) and not set(unchanged) & set(why)
    assert all(after[n] == s for n, s in unchanged.items())


def test_a_new_table_leaves_the_hashed_ones_vouched_for(own_db):
    hasher = _hash_as_loaded(own_db)
    with connect(own_db, role="test") as conn:
        WRITES["new_table"](conn)
    _, why = loaded.unchanged_since_loaded(
        own_db, hasher.states, role="test", database_oid=_oid(own_db), jobs=2
    )
    assert why == {}


def test_a_table_written_by_two_transactions_or_another_database_is_never_vouched_for(own_db):
    with connect(own_db, role="test") as conn:
        conn.execute("INSERT INTO notes VALUES (300000, 'second transaction')")
    hasher = _hash_as_loaded(own_db)
    assert hasher.states["public.notes"].xid is None
    _, why = loaded.unchanged_since_loaded(
        own_db, hasher.states, role="test", database_oid=_oid(own_db), jobs=2
    )
    assert set(why) == {"public.notes"}
    assert "not written by one transaction" in why["public.notes"]
    _, why = loaded.unchanged_since_loaded(
        own_db, hasher.states, role="test", database_oid=_oid(own_db) + 1, jobs=2
    )
    assert set(why) == set(hasher.states)


def test_a_restore_hands_each_table_over_once_its_data_and_constraints_are_in(
    own_db, tmp_path, monkeypatch
):
    """The restore hashes a table only after pg_restore reported both its data and its primary
    key (built under an exclusive lock, which a read in progress would hold up)."""
    events: list[str] = []

    class Unbatched:  # pg_restore's lines in the order they arrive, between the hand-overs
        def __init__(self, _title: str, _log: object) -> None:
            pass

        def __call__(self, line: str) -> None:
            events.append(line)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(restore_steps, "LineBatch", Unbatched)
    v1 = V1Settings(source="test", postgres=own_db, redis=None, other_keys={})
    folder, manifest = take_backup(v1, tmp_path / "b", source={}, log=lambda _m: None, jobs=2)
    target = f"{own_db.dbname}_restored"
    with connect(own_db, role="test", dbname="postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {target}")
        conn.execute(f"CREATE DATABASE {target}")
    try:
        with connect(replace(own_db, dbname=target), role="test") as conn:
            conn.execute("CREATE EXTENSION vector")
        restore_steps._pg_restore(
            own_db, folder, target, log=lambda _m: None, jobs=2,
            table_loaded=lambda name: events.append(f"handed over {name}"),
        )  # fmt: skip
    finally:
        with connect(own_db, role="test", dbname="postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
    lines = [line for event in events for line in event.splitlines()]
    handed = [line.removeprefix("handed over ") for line in lines if line.startswith("handed")]
    assert sorted(handed) == sorted(manifest.postgres.tables)  # each once
    for table in ("items", "notes"):
        at = lines.index(f"handed over public.{table}")
        done = [line for line in lines[:at] if "finished item" in line and f" {table}" in line]
        assert any("TABLE DATA" in line for line in done), (table, lines)
        assert any(f"CONSTRAINT {table} {table}_pkey" in line for line in done), lines


def test_while_every_loader_is_busy_no_table_is_hashed_beside_them(own_db):
    busy = [True]
    with connect(own_db, role="test") as conn:
        names = [qualified(s, t) for s, t in inventory.list_tables(conn)]
    hasher = loaded.LoadHasher(
        own_db, dbname=own_db.dbname, role="test", tables=names, method=inventory.HASH_METHOD,
        idle=lambda: not busy[0],
    ).start()  # fmt: skip
    hasher.loaded("public.notes")
    time.sleep(0.5)
    assert hasher.while_loading == 0  # waiting for a free loader
    busy[0] = False
    deadline = time.monotonic() + 30
    while hasher.while_loading < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hasher.while_loading == 1
    assert set(hasher.finish(jobs=2)) == set(names)


def test_busy_loaders_are_counted_from_pg_restores_lines():
    loaders = restore_steps._Loaders(jobs=2)
    for line in (
        "pg_restore: launching item 1 TABLE DATA a",
        "pg_restore: launching item 2 TABLE DATA b",
    ):
        loaders.follow(line)
    assert not loaders.one_free()
    loaders.follow("pg_restore: finished item 2 TABLE DATA b")
    assert loaders.one_free() and loaders.busy == 1
