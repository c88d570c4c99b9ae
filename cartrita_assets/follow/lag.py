"""How far v2 trails v1, and whether that is small enough (a pure verdict)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import redis

from cartrita_assets.follow.v2side import redis_link


@dataclass(frozen=True)
class Lag:
    """One measurement.

    Attributes:
        pg_bytes: v1's current WAL position minus what v2 confirmed on the slot.
        pg_seconds: the WAL sender's replay lag (0 when v2 is caught up), None if not streaming.
        retained_wal_bytes: WAL the slot keeps on v1's disk.
        redis_bytes: v1's replication offset minus v2's, None without Redis.
        redis_seconds: seconds since v2 heard from v1, None without Redis.
        redis_link: ``up``/``down``, None without Redis.
    """

    pg_bytes: int
    pg_seconds: float | None
    retained_wal_bytes: int
    redis_bytes: int | None = None
    redis_seconds: float | None = None
    redis_link: str | None = None

    def metadata(self) -> dict[str, float | int | str]:
        """Numbers for asset-check metadata (the UI plots them over time)."""
        out: dict[str, float | int | str] = {
            "pg_lag_bytes": self.pg_bytes,
            "pg_lag_seconds": round(self.pg_seconds, 3) if self.pg_seconds is not None else -1,
            "slot_retained_wal_bytes": self.retained_wal_bytes,
        }
        if self.redis_link is not None:
            out["redis_lag_bytes"] = self.redis_bytes or 0
            out["redis_lag_seconds"] = self.redis_seconds or 0
            out["redis_link"] = self.redis_link
        return out


@dataclass(frozen=True)
class LagLimits:
    """What counts as small: bytes and seconds of lag, WAL the slot may hold on v1."""

    max_bytes: int = 64 * 2**20
    max_seconds: float = 30.0
    max_retained_wal_bytes: int = 10 * 2**30


def verdict(lag: Lag, limits: LagLimits) -> list[str]:
    """Every way ``lag`` is not small, one line each (empty: small enough to cut over)."""
    out = []
    if lag.pg_seconds is None:
        out.append("v2 is not streaming from v1's slot (no WAL sender holds it)")
    if lag.pg_bytes > limits.max_bytes:
        out.append(f"PostgreSQL lag {lag.pg_bytes} bytes > {limits.max_bytes}")
    if lag.pg_seconds is not None and lag.pg_seconds > limits.max_seconds:
        out.append(f"PostgreSQL lag {lag.pg_seconds:.1f}s > {limits.max_seconds:g}s")
    if lag.retained_wal_bytes > limits.max_retained_wal_bytes:
        out.append(
            f"the slot holds {lag.retained_wal_bytes} bytes of WAL on v1 > "
            f"{limits.max_retained_wal_bytes}: v1's disk fills while v2 trails"
        )
    if lag.redis_link is not None and lag.redis_link != "up":
        out.append(f"v2 Redis's link to v1 is {lag.redis_link}")
    if lag.redis_bytes is not None and lag.redis_bytes > limits.max_bytes:
        out.append(f"Redis lag {lag.redis_bytes} bytes > {limits.max_bytes}")
    if lag.redis_seconds is not None and lag.redis_seconds > limits.max_seconds:
        out.append(f"Redis silent for {lag.redis_seconds:g}s > {limits.max_seconds:g}s")
    return out


def growing(previous: Lag | None, now: Lag) -> bool:
    """True when v2 fell further behind since the previous measurement (bytes, both servers)."""
    if previous is None:
        return False
    return now.pg_bytes > previous.pg_bytes or (now.redis_bytes or 0) > (previous.redis_bytes or 0)


_SLOT_SQL = """
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint,
       s.active,
       (SELECT coalesce(extract(epoch FROM r.replay_lag), 0)::float8
        FROM pg_catalog.pg_stat_replication r WHERE r.pid = s.active_pid)
FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = %s
"""


def measure(
    v1: psycopg.Connection, slot: str, v1_redis: redis.Redis | None, v2_redis: redis.Redis | None
) -> Lag:
    """Measure both servers' lag now."""
    row = v1.execute(_SLOT_SQL, (slot,)).fetchone()
    if row is None:
        return Lag(pg_bytes=-1, pg_seconds=None, retained_wal_bytes=0)
    pg_bytes, retained, active, seconds = row
    lag = Lag(int(pg_bytes or 0), float(seconds) if active else None, int(retained or 0))
    if v1_redis is None or v2_redis is None:
        return lag
    link = redis_link(v2_redis)
    primary = int(v1_redis.info("replication").get("master_repl_offset", 0))
    return Lag(
        lag.pg_bytes, lag.pg_seconds, lag.retained_wal_bytes,
        redis_bytes=max(primary - int(str(link["offset"])), 0),
        redis_seconds=float(str(link["last_io_seconds"])),
        redis_link=str(link["link"]),
    )  # fmt: skip
