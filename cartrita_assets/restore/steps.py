"""Restore a verified backup into v2: a staging database first, then an atomic swap.

A partial restore never becomes the live database: pg_restore works on ``<db>__cartrita_staging``
and only a complete, error-free restore is renamed to ``<db>``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from psycopg import sql

from cartrita_assets import redis_copy
from cartrita_assets.backup.manifest import DUMP_NAME, REDIS_NAME, Manifest, verify_files
from cartrita_assets.envfile import PostgresSettings, RedisSettings
from cartrita_assets.errors import BackupIntegrityError, CartritaError, PreflightError, RestoreError
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import connect, server_major
from cartrita_assets.pg.inventory import qualified
from cartrita_assets.pg.loaded import LoadedState, LoadHasher
from cartrita_assets.pg.measure import default_jobs
from cartrita_assets.pg.roles import ensure_role
from cartrita_assets.pg.tools import TOC_KINDS, finished_item, read_toc, run_tool
from cartrita_assets.progress import LineBatch, Progress, counted
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.redis_copy.versions import ServerVersion, check_not_older, server_version

Log = Callable[[str], None]
MARKER = "cartrita.restored_from"


@dataclass
class RestoreOutcome:
    """What the restore did, for the materialization metadata."""

    database: str
    action: str  # "restored", "already restored", "replaced"
    seconds: float = 0.0
    roles: dict[str, str] = field(default_factory=dict)
    extensions: list[str] = field(default_factory=list)
    redis_keys: int = 0
    redis_expired_before_restore: int = 0
    # each table of the backup as hashed right after pg_restore wrote it (hash_while_loading)
    loaded: dict[str, LoadedState] = field(default_factory=dict)
    database_oid: int = 0


def verify_backup(folder: Path, manifest: Manifest, asset: str = "v1_backup") -> None:
    """Refuse a backup whose files differ from the sha256 sums in its manifest (``asset``: the
    asset that takes a new one, named in the message)."""
    problems = verify_files(folder, manifest)
    if problems:
        listed = "; ".join(problems[:10])
        raise BackupIntegrityError(
            f"Backup {folder} does not match its manifest ({len(problems)} problem(s): {listed}). "
            "It was changed or damaged after it was taken; nothing was restored. Take a new "
            f"backup by materializing {asset}."
        )


def check_target(conn: psycopg.Connection, manifest: Manifest) -> None:
    """Refuse a PostgreSQL major downgrade and missing extensions before anything changes."""
    major = server_major(conn)
    if major < manifest.postgres.major:
        raise PreflightError(
            f"v2 runs PostgreSQL {major} but the backup comes from PostgreSQL "
            f"{manifest.postgres.major}: restoring into an older major is not supported. Use a v2 "
            f"image whose PostgreSQL major is at least {manifest.postgres.major}."
        )
    available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    missing = sorted(set(manifest.postgres.extensions) - available)
    if missing:
        raise PreflightError(
            f"v2 lacks the extension(s) {', '.join(missing)} that v1 uses. Use a v2 image that "
            "ships them (the pgvector image ships `vector`)."
        )


def restore_postgres(
    admin: PostgresSettings,
    folder: Path,
    manifest: Manifest,
    app: PostgresSettings | None,
    *,
    log: Log,
    replace_existing: bool = False,
    jobs: int | None = None,
    label: str = "v2 PostgreSQL",
    again: bool = False,
    hash_while_loading: bool = False,
) -> RestoreOutcome:
    """Restore the backup's database into v2 as ``manifest.postgres.database``.

    Args:
        admin: a v2 superuser connection (the restore creates roles and extensions).
        folder: the backup folder; its files must already be verified.
        manifest: the backup's manifest.
        app: v1's application credentials; the role is recreated in v2 with the same password
            (None: roles are created without a password, existing ones kept as they are).
        log: progress lines.
        replace_existing: replace a v2 database that was not restored by this project, or that
            changed since its restore.
        jobs: parallel pg_restore workers and ANALYZE sessions (default: the core count).
        label: what the target is to the user, for messages ("v1 PostgreSQL" in a rollback).
        again: restore even when the database was restored from this very backup (it may have
            been written to since); with ``replace_existing`` only.
        hash_while_loading: hash each table of the backup as soon as pg_restore has written it
            (``RestoreOutcome.loaded``, :mod:`cartrita_assets.pg.loaded`), with the manifest's
            hash method, so the comparison with v1 need not hash v2 again.
    """
    target = manifest.postgres.database
    jobs = jobs or default_jobs()
    started = time.monotonic()
    # database-level work (create, drop, rename) runs from the maintenance database
    with connect(admin, role=label, dbname="postgres") as conn:
        check_target(conn, manifest)
        existing = _marker(conn, target)
        if existing == manifest.backup_id and not (again and replace_existing):
            log(f"v2 database {target} was already restored from {manifest.backup_id}")
            return RestoreOutcome(target, "already restored")
        if existing is not _ABSENT:
            _check_replaceable(admin, folder.parent, target, existing, replace_existing, log)
        roles = _ensure_roles(conn, manifest, app)
        staging = _fresh_staging(conn, manifest)
    _create_extensions(admin, staging, manifest, log, label)
    hasher = None
    loaders = _Loaders(jobs)
    if hash_while_loading:
        hasher = LoadHasher(
            admin, dbname=staging, role=label, tables=manifest.postgres.tables,
            method=manifest.postgres.hash_method, log=log, idle=loaders.one_free,
        ).start()  # fmt: skip
    try:
        _pg_restore(admin, folder, staging, log, jobs, hasher.loaded if hasher else None, loaders)
    except BaseException:
        if hasher is not None:
            hasher.stop()
        raise
    loaded: dict[str, LoadedState] = {}
    with ThreadPoolExecutor(max_workers=1) as beside:
        analyzed = beside.submit(_analyze, admin, staging, log, label, jobs)
        if hasher is not None:
            loaded = hasher.finish(jobs)
            log(f"Hashed {len(loaded)} tables as pg_restore wrote them "
                f"({hasher.while_loading} of them while it was still loading others)")  # fmt: skip
        analyzed.result()
    with connect(admin, role=label, dbname="postgres") as conn:
        (oid,) = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = %s", (staging,)
        ).fetchone()  # type: ignore[misc]
        # marked before the swap: settings follow the database through the rename
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(staging), sql.Identifier(*MARKER.split(".")),
                sql.Literal(manifest.backup_id),
            )
        )  # fmt: skip
        action = _swap(conn, staging, target, existing is not _ABSENT)
    return RestoreOutcome(
        target,
        action,
        seconds=time.monotonic() - started,
        roles=roles,
        extensions=sorted(manifest.postgres.extensions),
        loaded=loaded,
        database_oid=int(oid),
    )


_ABSENT = object()


def _marker(conn: psycopg.Connection, dbname: str) -> object:
    """The backup id a v2 database was restored from; None if not ours; _ABSENT if no database."""
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
        return _ABSENT
    row = conn.execute(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = %s AND s.setrole = 0",
        (dbname,),
    ).fetchone()
    for item in (row[0] if row else None) or []:
        key, _, value = item.partition("=")
        if key == MARKER:
            return value
    return None


def _check_replaceable(
    admin: PostgresSettings,
    backup_root: Path,
    target: str,
    existing: object,
    replace_existing: bool,
    log: Log,
) -> None:
    """Replace a restored v2 database only while it still equals the backup it came from."""
    if replace_existing:
        log(f"Replacing the existing v2 database {target} (replace_existing_database is set)")
        return
    if existing is None and _holds_nothing(admin, target):
        # the postgres image creates POSTGRES_DB (v1's database name) empty on its first start
        log(f"v2 database {target} is empty (as the image creates it); restoring in its place")
        return
    if existing is None:
        raise PreflightError(
            f"v2 already has a database '{target}' that this project did not restore. Nothing was "
            "changed. Drop it, or set replace_existing_database: true in the restored_db config."
        )
    previous = backup_root / str(existing)
    if not (previous / "manifest.json").exists():
        raise PreflightError(
            f"v2 database '{target}' was restored from backup {existing}, which is no longer in "
            f"{backup_root}, so it cannot be shown to be unchanged; replacing it could lose v2 "
            "writes. Nothing was changed. If v2 has not gone live, set "
            "replace_existing_database: true in the restored_db config."
        )
    # Only v1's tables count: the v2 schema (migrations, embeddings) adds tables of its own, and
    # an application writing to v2 writes to v1's tables.
    recorded_part = Manifest.load(previous).postgres
    recorded = recorded_part.tables
    with connect(admin, role="v2 PostgreSQL", dbname=target) as conn:
        now = inventory.table_states(conn, method=recorded_part.hash_method)
    changed = any(now.get(name) != state for name, state in recorded.items())
    if changed:
        raise PreflightError(
            f"v2 database '{target}' has changed since it was restored from {existing} (v2 has "
            "been written to), so replacing it would lose those writes. Nothing was changed. If "
            "that is intended, set replace_existing_database: true in the restored_db config."
        )
    log(f"v2 database {target} still equals backup {existing}; replacing it with the new backup")


def _holds_nothing(admin: PostgresSettings, target: str) -> bool:
    with connect(admin, role="v2 PostgreSQL", dbname=target) as conn:
        return inventory.user_object_count(conn) == 0


def _ensure_roles(
    conn: psycopg.Connection, manifest: Manifest, app: PostgresSettings | None
) -> dict[str, str]:
    admin_user = conn.info.user
    done: dict[str, str] = {}
    for name, attrs in sorted(manifest.postgres.roles.items()):
        if name == admin_user:
            done[name] = "kept (v2 administrator)"
            continue
        password = app.password if app is not None and name == app.user else None
        done[name] = ensure_role(conn, name, attrs, password)
    return done


def staging_name(target: str) -> str:
    """Name of the staging database (PostgreSQL names are at most 63 bytes)."""
    return f"{target[:40]}__cartrita_staging"


def _fresh_staging(conn: psycopg.Connection, manifest: Manifest) -> str:
    staging = staging_name(manifest.postgres.database)
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(staging)))
    conn.execute(
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {}").format(
            sql.Identifier(staging),
            sql.Identifier(manifest.postgres.owner),
            sql.Literal(manifest.postgres.encoding),
        )
    )
    return staging


def _create_extensions(
    admin: PostgresSettings, db: str, manifest: Manifest, log: Log, label: str
) -> None:
    # pgvector must exist before the restore: v1's tables already have vector columns.
    with connect(admin, role=label, dbname=db) as conn:
        for name, info in sorted(manifest.postgres.extensions.items()):
            if name == "plpgsql":
                continue
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(info["schema"]))
            )
            conn.execute(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}").format(
                    sql.Identifier(name), sql.Identifier(info["schema"])
                )
            )
            log(f"Extension {name} ready in the staging database")


def _pg_restore(
    admin: PostgresSettings,
    folder: Path,
    db: str,
    log: Log,
    jobs: int,
    table_loaded: Callable[[str], None] | None = None,
    loaders: _Loaders | None = None,
) -> None:
    """pg_restore into ``db``; ``table_loaded(schema.table)`` once each table's data and its
    constraints (a primary key or unique constraint locks the table exclusively while it is
    built, so reading the table earlier would hold the restore up) are in. Parallel restores
    report that; a serial one reports nothing."""
    log(f"pg_restore into {db} with {jobs} workers")
    dump = folder / DUMP_NAME
    sizes = {int(p.stem): p.stat().st_size for p in dump.glob("*.dat") if p.stem.isdigit()}
    # the items each table waits for, and the table each item belongs to
    pending: dict[str, set[int]] = {}
    owner: dict[int, str] = {}
    if table_loaded:
        for e in read_toc(dump, kinds=(*TOC_KINDS, "CONSTRAINT")):
            if e.kind in ("TABLE DATA", "CONSTRAINT"):
                name = qualified(e.schema, e.name)
                pending.setdefault(name, set()).add(e.dump_id)
                owner[e.dump_id] = name
    progress = Progress("pg_restore", sum(sizes.values()) or None, "bytes", log)
    finished: list[int] = []
    lines = LineBatch("pg_restore --verbose:", log)

    def on_line(line: str) -> None:
        lines(line)
        if loaders is not None:
            loaders.follow(line)
        item = finished_item(line)
        if item is None:
            return
        dump_id = item[0]
        if dump_id in sizes:  # a table's data file
            finished.append(sizes[dump_id])
        if table_loaded and dump_id in owner:
            name = owner[dump_id]
            waiting = pending.get(name)
            if waiting is not None:
                waiting.discard(dump_id)
                if not waiting:
                    del pending[name]
                    table_loaded(name)

    args = [
        "pg_restore", f"--dbname={db}", f"--jobs={jobs}", "--exit-on-error", "--verbose",
        "--no-password", str(dump),
    ]  # fmt: skip
    try:
        with _CopyWatch(admin, db, label_done=lambda: sum(finished)) as watch:
            with progress.ticking(poll=watch.bytes_done):
                result = run_tool(args, admin, app_name="cartrita-v2-restore", log=on_line)
    finally:
        lines.flush()
    errors = [line for line in result.stderr if "error" in line.lower()]
    if result.returncode != 0 or errors:
        shown = "\n".join((errors or result.stderr)[-8:])
        raise RestoreError(
            f"pg_restore failed (exit {result.returncode}); the live v2 database was not touched "
            f"and the staging database {db} holds the partial restore:\n{shown}"
        )
    progress.set_done(sum(sizes.values()))
    progress.finish()


class _Loaders:
    """How many of a parallel pg_restore's workers are busy, from its ``--verbose`` lines
    (``launching item`` / ``finished item``)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.busy = 0

    def follow(self, line: str) -> None:
        if "launching item " in line:
            self.busy += 1
        elif finished_item(line) is not None:
            self.busy = max(0, self.busy - 1)

    def one_free(self) -> bool:
        return self.busy < self.jobs


