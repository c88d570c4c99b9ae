"""Follow mode on v2: the subscription from v1's slot, change-capture triggers that fire for
replicated rows, Redis REPLICAOF v1, and the switch (sequences, detaching).

The subscription's connection string holds v1's password. It is sent once to v2 in the
CREATE SUBSCRIPTION statement (never logged: the session sets ``log_min_error_statement`` to
PANIC so a failing statement is not written to v2's server log) and lives only in
``pg_subscription.subconninfo``, which only superusers may read.
"""

from __future__ import annotations

import time

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.follow.v1side import FollowError
from cartrita_assets.pg import inventory
from cartrita_assets.vectors.changes import TRIGGER


def v1_conninfo(v1: PostgresSettings, host: str | None = None) -> str:
    """The connection string v2's subscription uses to reach v1 (holds the password)."""
    kwargs = {k: v for k, v in v1.conninfo_kwargs().items() if v is not None}
    if host:
        kwargs["host"] = host
    kwargs["application_name"] = "cartrita-follow"
    return make_conninfo(**{k: str(v) for k, v in kwargs.items()})


def create_subscription(
    conn: psycopg.Connection, name: str, conninfo: str, publication: str, slot: str
) -> None:
    """Subscribe from the existing slot with no initial copy: the restore already holds
    everything up to the slot's snapshot."""
    conn.execute("SET log_min_error_statement = panic")
    conn.execute(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(name)))
    conn.execute(
        sql.SQL(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false, "
            "create_slot = false, slot_name = {}, enabled = true)"
        ).format(
            sql.Identifier(name),
            sql.Literal(conninfo),
            sql.Identifier(publication),
            sql.Literal(slot),
        )  # fmt: skip
    )
    conn.execute("RESET log_min_error_statement")


def drop_subscription(conn: psycopg.Connection, name: str) -> bool:
    """Detach and drop the subscription without touching v1's slot (dropped separately, so a
    dead v1 cannot block this). False when there was none."""
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = %s", (name,)
    ).fetchone()
    if not exists:
        return False
    ident = sql.Identifier(name)
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    return True


def enable_capture_always(conn: psycopg.Connection) -> list[str]:
    """Make the embedding change-capture trigger fire for rows applied by replication too
    (replication workers run with session_replication_role = replica, which skips ORIGIN
    triggers). Returns the tables changed."""
    rows = conn.execute(
        "SELECT t.tgrelid::regclass::text FROM pg_catalog.pg_trigger t "
        "WHERE t.tgname = %s AND t.tgenabled <> 'A'",
        (TRIGGER,),
    ).fetchall()
    for (rel,) in rows:
        conn.execute(
            sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
                sql.SQL(rel), sql.Identifier(TRIGGER)
            )
        )
    return [str(r[0]) for r in rows]


def applied_lsn(conn: psycopg.Connection, name: str) -> str | None:
    """The last v1 position v2's apply worker reported as done, or None (not running)."""
    row = conn.execute(
        "SELECT latest_end_lsn::text FROM pg_catalog.pg_stat_subscription "
        "WHERE subname = %s AND relid IS NULL",
        (name,),
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def copy_sequences(v1: psycopg.Connection, v2: psycopg.Connection) -> dict[str, tuple[int, bool]]:
    """Set every v2 sequence to v1's state (logical replication does not carry sequences)."""
    states = inventory.sequence_states(v1)
    out = {}
    for name, state in states.items():
        schema, _, seq = name.partition(".")
        v2.execute(
            "SELECT setval(%s::regclass, %s, %s)",
            (sql.Identifier(schema, seq).as_string(v2), state.last_value, state.is_called),
        )
        out[name] = (state.last_value, state.is_called)
    return out


# ---- Redis -------------------------------------------------------------------------------------


def start_redis_replica(v2: redis.Redis, v1: RedisSettings, v1_host_for_v2: str) -> None:
    """v2 Redis becomes a replica of v1 (every logical database). v1's password goes through
    ``CONFIG SET masterauth`` over v2's authenticated connection, never a command line."""
    if v1.tls:
        raise FollowError(
            "v1 Redis uses TLS: follow mode's REPLICAOF over TLS is not supported; migrate "
            "without --follow."
        )
    if v1.username:
        v2.config_set("masteruser", v1.username)
    v2.config_set("masterauth", v1.password or "")
    v2.execute_command("REPLICAOF", v1_host_for_v2, str(v1.port))


def stop_redis_replica(v2: redis.Redis) -> None:
    """v2 Redis stops replicating and becomes a primary; its stored v1 password is cleared."""
    v2.execute_command("REPLICAOF", "NO", "ONE")
    v2.config_set("masterauth", "")


def redis_link(v2: redis.Redis) -> dict[str, object]:
    """v2's replication link: status, offset, seconds since the last byte from v1."""
    info = v2.info("replication")
    return {
        "role": info.get("role"),
        "link": info.get("master_link_status", "none"),
        "offset": int(info.get("slave_repl_offset", info.get("master_repl_offset", 0)) or 0),
        "last_io_seconds": int(info.get("master_last_io_seconds_ago", -1) or 0),
        "sync_in_progress": bool(int(info.get("master_sync_in_progress", 0) or 0)),
    }


def wait_redis_synced(v2: redis.Redis, deadline_s: float = 120.0) -> dict[str, object]:
    """Wait until v2's link to v1 is up and the initial sync is done."""
    until = time.monotonic() + deadline_s
    while True:
        link = redis_link(v2)
        if link["link"] == "up" and not link["sync_in_progress"]:
            return link
        if time.monotonic() > until:
            raise FollowError(
                f"v2 Redis did not finish syncing from v1 within {deadline_s:.0f}s (link "
                f"{link['link']}): check that v2 reaches v1 Redis and that v1's password is "
                "right; `cartrita v2 logs redis` shows v2's side."
            )
        time.sleep(0.1)
