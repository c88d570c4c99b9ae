"""One v2 (PostgreSQL 18 + pgvector, Redis) for the whole test run, reset between tests.

Each test sees the servers as a fresh v2: no databases but the built-in ones, no roles but the
superuser, an empty Redis with the servers' own password, nothing rendered. A migrated template
database is kept aside so a test that needs a migrated database clones it
(``CREATE DATABASE ... TEMPLATE``) instead of running every migration again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from psycopg import sql

from cartrita_assets.cluster.v2 import LocalV2Target
from cartrita_assets.paths import data_path
from cartrita_assets.pg.connect import connect
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.schema import MigrationRunner
from support.ports import free_port

# Named unlike anything the product creates or looks for (cartrita*, staging names).
MIGRATED_TEMPLATE = "zz_test_migrated_template"
KEPT_DATABASES = ("postgres", "template0", "template1", MIGRATED_TEMPLATE)


def _quiet(_m: str) -> None:
    pass


class SessionV2:
    """The run's v2 servers under ``folder`` and what resets them between tests."""

    def __init__(self, folder: Path) -> None:
        self.target = LocalV2Target(
            base_dir=str(folder), pg_port=free_port(), redis_port=free_port(), durable=False
        )
        self.target.ensure_running(_quiet)
        self.redis_password = self.target.redis().password
        self._template_ready = False

    def reset(self) -> LocalV2Target:
        """Bring the servers back to a fresh v2 (restarting them when a test stopped them)."""
        target = self.target
        pg, rds = target.servers()
        # a test may have stopped v2 (rollback does) or changed Redis's password (the forward
        # run gives v2 v1's): start again with the servers' own password
        if not rds.is_running():
            rds.password_file.write_text(self.redis_password + "\n")
        target.ensure_running(_quiet, redis_password=self.redis_password)
        if not pg.is_running():
            pg.ensure_running()
        with connect(target.admin(), role="test") as conn:
            conn.autocommit = True
            databases = [
                name
                for (name,) in conn.execute(
                    "SELECT datname FROM pg_database WHERE NOT datname = ANY(%s)",
                    (list(KEPT_DATABASES),),
                )
            ]
            for name in databases:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            roles = [
                name
                for (name,) in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname <> current_user "
                    "AND rolname NOT LIKE 'pg\\_%'"
                )
            ]
            for name in roles:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        redis = client_for(target.redis())
        redis.replicaof("NO", "ONE")  # a copy by replication may have left it a replica
        redis.flushall()
        shutil.rmtree(target.rendered_dir(), ignore_errors=True)
        return target

    def migrated_database(self, name: str) -> None:
        """Create ``name`` as a copy of a database every migration has run on."""
        with connect(self.target.admin(), role="test") as conn:
            conn.autocommit = True
            if not self._template_ready:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(MIGRATED_TEMPLATE))
                )
                conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(MIGRATED_TEMPLATE))
                )
                runner = MigrationRunner(
                    self.target.admin(MIGRATED_TEMPLATE), data_path("sql") / "migrations"
                )
                runner.migrate()
                self._template_ready = True
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(MIGRATED_TEMPLATE)
                )
            )
            # a clone does not inherit the database's own defaults (ALTER DATABASE ... SET, which
            # the migrations use): copy them
            (settings,) = conn.execute(
                "SELECT coalesce(s.setconfig, '{}') FROM pg_database d "
                "LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid AND s.setrole = 0 "
                "WHERE d.datname = %s",
                (MIGRATED_TEMPLATE,),
            ).fetchone()
            for item in settings:
                key, value = item.split("=", 1)
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(name), sql.Identifier(*key.split(".")), sql.Literal(value)
                    )
                )

    def stop(self) -> None:
        self.target.stop(_quiet)
