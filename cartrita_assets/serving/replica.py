"""A local streaming replica of v2: ``pg_basebackup -R`` into its own data folder, started on its
own port as a hot standby that serves read-only queries.

It streams from a physical replication slot, so the primary keeps the WAL the replica still needs
even while the replica is stopped. It connects as a role that may only replicate, whose password
sits in a 0600 passfile the server user owns (``primary_conninfo`` names that file, never the
password).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.errors import ServingError
from cartrita_assets.local import system
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.pg.binaries import pg_binary
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.roles import scram_verifier
from cartrita_assets.redaction import new_password, write_private_file

REPLICATION_ROLE = "cartrita_replicator"
SLOT = "cartrita_replica"
HEARTBEAT_TABLE = "cartrita_replica_heartbeat"
REPLICA_LOG_HINT = "<state>/v2/replica/server.log"


@dataclass(frozen=True)
class Lag:
    """How far the replica is behind: WAL bytes not yet replayed, and the time a fresh write on
    the primary took to become visible on the replica."""

    bytes: int
    seconds: float
    replay_lag_seconds: float | None


@dataclass
class LocalReplica:
    """The streaming replica of the local v2 PostgreSQL.

    Args:
        base_dir: folder of the replica's ``data/``, log and passfile.
        port: the replica's port on 127.0.0.1.
        durable: ``False`` turns fsync off (tests only).
    """

    base_dir: Path
    port: int
    durable: bool = True
    log: Callable[[str], None] = lambda _m: None

    @property
    def passfile(self) -> Path:
        return self.base_dir / "replicator.pgpass"

    def server(self) -> LocalPostgres:
        return LocalPostgres(self.base_dir, self.port, self.durable, self.log)

    def settings(self, dbname: str = "postgres") -> PostgresSettings:
        """Superuser settings on the replica (the primary's superuser: same catalog)."""
        return self.server().settings(dbname)

    def ensure_running(self, primary: LocalPostgres) -> str:
        """Create the replica from ``primary`` if it has none, start it, wait for logins.

        Returns:
            ``"created"`` or ``"started"`` or ``"running"``.
        """
        server = self.server()
        data = server.data_dir / "PG_VERSION"
        if not data.exists():
            self._base_backup(primary)
            action = "created"
        else:
            action = "running" if server.is_running() else "started"
        shutil.copyfile(primary.password_file, server.password_file)
        server.password_file.chmod(0o600)
        server.ensure_running()
        with connect(self.settings(), role="v2 read replica") as conn:
            standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if not standby or not standby[0]:
            raise ServingError(
                f"The server in {server.data_dir} is not a standby: move the folder away and "
                "materialize v2_read_replica again to take a new base backup."
            )
        return action

    def stop(self) -> bool:
        return self.server().stop()

    def is_running(self) -> bool:
        return self.server().is_running()

    def _base_backup(self, primary: LocalPostgres) -> None:
        password = new_password()
        with connect(primary.settings(), role="v2 PostgreSQL") as conn:
            _ensure_replication_role(conn, password)
            # a slot left by an earlier replica whose folder is gone would hold WAL forever
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s AND NOT active",
                (SLOT,),
            )
        system.check_writable_dir(self.base_dir, "read replica")
        system.ensure_traversable(self.base_dir, self.log)
        write_private_file(
            self.passfile, f"127.0.0.1:{primary.port}:*:{REPLICATION_ROLE}:{password}\n"
        )
        system.chown_to_server_user(self.passfile)
        data = self.server().data_dir
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        data.chmod(0o700)
        system.chown_to_server_user(self.base_dir)
        self.log(f"Taking a base backup of v2 (127.0.0.1:{primary.port}) into {data}")
        cmd = [
            pg_binary("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", REPLICATION_ROLE, "-D", str(data), "-R", "-X", "stream", "-C", "-S", SLOT,
            "--checkpoint=fast", "-w", "-d", f"passfile={self.passfile.resolve()}",
        ]  # fmt: skip
        result = subprocess.run(
            system.as_server_user(cmd), capture_output=True, text=True, check=False,
            env={**os.environ, "PGPASSFILE": str(self.passfile.resolve())},
        )  # fmt: skip
        if result.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            raise ServingError(
                f"pg_basebackup of v2 failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-600:]}"
            )


def _ensure_replication_role(conn: psycopg.Connection, password: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION_ROLE,))
    verb = "ALTER" if exists.fetchone() else "CREATE"
    conn.execute(
        sql.SQL(f"{verb} ROLE {{}} WITH LOGIN REPLICATION NOSUPERUSER PASSWORD {{}}").format(
            sql.Identifier(REPLICATION_ROLE), sql.Literal(scram_verifier(password))
        )
    )


def measure_lag(primary: PostgresSettings, replica: PostgresSettings, timeout: float = 30) -> Lag:
    """Write a heartbeat row on the primary (in its ``postgres`` database, never the
    application's), time until the replica shows it, and read the replay position.

    Both connections are open before the write, so the time is replication's, not a login's.

    Raises:
        ServingError: the write did not reach the replica within ``timeout`` seconds.
    """
    table = sql.Identifier(HEARTBEAT_TABLE)
    with (
        connect(primary, role="v2 PostgreSQL", dbname="postgres") as conn,
        connect(replica, role="v2 read replica", dbname="postgres") as standby,
    ):
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, beat bigint)").format(table)
        )
        upsert = sql.SQL("INSERT INTO {} VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET beat = %s")
        # an asynchronous commit would wait for the WAL writer (up to 200 ms) before streaming
        conn.execute("SET synchronous_commit = on")
        beat = time.time_ns()
        conn.execute(upsert.format(table), (beat, beat))
        seconds = _wait_for_beat(standby, beat, time.perf_counter(), timeout)
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
            "extract(epoch FROM r.replay_lag)::float8 FROM pg_stat_replication r "
            "JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = %s",
            (SLOT,),
        ).fetchone()
    if row is None:
        raise ServingError(
            f"v2 has no streaming connection on slot {SLOT}: start the replica "
            "(materialize v2_read_replica)."
        )
    return Lag(bytes=int(row[0] or 0), seconds=seconds, replay_lag_seconds=row[1])


def _wait_for_beat(standby: psycopg.Connection, beat: int, since: float, timeout: float) -> float:
    query = sql.SQL("SELECT beat FROM {} WHERE id = 1").format(sql.Identifier(HEARTBEAT_TABLE))
    while time.perf_counter() - since < timeout:
        try:
            row = standby.execute(query).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        if row is not None and row[0] >= beat:
            return time.perf_counter() - since
        time.sleep(0.0002)
    raise ServingError(
        f"A write on v2 did not reach the read replica within {timeout:.0f} s: see its log "
        f"({REPLICA_LOG_HINT}) and pg_stat_replication on v2."
    )
