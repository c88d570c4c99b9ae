"""The v2 target. Assets see one interface; the environment decides whether it is a pair of local
servers or the cluster's StatefulSets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.local.redis import LocalRedis

Log = Callable[[str], None]


class V2Target(dg.ConfigurableResource):
    """Base of the v2 targets: PostgreSQL with pgvector, and Redis."""

    def ensure_running(self, log: Log) -> dict[str, str]:
        """Bring v2 up (idempotent) and return a description of its endpoints."""
        raise NotImplementedError

    def admin(self, dbname: str = "postgres") -> PostgresSettings:
        """Superuser connection settings for v2 PostgreSQL."""
        raise NotImplementedError

    def redis(self, db: int = 0) -> RedisSettings:
        """Connection settings for v2 Redis."""
        raise NotImplementedError

    def stop(self, log: Log) -> list[str]:
        """Stop v2 traffic; returns what was stopped."""
        raise NotImplementedError


class LocalV2Target(V2Target):
    """v2 as a PostgreSQL 18 + pgvector and a Redis server started under the state folder."""

    base_dir: str = ".cartrita/v2"
    pg_port: int = 32432
    redis_port: int = 32379
    durable: bool = True

    def servers(self, log: Log = lambda _m: None) -> tuple[LocalPostgres, LocalRedis]:
        """The two local servers (not started)."""
        base = Path(self.base_dir)
        pg = LocalPostgres(base / "postgres", self.pg_port, self.durable, log)
        return pg, LocalRedis(base / "redis", self.redis_port, log)

    def ensure_running(self, log: Log) -> dict[str, str]:
        pg, rds = self.servers(log)
        admin = pg.ensure_running()
        rds.ensure_running()
        return {
            "kind": "local servers",
            "postgres": admin.masked_dsn(),
            "redis": rds.settings().masked_url(),
            "data_dir": str(Path(self.base_dir).resolve()),
        }

    def admin(self, dbname: str = "postgres") -> PostgresSettings:
        return self.servers()[0].settings(dbname)

    def redis(self, db: int = 0) -> RedisSettings:
        return self.servers()[1].settings(db)

    def stop(self, log: Log) -> list[str]:
        stopped = []
        for name, server in zip(("postgres", "redis"), self.servers(log), strict=True):
            if server.stop():
                stopped.append(f"local v2 {name}")
        return stopped
