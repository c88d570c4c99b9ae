"""Restoring records into a server, each key whole inside MULTI/EXEC, by one of two paths.

``dump``: ``RESTORE … REPLACE ABSTTL`` of the key's ``DUMP`` payload, byte-exact (stream groups,
consumers and pending entries included); only where the target loads the source's payloads (same
or newer RDB version). ``logical``: the type's write commands, stream groups rebuilt (see
``streams``); works into any Redis >= 7. ``auto`` tries one payload on the target first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from cartrita_assets.errors import RestoreError
from cartrita_assets.redis_copy.client import Connect, _check_client, _server_time_ms
from cartrita_assets.redis_copy.paths import COPY_PATHS, choose_path
from cartrita_assets.redis_copy.records import (
    SUPPORTED_TYPES,
    KeyRecord,
    StreamEntry,
    _effective_last_id,
    _unsupported_type,
    key_label,
)
from cartrita_assets.redis_copy.streams import (
    counter_command,
    group_commands,
    phantom_ids,
    placeholder,
)

_TMP_GROUP = b"cartrita-restore-tmp"


@dataclass
class RestoreSummary:
    """Outcome of :func:`restore_keyspace`."""

    restored: int = 0
    expired_before_restore: int = 0
    per_db: dict[int, int] = field(default_factory=dict)
    paths: dict[int, str] = field(default_factory=dict, compare=False)  # db -> dump/logical


def restore_keyspace(
    connect: Connect,
    records: Iterable[KeyRecord],
    now_ms: int | None = None,
    batch: int = 200,
    path: str = "auto",
) -> RestoreSummary:
    """Write records into a server: per key ``DEL`` + rebuild + ``PEXPIREAT`` in ``MULTI``/``EXEC``.

    Idempotent: re-running with the same records converges to the same keyspace. Keys not in
    ``records`` are left alone.

    Args:
        connect: returns a client (``decode_responses=False``) for a db number.
        records: the keys to write, e.g. :func:`read_backup`.
        now_ms: the instant (unix ms) before which expired records are skipped; default the
            target server's clock (``TIME``), the clock ``PEXPIREAT`` is judged by.
        batch: elements per write command, and commands per transaction for small keys.
        path: ``auto`` (``dump`` where the target loads the payloads, else ``logical``),
            ``dump`` or ``logical``; records without a payload always take ``logical``.

    Returns:
        Keys restored (total and per db) and records skipped because already expired.

    Raises:
        RestoreError: the server rejected a transaction (message names keys, not values).
    """
    if path not in COPY_PATHS:
        raise RestoreError(f"Unknown Redis copy path {path!r}: use one of {', '.join(COPY_PATHS)}.")
    writer = _Writer(connect, batch, path)
    now = now_ms if now_ms is not None else _server_time_ms(writer.client(0))
    summary = RestoreSummary()
    for rec in records:
        if rec.expire_at_ms is not None and rec.expire_at_ms <= now:
            summary.expired_before_restore += 1
            continue
        writer.add(rec)
        summary.restored += 1
        summary.per_db[rec.db] = summary.per_db.get(rec.db, 0) + 1
    writer.flush()
    summary.per_db = dict(sorted(summary.per_db.items()))
    summary.paths = dict(sorted(writer.paths.items()))
    return summary


class _Writer:
    """Groups the commands of whole keys into MULTI/EXEC pipelines, one db at a time."""

    def __init__(self, connect: Connect, batch: int, path: str) -> None:
        self._connect = connect
        self._batch = max(1, batch)
        self._path = path
        self._use_dump: bool | None = None  # decided once, before the first key is written
        self.paths: dict[int, str] = {}
        self._clients: dict[int, redis.Redis] = {}
        self._db: int | None = None
        self._commands: list[tuple[object, ...]] = []
        self._keys: list[bytes] = []

    def client(self, db: int) -> redis.Redis:
        if db not in self._clients:
            self._clients[db] = self._connect(db)
            _check_client(self._clients[db])
        return self._clients[db]

    def add(self, rec: KeyRecord) -> None:
        if rec.db != self._db or len(self._commands) >= self._batch:
            self.flush()
            self._db = rec.db
        how = "dump" if self._takes_dump(rec) else "logical"
        if how == "dump":
            self._commands.extend(_restore_commands(rec))
        else:
            self._commands.extend(_rebuild_commands(rec, self._batch))
        seen = self.paths.setdefault(rec.db, how)
        if seen != how:  # only when some records of a db carry no payload
            self.paths[rec.db] = "dump and logical"
        self._keys.append(rec.key)

    def _takes_dump(self, rec: KeyRecord) -> bool:
        if rec.dump is None:
            return False
        if self._use_dump is None:
            self._use_dump = choose_path(self.client(rec.db), rec, self._path) == "dump"
        return self._use_dump

    def flush(self) -> None:
        if self._db is None or not self._commands:
            return
        pipe = self.client(self._db).pipeline(transaction=True)
        for args in self._commands:
            pipe.execute_command(*args)
        try:
            pipe.execute()
        except redis.ResponseError as exc:
            raise self._error(exc) from None
        self._commands, self._keys = [], []

    def _error(self, exc: redis.ResponseError) -> RestoreError:
        # redis-py prefixes pipeline errors with the failing command (values!): keep Redis' text.
        reason = str(exc.args[0] if exc.args else exc).rsplit("caused error: ", 1)[-1]
        db = cast(int, self._db)
        names = ", ".join(key_label(db, k) for k in self._keys[:5])
        more = f" and {len(self._keys) - 5} more" if len(self._keys) > 5 else ""
        return RestoreError(
            f"Redis rejected the restore transaction for {names}{more}: "
            f"{type(exc).__name__}: {reason[:200]}. Fix the cause and rerun; the restore "
            "rewrites each key from scratch."
        )


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rebuild_commands(rec: KeyRecord, batch: int) -> list[tuple[object, ...]]:
    value: Any = rec.value
    if rec.type not in SUPPORTED_TYPES:
        raise _unsupported_type(rec.db, rec.key, rec.type)
    if rec.type != "string" and rec.type != "stream" and not value:
        raise RestoreError(
            f"Record {key_label(rec.db, rec.key)} is an empty {rec.type}, which Redis cannot "
            "store; the backup is malformed."
        )
    commands: list[tuple[object, ...]] = [(b"DEL", rec.key)]
    commands.extend(_BUILDERS[rec.type](rec, value, batch))
    if rec.expire_at_ms is not None:
        commands.append((b"PEXPIREAT", rec.key, rec.expire_at_ms))
    return commands


def _restore_commands(rec: KeyRecord) -> list[tuple[object, ...]]:
    if rec.expire_at_ms is None:
        return [(b"RESTORE", rec.key, 0, rec.dump, b"REPLACE")]
    return [(b"RESTORE", rec.key, rec.expire_at_ms, rec.dump, b"REPLACE", b"ABSTTL")]


def _build_string(rec: KeyRecord, value: bytes, batch: int) -> list[tuple[object, ...]]:
    return [(b"SET", rec.key, value)]


def _build_flat(command: bytes) -> Callable[[KeyRecord, Any, int], list[tuple[object, ...]]]:
    def build(rec: KeyRecord, value: list[Any], batch: int) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        for chunk in _chunks(value, batch):
            args: list[object] = []
            for item in chunk:
                args.extend(_item_args(command, item))
            out.append((command, rec.key, *args))
        return out

    return build


def _item_args(command: bytes, item: Any) -> tuple[object, ...]:
    if command == b"ZADD":
        member, score = item
        return (repr(float(score)).encode(), member)
    return tuple(item) if command == b"HSET" else (item,)


def _build_stream(rec: KeyRecord, value: list[StreamEntry], batch: int) -> list[tuple[object, ...]]:
    state = rec.stream
    phantoms = phantom_ids({i for i, _ in value}, state) if state else []
    entries = sorted([*value, *map(placeholder, phantoms)], key=lambda e: _id_order(e[0]))
    out: list[tuple[object, ...]] = []
    for entry_id, fields in entries:
        out.append((b"XADD", rec.key, entry_id, *(part for pair in fields for part in pair)))
    if not entries:  # an empty stream: create it without entries
        out += [
            (b"XGROUP", b"CREATE", rec.key, _TMP_GROUP, b"$", b"MKSTREAM"),
            (b"XGROUP", b"DESTROY", rec.key, _TMP_GROUP),
        ]
    last_id = _effective_last_id(value, rec.stream_last_id)
    if state is None:
        return out + ([(b"XSETID", rec.key, last_id)] if last_id != b"0-0" else [])
    out.append((b"XSETID", rec.key, state.last_id))  # groups may point past the last entry
    out += group_commands(rec.key, state)
    if phantoms:
        out.append((b"XDEL", rec.key, *phantoms))
    return [*out, counter_command(rec.key, state)]


def _id_order(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.split(b"-")
    return int(ms), int(seq)


_BUILDERS: dict[str, Callable[[KeyRecord, Any, int], list[tuple[object, ...]]]] = {
    "string": _build_string,
    "hash": _build_flat(b"HSET"),
    "list": _build_flat(b"RPUSH"),
    "set": _build_flat(b"SADD"),
    "zset": _build_flat(b"ZADD"),
    "stream": _build_stream,
}