class _CopyWatch:
    """Bytes restored so far: finished tables plus the COPYs in flight (pg_stat_progress_copy,
    PostgreSQL 14+; on older servers only finished tables count)."""

    def __init__(self, admin: PostgresSettings, db: str, label_done: Callable[[], int]) -> None:
        self.admin, self.db, self.label_done = admin, db, label_done
        self.conn: psycopg.Connection | None = None

    def __enter__(self) -> _CopyWatch:
        try:
            self.conn = connect(self.admin, role="v2 PostgreSQL", dbname="postgres")
            if server_major(self.conn) < 14:
                self.conn.close()
                self.conn = None
        except CartritaError:
            self.conn = None  # progress is a nicety: pg_restore reports the real failure
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def bytes_done(self) -> float:
        in_flight = 0
        if self.conn is not None:
            row = self.conn.execute(
                "SELECT coalesce(sum(bytes_processed), 0) FROM pg_stat_progress_copy "
                "WHERE datname = %s",
                (self.db,),
            ).fetchone()
            in_flight = int(row[0]) if row else 0
        return self.label_done() + in_flight


def restore_scratch(
    admin: PostgresSettings,
    folder: Path,
    manifest: Manifest,
    dbname: str,
    log: Log,
    jobs: int | None = None,
) -> None:
    """Restore the backup's database into a new database ``dbname`` on the same server (any
    database of that name is dropped first): the restore test of a backup. The caller drops it.

    Args:
        admin: a superuser connection to the server (the roles the dump names exist there).
        folder: the backup folder.
        manifest: its manifest.
        dbname: the scratch database's name.
        log: progress lines.
        jobs: parallel pg_restore workers (default: the core count).
    """
    jobs = jobs or default_jobs()
    with connect(admin, role="v2 PostgreSQL", dbname="postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
                sql.Identifier(dbname), sql.Literal(manifest.postgres.encoding)
            )
        )
    _create_extensions(admin, dbname, manifest, log, "v2 PostgreSQL")
    _pg_restore(admin, folder, dbname, log, jobs)


