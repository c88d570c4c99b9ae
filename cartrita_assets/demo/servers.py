"""The demo v1: its own PostgreSQL and Redis, seeded with the synthetic Cartrita data set, and a
generated v1 environment file, so the migration reads it exactly as it reads a real v1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from cartrita_assets.demo import dataset
from cartrita_assets.envfile import PostgresSettings, V1Settings, read_env_file
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.redis import LocalRedis
from cartrita_assets.local.redis_servers import (
    ServerBinary,
    bundled_server,
    server_from_path,
    system_redis7,
)
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.roles import ensure_role
from cartrita_assets.redaction import new_password, write_private_file

DEMO_DB = "cartrita"
DEMO_USER = "cartrita"
# Follow mode streams v1's changes to v2 by logical replication: the demo v1 runs as a v1 set up
# for it would (in Compose: `command: postgres -c wal_level=logical`), with room for a slot.
LOGICAL_REPLICATION_CONF = (
    "wal_level = logical",
    "max_replication_slots = 10",
    "max_wal_senders = 10",
)


@dataclass
class DemoV1:
    """The demo v1 under ``base_dir`` (``<state>/demo-v1``).

    Args:
        base_dir: holds the two servers, the generated ``.env`` and the seed marker.
        pg_port, redis_port: TCP ports on 127.0.0.1.
        scale: size of the synthetic data set (rows grow linearly).
        seed: random seed; the same (scale, seed) always gives the same data.
        redis_server: the Redis server binary to run; empty: the machine's Redis 7 (what
            Cartrita's Compose file runs), or the bundled valkey-server when there is none.
    """

    base_dir: Path
    pg_port: int
    redis_port: int
    scale: int = 1
    seed: int = 42
    durable: bool = True
    log: Callable[[str], None] = lambda _m: None
    redis_server: str = ""

    @property
    def env_file(self) -> Path:
        return self.base_dir / ".env"

    @property
    def marker(self) -> Path:
        return self.base_dir / "seeded.json"

    def servers(self) -> tuple[LocalPostgres, LocalRedis]:
        """The demo's PostgreSQL and Redis servers."""
        pg = LocalPostgres(
            self.base_dir / "postgres", self.pg_port, self.durable, self.log,
            extra_conf=LOGICAL_REPLICATION_CONF,
        )  # fmt: skip
        rds = LocalRedis(self.base_dir / "redis", self.redis_port, self.log, self.redis_binary())
        return pg, rds

    def redis_binary(self) -> ServerBinary:
        """The demo's Redis server: the setting, else the machine's Redis 7, else valkey."""
        if self.redis_server:
            return server_from_path(self.redis_server)
        found = system_redis7()
        if found is None:
            self.log(
                "No Redis 7 on this machine (Debian: apt-get install redis-tools): the demo v1 "
                "Redis runs the bundled valkey-server instead"
            )
        return found or bundled_server()

    def ensure(self) -> V1Settings:
        """Start the demo servers, seed them once, and return the demo's v1 settings."""
        pg, rds = self.servers()
        admin = pg.ensure_running()
        if not _wal_level_is_logical(admin):
            self.log("Restarting the demo v1 PostgreSQL with wal_level = logical (follow mode)")
            admin = pg.restart()
        rds.ensure_running()
        if not self.env_file.exists():
            self._write_env_file(rds.settings().password or "")
        settings = V1Settings.from_env_file(read_env_file(self.env_file))
        wanted = {"scale": self.scale, "seed": self.seed}
        if not self.marker.exists() or json.loads(self.marker.read_text()) != wanted:
            self._seed(admin, settings, rds)
            write_private_file(self.marker, json.dumps(wanted))
        return settings

    def stop(self) -> None:
        """Stop both demo servers (their data stays)."""
        for server in self.servers():
            server.stop()

    def _write_env_file(self, redis_password: str) -> None:
        password = new_password()
        lines = [
            "# Demo Cartrita v1 (synthetic data) started by cartrita-assets",
            "POSTGRES_HOST=127.0.0.1",
            f"POSTGRES_PORT={self.pg_port}",
            f"POSTGRES_USER={DEMO_USER}",
            f"POSTGRES_PASSWORD={password}",
            f"POSTGRES_DB={DEMO_DB}",
            f"DATABASE_URL=postgresql://{DEMO_USER}:{password}@127.0.0.1:{self.pg_port}/{DEMO_DB}",
            f"REDIS_URL=redis://:{redis_password}@127.0.0.1:{self.redis_port}/0",
            f"OPENAI_API_KEY=sk-demo-{new_password()}",
            f"JWT_SECRET={new_password()}",
            "NODE_ENV=production",
        ]
        write_private_file(self.env_file, "\n".join(lines) + "\n")

    def _seed(self, admin: PostgresSettings, v1: V1Settings, rds: LocalRedis) -> None:
        self.log(f"Seeding the demo v1 data set (scale={self.scale}, seed={self.seed})")
        # like docker-compose's POSTGRES_USER in the official image: a superuser
        attrs = {"login": True, "createdb": True, "superuser": True}
        with connect(admin, role="demo v1 PostgreSQL") as conn:
            ensure_role(conn, DEMO_USER, attrs, v1.postgres.password)
            db = sql.Identifier(DEMO_DB)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db))
            owner = sql.Identifier(DEMO_USER)
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, owner))
        with connect(admin, role="demo v1 PostgreSQL", dbname=DEMO_DB) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # needs a superuser
        with connect(v1.postgres, role="demo v1 PostgreSQL", autocommit=False) as conn:
            rows = dataset.seed_postgres(conn, self.scale, self.seed, self.log)
            conn.commit()
        client = rds.client()
        client.flushall()
        keys = dataset.seed_redis(client, self.scale, self.seed)
        self.log(f"Demo v1 seeded: {sum(rows.values())} rows in {len(rows)} tables, "
                 f"{sum(keys.values())} Redis keys")  # fmt: skip


def _wal_level_is_logical(admin: PostgresSettings) -> bool:
    with connect(admin, role="demo v1 PostgreSQL") as conn:
        return conn.execute("SHOW wal_level").fetchone() == ("logical",)
