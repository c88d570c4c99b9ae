"""An application's writes against the demo v1, for follow mode's tests and benchmark: clients
that insert, update and delete rows in integer-key, uuid-key and key-less tables and set Redis
keys, remembering every write v1 acknowledged (and only those)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import psycopg
import redis

from cartrita_assets.envfile import V1Settings
from cartrita_assets.redis_copy.client import client_for

TABLES_SQL = """
CREATE TABLE IF NOT EXISTS public.follow_int (id bigserial PRIMARY KEY, v text NOT NULL);
CREATE TABLE IF NOT EXISTS public.follow_uuid (id uuid PRIMARY KEY, v text NOT NULL);
CREATE TABLE IF NOT EXISTS public.follow_keyless (k text NOT NULL, v text NOT NULL);
"""


def create_tables(v1: V1Settings) -> None:
    with psycopg.connect(**v1.postgres.conninfo_kwargs(), autocommit=True) as conn:
        conn.execute(TABLES_SQL)


@dataclass
class Acked:
    """The state v1 acknowledged: table -> key -> value (None: deleted), Redis key -> value."""

    rows: dict[str, dict[str, str | None]] = field(
        default_factory=lambda: {"follow_int": {}, "follow_uuid": {}, "follow_keyless": {}}
    )
    redis: dict[str, str] = field(default_factory=dict)
    count: int = 0
    refused: int = 0
    last_ack: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Writers:
    """``n`` threads writing to v1 until stopped; each write is recorded only once v1 acked it."""

    def __init__(self, v1: V1Settings, n: int, seed: int = 7) -> None:
        self.v1, self.acked, self.stop_flag = v1, Acked(), threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i, seed + i), daemon=True) for i in range(n)
        ]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, worker: int, seed: int) -> None:
        rnd = random.Random(seed)
        conn: psycopg.Connection | None = None
        client = client_for(self.v1.redis) if self.v1.redis else None
        mine: dict[str, list[str]] = {"follow_int": [], "follow_uuid": [], "follow_keyless": []}
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(**self.v1.postgres.conninfo_kwargs(), autocommit=True,
                                           application_name="app")  # fmt: skip
                self._one_pg(conn, rnd, worker, n, mine)
            except psycopg.Error:
                with self.acked.lock:
                    self.acked.refused += 1
                conn = None
                time.sleep(0.01)
            if client is not None:
                key, value = f"follow:{worker}:{rnd.randrange(200)}", f"{worker}-{n}"
                try:
                    client.set(key, value)
                    with self.acked.lock:
                        self.acked.redis[key] = value
                        self._ack()
                except Exception:
                    with self.acked.lock:
                        self.acked.refused += 1
                    time.sleep(0.01)
        if conn is not None:
            conn.close()

    def _ack(self) -> None:
        self.acked.count += 1
        self.acked.last_ack = time.monotonic()

    def _one_pg(
        self, conn: psycopg.Connection, rnd: random.Random, worker: int, n: int,
        mine: dict[str, list[str]],
    ) -> None:  # fmt: skip
        table = rnd.choice(list(mine))
        keys = mine[table]
        action = "insert" if len(keys) < 5 else rnd.choice(["insert", "update", "delete"])
        value = f"w{worker}-{n}"
        if action == "insert":
            if table == "follow_int":
                key = str(conn.execute(
                    "INSERT INTO follow_int (v) VALUES (%s) RETURNING id", (value,)
                ).fetchone()[0])  # type: ignore[index]  # fmt: skip
            else:
                key = str(uuid.uuid4()) if table == "follow_uuid" else f"k{worker}-{n}"
                col = "id" if table == "follow_uuid" else "k"
                conn.execute(f"INSERT INTO {table} ({col}, v) VALUES (%s, %s)", (key, value))
            keys.append(key)
        else:
            key = rnd.choice(keys)
            col = "k" if table == "follow_keyless" else "id"
            cast = "::bigint" if table == "follow_int" else ("::uuid" if col == "id" else "")
            if action == "update":
                conn.execute(f"UPDATE {table} SET v = %s WHERE {col} = %s{cast}", (value, key))
            else:
                conn.execute(f"DELETE FROM {table} WHERE {col} = %s{cast}", (key,))
                keys.remove(key)
                value = None  # type: ignore[assignment]
        with self.acked.lock:
            self.acked.rows[table][key] = value
            self._ack()


def lost_redis_keys(acked: Acked, v2: redis.Redis) -> list[str]:
    """Every acknowledged Redis write v2 does not hold."""
    return [k for k, v in acked.redis.items() if v2.get(k) != v.encode()]


def missing_in_v2(acked: Acked, v2: psycopg.Connection) -> list[str]:
    """Every acknowledged write that v2 does not show (empty: nothing lost)."""
    out = []
    for table, col, cast in (("follow_int", "id", "::text"), ("follow_uuid", "id", "::text"),
                             ("follow_keyless", "k", "")):  # fmt: skip
        found = dict(v2.execute(f"SELECT {col}{cast}, v FROM {table}").fetchall())
        for key, value in acked.rows[table].items():
            if found.get(key) != value:
                out.append(f"{table}[{key}]: acked {value!r}, v2 {found.get(key)!r}")
    return out