def drop_database(admin: PostgresSettings, dbname: str) -> None:
    """Drop ``dbname`` if it exists (sessions on it are ended)."""
    with connect(admin, role="v2 PostgreSQL", dbname="postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def _analyze(admin: PostgresSettings, db: str, log: Log, label: str, jobs: int) -> None:
    # pg_restore leaves planner statistics empty; the first queries on v2 would plan blind.
    # One session per core, each taking the next table (largest first).
    with connect(admin, role=label, dbname=db) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY pg_total_relation_size(c.oid) DESC"
        ).fetchall()
    todo: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    for table in tables:
        todo.put(table)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with connect(admin, role=label, dbname=db) as session:
                while not errors:
                    try:
                        schema, name = todo.get_nowait()
                    except queue.Empty:
                        return
                    session.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    log(f"ANALYZE done on {db} ({len(tables)} tables, {jobs} sessions)")


def _swap(conn: psycopg.Connection, staging: str, target: str, exists: bool) -> str:
    ident = sql.Identifier
    if exists:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident(target)))
    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(staging), ident(target)))
    return "replaced" if exists else "restored"


def restore_redis(
    settings: RedisSettings,
    folder: Path,
    log: Log,
    path: str = "auto",
    source_version: str = "",
    keys: int | None = None,
) -> redis_copy.RestoreSummary:
    """Write every backed-up key into a Redis with its original absolute expiry.

    Args:
        settings: the Redis written to.
        folder: the backup folder.
        log: progress lines.
        path: ``auto``, ``dump`` or ``logical`` (see :func:`redis_copy.restore_keyspace`).
        source_version: the server the backup was read from (the manifest's); a target older
            than it is refused before any key is written.
        keys: how many keys the backup holds (for the progress lines' ETA).
    """
    if source_version:
        check_not_older(ServerVersion.parse(source_version), server_version(client_for(settings)))
    summary = redis_copy.restore_keyspace(
        lambda db: client_for(replace(settings, db=db)),
        counted(
            redis_copy.read_backup(folder / REDIS_NAME),
            Progress("Redis restore", keys, "keys", log),
        ),
        path=path,
    )
    paths = ", ".join(f"db{db}: {how}" for db, how in summary.paths.items())
    log(f"Redis: {summary.restored} keys restored ({paths or 'none'}), "
        f"{summary.expired_before_restore} had expired")  # fmt: skip
    return summary
