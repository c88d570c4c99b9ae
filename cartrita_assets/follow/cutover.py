"""The switch: v1 refuses writes, v2 catches up to v1's last position, v2 becomes the primary.

Downtime is measured from v1 refusing writes to v2 being ready (replication stopped, sequences
set, ``.env.v2`` written). The verification of the switch point runs afterwards, on a snapshot
of v2 exported at the switch, so the application may already write v2 while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from cartrita_assets.envfile import PostgresSettings, RedisSettings, V1Settings
from cartrita_assets.follow import lag as lags
from cartrita_assets.follow import ledger as ledgers
from cartrita_assets.follow import v1side, v2side
from cartrita_assets.follow.ledger import Ledger
from cartrita_assets.follow.v1side import FollowError
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for

Log = Callable[[str], None]
# How long v1 Redis holds writers during the switch; unpaused as soon as v2 detached.
PAUSE_MS = 120_000


class CutoverRefused(FollowError):
    """The cutover did not start; v1 was not frozen."""


@dataclass
class Switch:
    """What the cutover did and measured."""

    freeze_lsn: str = ""
    sessions_ended: int = 0
    sequences: int = 0
    downtime_seconds: float = 0.0
    wait_seconds: float = 0.0
    redis_offset: int | None = None
    removed: list[str] = field(default_factory=list)


def refuse_reasons(
    ledger: Ledger, lag: lags.Lag, limits: lags.LagLimits, fingerprint: str
) -> list[str]:
    """Why the cutover must not freeze v1 (empty: go). Pure: lag verdict plus DDL detection."""
    out = []
    if ledger.state != "following" or not ledger.subscription:
        out.append(
            f"follow mode is not streaming (state: {ledger.state}): run "
            "`cartrita forward --follow` first"
        )
    if fingerprint != ledger.catalog_fingerprint:
        out.append(
            "v1's table definitions changed since the snapshot (DDL during follow is not "
            "replicated): apply the same change to v2 by hand or start over with "
            "`cartrita follow abort` and `cartrita forward --follow`"
        )
    out += lags.verdict(lag, limits)
    return out


def switch(
    v1: V1Settings,
    root: Path,
    v2_admin: PostgresSettings,
    v2_redis: RedisSettings | None,
    *,
    limits: lags.LagLimits,
    write_env: Callable[[], object],
    log: Log,
    on_snapshot: Callable[[psycopg.Connection, str], None],
    deadline_s: float = 120.0,
    freeze_below_bytes: int = 2**20,
) -> Switch:
    """Cut over. ``on_snapshot(conn, snapshot)`` runs after v2 is ready, with a v2 session
    holding the switch point's exported snapshot open (the verification)."""
    ledger = ledgers.load(root)
    if ledger is None:
        raise CutoverRefused("Nothing is following v1: run `cartrita forward --follow` first.")
    v1_redis = client_for(v1.redis) if v1.redis is not None and ledger.redis_replica else None
    v2_client = client_for(v2_redis) if v2_redis is not None and ledger.redis_replica else None
    out = Switch()
    with v1side.writable(v1.postgres) as v1c, connect(v2_admin, role="v2 PostgreSQL") as v2c:
        lag = _settle(v1c, ledger, v1_redis, v2_client, freeze_below_bytes, log)
        reasons = refuse_reasons(ledger, lag, limits, v1side.catalog_fingerprint(v1c))
        if reasons:
            raise CutoverRefused(
                "The cutover did not start; v1 still takes writes:\n"
                + "\n".join(f"- {r}" for r in reasons)
            )
        log(f"Lag before the freeze: {lag.metadata()}")
        ledger.read_only, ledger.state = True, "frozen"
        if v1_redis is not None:
            ledger.redis_min_replicas = int(v1_redis.config_get("min-replicas-to-write")
                                            .get("min-replicas-to-write", 0))  # fmt: skip
        ledgers.save(root, ledger)
        frozen_at = time.monotonic()
        out.sessions_ended = v1side.freeze(v1c, ledger.database)
        if v1_redis is not None:
            _freeze_redis(v1_redis)
        log(f"v1 refuses writes ({out.sessions_ended} sessions ended)")
        out.freeze_lsn = v1side.current_lsn(v1c)
        _wait_applied(v1c, ledger, out.freeze_lsn, v1_redis, v2_client, deadline_s, out)
        out.wait_seconds = time.monotonic() - frozen_at
        out.sequences = len(v2side.copy_sequences(v1c, v2c))
        with connect(v2_admin, role="v2 PostgreSQL", autocommit=False) as snap:
            snap.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            snapshot = str(snap.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            v2side.drop_subscription(v2c, ledger.subscription)
            if v2_client is not None:
                v2side.stop_redis_replica(v2_client)
            write_env()
            out.downtime_seconds = time.monotonic() - frozen_at
            log(f"v2 is ready: downtime {out.downtime_seconds:.2f}s (freeze to v2 ready)")
            if v1_redis is not None:
                # v2 detached: v1 has no replica, so min-replicas-to-write refuses every write
                v1_redis.execute_command("CLIENT", "UNPAUSE")
            out.removed = _remove_follow_objects(v1c, ledger, root)
            on_snapshot(snap, snapshot)
            snap.rollback()
    return out


def _settle(
    v1c: psycopg.Connection,
    ledger: Ledger,
    v1_redis: redis.Redis | None,
    v2_redis: redis.Redis | None,
    below: int,
    log: Log,
    patience_s: float = 300.0,
) -> lags.Lag:
    """Before freezing, give v2 time to work off a backlog (up to ``patience_s``) while v1
    still takes writes: the downtime is then the time to apply the last ``below`` bytes, not
    whatever accumulated during the forward run."""
    until = time.monotonic() + patience_s
    lag = lags.measure(v1c, ledger.slot, v1_redis, v2_redis)
    if lag.pg_bytes > below:
        log(f"v2 trails v1 by {lag.pg_bytes} bytes: waiting until it is under {below} to freeze")
    while (lag.pg_bytes > below or (lag.redis_bytes or 0) > below) and time.monotonic() < until:
        time.sleep(0.2)
        lag = lags.measure(v1c, ledger.slot, v1_redis, v2_redis)
    return lag


def _freeze_redis(client: redis.Redis) -> None:
    # writers wait (not acknowledged) while paused; once v2 has detached they are refused
    client.config_set("min-replicas-to-write", 1)
    client.execute_command("CLIENT", "PAUSE", str(PAUSE_MS), "WRITE")


def _wait_applied(
    v1c: psycopg.Connection,
    ledger: Ledger,
    target: str,
    v1_redis: redis.Redis | None,
    v2_redis: redis.Redis | None,
    deadline_s: float,
    out: Switch,
) -> None:
    """Until v2 confirmed v1's position on the slot and v2 Redis reached v1's offset."""
    until = time.monotonic() + deadline_s
    pg_done = redis_done = False
    while True:
        pg_done = pg_done or v1side.slot_confirmed(v1c, ledger.slot, target)
        if v1_redis is not None and v2_redis is not None and not redis_done:
            primary = int(v1_redis.info("replication").get("master_repl_offset", 0))
            offset = int(str(v2side.redis_link(v2_redis)["offset"]))
            redis_done, out.redis_offset = offset >= primary, offset
        else:
            redis_done = True
        if pg_done and redis_done:
            return
        if time.monotonic() > until:
            raise FollowError(
                f"v2 did not catch up with frozen v1 within {deadline_s:.0f}s (PostgreSQL "
                f"{'done' if pg_done else 'behind'}, Redis {'done' if redis_done else 'behind'}). "
                "v1 stays read-only; `cartrita follow abort` lets v1 take writes again."
            )
        time.sleep(0.02)


def _remove_follow_objects(v1c: psycopg.Connection, ledger: Ledger, root: Path) -> list[str]:
    """After the switch: drop the slot and publication and reset replica identities on v1. The
    freeze stays (v1 must not take writes the application would lose); abort reverts it."""
    removed = []
    if v1side.drop_slot(v1c, ledger.slot):
        removed.append(f"slot {ledger.slot}")
    v1c.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(ledger.publication)))
    removed.append(f"publication {ledger.publication}")
    for table in ledger.replica_identities:  # quoted by preflight (quote_ident)
        v1c.execute(
            sql.SQL("ALTER TABLE IF EXISTS {} REPLICA IDENTITY DEFAULT").format(sql.SQL(table))
        )
        removed.append(f"REPLICA IDENTITY FULL on {table}")
    ledgers.save(root, replace(ledger, state="cut over", subscription="", redis_replica=False,
                               replica_identities=[]))  # fmt: skip
    return removed
