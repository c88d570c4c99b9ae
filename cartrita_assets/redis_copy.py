"""Logical, version-portable copy of a Redis keyspace (every db, with TTLs) and its verification.

Why logical: a ``DUMP`` payload carries the RDB version of the server that made it, and a Redis 7
payload cannot be ``RESTORE``-d into an older server. So every key is read by type (``GET``,
``HSCAN``, ``SSCAN``, ``ZSCAN``, ``LRANGE`` pages, ``XRANGE`` pages) into a canonical logical
value, and rebuilt with plain write commands that every Redis >= 5 understands.

Consistency: keys are read one page at a time, so the copy is only a consistent snapshot when
nothing writes to the source while it is read (stop v1's writers first).

Atomicity of the restore: every key is rebuilt as ``DEL``, the type's write commands (values
split into commands of at most ``batch`` elements) and ``PEXPIREAT``, all inside one
``MULTI``/``EXEC``. Several small keys share a transaction; a big key gets one of its own. Redis
queues a transaction in memory before ``EXEC``, so restoring a key needs about twice its size in
free memory on both ends: fine for a cache/session/queue store, not meant for single values of
hundreds of megabytes. In exchange no key is ever visible half-written, and re-running converges.

What is copied: string (incl. bitmaps and HyperLogLogs), hash, list, set, zset (incl. geo),
stream entries (ids kept) and the stream's last generated id; absolute expiry in ms.
What is refused (``PreflightError`` before anything is written): module types such as
``ReJSON-RL``, streams with consumer groups. What is not carried over: per-field hash TTLs
(Redis 7.4 ``HEXPIRE``), the Redis 7 stream counters ``entries-added``/``max-deleted-entry-id``,
LRU/LFU access statistics.

Error messages name keys (``repr``, truncated), never values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from cartrita_assets.errors import BackupIntegrityError, PreflightError, RestoreError

SUPPORTED_TYPES = ("string", "hash", "list", "set", "zset", "stream")
BACKUP_FORMAT = "cartrita-redis-keyspace"
BACKUP_VERSION = 1
DIFF_LIST_CAP = 20
_DIGEST_DOMAIN = b"cartrita_assets.redis_copy/v1"
_TMP_GROUP = b"cartrita-restore-tmp"

Connect = Callable[[int], redis.Redis]
StreamEntry = tuple[bytes, list[tuple[bytes, bytes]]]


def key_label(db: int, key: bytes) -> str:
    """Short printable description of a key, safe for errors and logs (never a value).

    Args:
        db: database number.
        key: the key name.

    Returns:
        ``db<N>:<repr(key)>`` with the repr cut to 80 characters.
    """
    text = repr(key)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"db{db}:{text}"


# --------------------------------------------------------------------------- records and digests


@dataclass(frozen=True)
class KeyRecord:
    """One key's logical content.

    ``value`` by ``type``: string -> ``bytes``; hash -> ``list[tuple[field, value]]`` sorted;
    list -> ``list[bytes]`` in order; set -> ``list[bytes]`` sorted; zset ->
    ``list[tuple[member, float score]]`` sorted by member; stream -> ``list[(id, [(field,
    value), ...])]`` in id order (fields in stored order, duplicates kept).
    ``stream_last_id`` is the stream's last generated id (``None``: the last entry's id).
    """

    db: int
    key: bytes
    type: str
    value: object
    expire_at_ms: int | None
    stream_last_id: bytes | None = None

    def digest(self) -> str:
        """SHA-256 hex of an unambiguous encoding of (db, key, type, value); the TTL is excluded.

        Returns:
            64 hex digits; equal records (however their unordered parts are ordered) match.
        """
        h = hashlib.sha256()
        for part in (_DIGEST_DOMAIN, str(self.db).encode(), self.key, self.type.encode()):
            _frame(h, part)
        for part in _value_parts(self):
            _frame(h, part)
        return h.hexdigest()


def _frame(h: Any, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def _count(n: int) -> bytes:
    return str(n).encode()


def _value_parts(rec: KeyRecord) -> Iterator[bytes]:
    value: Any = rec.value
    if rec.type == "string":
        yield value
    elif rec.type == "list" or rec.type == "set":
        items = value if rec.type == "list" else sorted(value)
        yield _count(len(items))
        yield from items
    elif rec.type == "hash" or rec.type == "zset":
        yield _count(len(value))
        for member, other in sorted(value, key=lambda pair: pair[0]):
            yield member
            yield repr(float(other)).encode() if rec.type == "zset" else other
    elif rec.type == "stream":
        yield from _stream_parts(value, rec.stream_last_id)
    else:
        raise _unsupported_type(rec.db, rec.key, rec.type)


def _stream_parts(entries: list[StreamEntry], last_id: bytes | None) -> Iterator[bytes]:
    yield _count(len(entries))
    for entry_id, fields in entries:
        yield entry_id
        yield _count(len(fields))
        for name, val in fields:
            yield name
            yield val
    yield _effective_last_id(entries, last_id)


def _effective_last_id(entries: list[StreamEntry], last_id: bytes | None) -> bytes:
    if last_id is not None:
        return last_id
    return entries[-1][0] if entries else b"0-0"


def keyspace_digest(records: Iterable[KeyRecord]) -> str:
    """Order-independent digest of a whole keyspace (TTLs excluded).

    Args:
        records: every key of the keyspace, in any order.

    Returns:
        SHA-256 hex over the sorted per-key digests.
    """
    return _digest_of(rec.digest() for rec in records)


def _digest_of(key_digests: Iterable[str]) -> str:
    h = hashlib.sha256()
    for d in sorted(key_digests):
        h.update(d.encode() + b"\n")
    return h.hexdigest()


def _unsupported_type(db: int, key: bytes, type_name: str) -> PreflightError:
    return PreflightError(
        f"Redis key {key_label(db, key)} has type {type_name!r}, which is not supported: only "
        f"{', '.join(SUPPORTED_TYPES)} keys can be copied (module types such as ReJSON-RL are "
        "not). Export that key with its module's own tools and delete it from v1, then rerun."
    )


# --------------------------------------------------------------------------- reading a server


def databases_in_use(client: redis.Redis) -> list[int]:
    """Databases that hold at least one key, from ``INFO keyspace``.

    Args:
        client: a client for any db of the server.

    Returns:
        Sorted db numbers.
    """
    info = client.info("keyspace")
    return sorted(int(name[2:]) for name in info if str(name).startswith("db"))


def read_keyspace(
    connect: Connect, dbs: Iterable[int] | None = None, batch: int = 500
) -> Iterator[KeyRecord]:
    """Read every key of the given dbs as :class:`KeyRecord` s, paging through big values.

    Args:
        connect: returns a client (``decode_responses=False``) for a db number.
        dbs: dbs to read; ``None`` means every db ``INFO keyspace`` lists.
        batch: SCAN ``COUNT`` and page size for collection reads.

    Returns:
        An iterator of records, db by db. Keys that vanish while being read are skipped.

    Raises:
        PreflightError: a module-type key, a stream with consumer groups, a decoding client.
    """
    clients: dict[int, redis.Redis] = {}
    if dbs is None:
        clients[0] = connect(0)
        dbs = databases_in_use(clients[0])
    for db in sorted(set(dbs)):
        client = clients[db] if db in clients else connect(db)
        _check_client(client)
        yield from _read_db(client, db, batch, _server_major(client) >= 7)


def _check_client(client: redis.Redis) -> None:
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise PreflightError(
            "redis_copy needs clients made with decode_responses=False: keys and values are "
            "binary and decoding would corrupt or reject them."
        )


def _server_major(client: redis.Redis) -> int:
    version = str(client.info("server").get("redis_version", "0"))
    return int(version.split(".")[0] or 0)


def _server_time_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _read_db(client: redis.Redis, db: int, batch: int, has_expiretime: bool) -> Iterator[KeyRecord]:
    for keys in _scan_pages(client, batch):
        metas = _read_meta(client, keys, has_expiretime)
        strings = _read_strings(client, [k for k, t, _ in metas if t == "string"])
        for key, type_name, expire_at in metas:
            if type_name == "string":
                read: tuple[object, bytes | None] | None = (
                    (strings[key], None) if strings.get(key) is not None else None
                )
            else:
                read = _read_value(client, db, key, type_name, batch)
            if read is not None:
                yield KeyRecord(db, key, type_name, read[0], expire_at, read[1])


def _scan_pages(client: redis.Redis, batch: int) -> Iterator[list[bytes]]:
    seen: set[bytes] = set()
    cursor: int = 0
    while True:
        cursor, page = client.scan(cursor=cursor, count=batch)
        fresh = [k for k in page if k not in seen]
        seen.update(fresh)
        if fresh:
            yield fresh
        if int(cursor) == 0:
            return


def _read_meta(
    client: redis.Redis, keys: list[bytes], has_expiretime: bool
) -> list[tuple[bytes, str, int | None]]:
    """TYPE and absolute expiry (server clock) of each key; vanished keys are dropped."""
    pipe = client.pipeline(transaction=False)
    if not has_expiretime:
        pipe.time()
    for key in keys:
        pipe.type(key)
        if has_expiretime:
            pipe.pexpiretime(key)
        else:
            pipe.pttl(key)
    results = pipe.execute()
    now_ms = 0 if has_expiretime else int(results[0][0]) * 1000 + int(results[0][1]) // 1000
    pairs = results[0 if has_expiretime else 1 :]
    metas = []
    for i, key in enumerate(keys):
        type_name = _text(pairs[2 * i])
        ttl = int(pairs[2 * i + 1])
        if type_name == "none" or ttl == -2:
            continue
        expire_at = None if ttl == -1 else (ttl if has_expiretime else now_ms + ttl)
        metas.append((key, type_name, expire_at))
    return metas


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_strings(client: redis.Redis, keys: list[bytes]) -> dict[bytes, bytes | None]:
    if not keys:
        return {}
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    return dict(zip(keys, pipe.execute(), strict=True))


def _read_value(
    client: redis.Redis, db: int, key: bytes, type_name: str, batch: int
) -> tuple[object, bytes | None] | None:
    """Read one non-string key: ``(value, stream_last_id)``, or ``None`` if it vanished."""
    reader = _READERS.get(type_name)
    if reader is None:
        raise _unsupported_type(db, key, type_name)
    try:
        return reader(client, db, key, batch)
    except redis.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        raise PreflightError(
            f"Redis key {key_label(db, key)} changed type while it was read: something still "
            "writes to the source. Stop v1's writers and rerun."
        ) from None


def _non_empty(value: list[Any]) -> tuple[object, None] | None:
    return (value, None) if value else None


def _read_hash(client: redis.Redis, db: int, key: bytes, batch: int) -> tuple[object, None] | None:
    pairs = dict(client.hscan_iter(key, count=batch))
    return _non_empty(sorted(pairs.items()))


def _read_set(client: redis.Redis, db: int, key: bytes, batch: int) -> tuple[object, None] | None:
    return _non_empty(sorted(set(client.sscan_iter(key, count=batch))))


def _read_zset(client: redis.Redis, db: int, key: bytes, batch: int) -> tuple[object, None] | None:
    scores = dict(client.zscan_iter(key, count=batch, score_cast_func=float))
    return _non_empty(sorted(scores.items()))


def _read_list(client: redis.Redis, db: int, key: bytes, batch: int) -> tuple[object, None] | None:
    items: list[bytes] = []
    while True:
        page = client.lrange(key, len(items), len(items) + batch - 1)
        items.extend(page)
        if len(page) < batch:
            return _non_empty(items)


def _read_stream(
    client: redis.Redis, db: int, key: bytes, batch: int
) -> tuple[object, bytes | None] | None:
    try:
        info = client.xinfo_stream(key)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    if int(info.get("groups", 0)):
        raise PreflightError(
            f"Redis stream {key_label(db, key)} has {info['groups']} consumer group(s); consumer "
            "groups and their pending entries are not copied. Let its consumers drain it, "
            "remove the groups with XGROUP DESTROY (consumers recreate them on v2), then rerun."
        )
    return _read_stream_entries(client, key, batch), info["last-generated-id"]


def _read_stream_entries(client: redis.Redis, key: bytes, batch: int) -> list[StreamEntry]:
    raw = redis.Redis(connection_pool=client.connection_pool)
    raw.set_response_callback("XRANGE", lambda response, **_: response)  # keep duplicate fields
    entries: list[StreamEntry] = []
    start = b"-"
    while True:
        page = raw.execute_command("XRANGE", key, start, b"+", b"COUNT", batch)
        for entry_id, flat in page:
            entries.append((entry_id, list(zip(flat[::2], flat[1::2], strict=True))))
        if len(page) < batch:
            return entries
        start = _next_stream_id(entries[-1][0])


def _next_stream_id(entry_id: bytes) -> bytes:
    ms, seq = (int(part) for part in entry_id.split(b"-"))
    if seq == 2**64 - 1:
        return f"{ms + 1}-0".encode()
    return f"{ms}-{seq + 1}".encode()


_READERS: dict[str, Callable[[redis.Redis, int, bytes, int], tuple[object, bytes | None] | None]]
_READERS = {
    "hash": _read_hash,
    "set": _read_set,
    "zset": _read_zset,
    "list": _read_list,
    "stream": _read_stream,
}


# --------------------------------------------------------------------------- backup file


@dataclass(frozen=True)
class BackupSummary:
    """What a backup file holds: keys per db, total keys, keys with a TTL, keyspace digest."""

    keys_per_db: dict[int, int]
    total_keys: int
    keys_with_ttl: int
    digest: str


class _Tally:
    def __init__(self) -> None:
        self.per_db: dict[int, int] = {}
        self.with_ttl = 0
        self.digests: list[str] = []

    def add(self, rec: KeyRecord) -> None:
        self.per_db[rec.db] = self.per_db.get(rec.db, 0) + 1
        self.with_ttl += rec.expire_at_ms is not None
        self.digests.append(rec.digest())

    def summary(self) -> BackupSummary:
        return BackupSummary(
            dict(sorted(self.per_db.items())),
            len(self.digests),
            self.with_ttl,
            _digest_of(self.digests),
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _encode_value(type_name: str, value: Any) -> object:
    if type_name == "string":
        return _b64(value)
    if type_name in ("list", "set"):
        return [_b64(item) for item in value]
    if type_name == "hash":
        return [[_b64(f), _b64(v)] for f, v in value]
    if type_name == "zset":
        return [[_b64(m), repr(float(s))] for m, s in value]
    return [[_b64(i), [[_b64(f), _b64(v)] for f, v in fields]] for i, fields in value]


def _decode_value(type_name: str, value: Any) -> object:
    if type_name == "string":
        return _unb64(value)
    if type_name in ("list", "set"):
        return [_unb64(item) for item in value]
    if type_name == "hash":
        return [(_unb64(f), _unb64(v)) for f, v in value]
    if type_name == "zset":
        return [(_unb64(m), float(s)) for m, s in value]
    return [(_unb64(i), [(_unb64(f), _unb64(v)) for f, v in fields]) for i, fields in value]


def _record_line(rec: KeyRecord) -> str:
    if rec.type not in SUPPORTED_TYPES:
        raise _unsupported_type(rec.db, rec.key, rec.type)
    obj: dict[str, object] = {
        "db": rec.db,
        "key": _b64(rec.key),
        "type": rec.type,
        "value": _encode_value(rec.type, rec.value),
        "expire_at_ms": rec.expire_at_ms,
    }
    if rec.stream_last_id is not None:
        obj["stream_last_id"] = _b64(rec.stream_last_id)
    return json.dumps(obj, separators=(",", ":")) + "\n"


def write_backup(path: Path, records: Iterable[KeyRecord]) -> BackupSummary:
    """Stream records to a JSON Lines file created 0600, replaced atomically when complete.

    Line 1 is a header, then one record per line (bytes base64-encoded, zset scores as
    ``repr`` strings so ``inf`` survives), then a trailer with the key count and keyspace digest
    that :func:`read_backup` checks. On any error the partial file is removed.

    Args:
        path: destination file.
        records: the keys to write (e.g. :func:`read_keyspace`).

    Returns:
        Counts per db, total keys, keys with a TTL and the keyspace digest.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tally = _Tally()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(json.dumps({"format": BACKUP_FORMAT, "version": BACKUP_VERSION}) + "\n")
            for rec in records:
                out.write(_record_line(rec))
                tally.add(rec)
            summary = tally.summary()
            trailer = {"end": True, "total_keys": summary.total_keys, "digest": summary.digest}
            out.write(json.dumps(trailer) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return summary


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_backup(path: Path) -> Iterator[KeyRecord]:
    """Yield the records of a file written by :func:`write_backup`.

    The trailer (key count and keyspace digest) is checked when the iterator is exhausted, so a
    truncated or edited file raises at the end; use :func:`verify_backup` to check a file
    before acting on it.

    Args:
        path: the backup file.

    Returns:
        An iterator of records in file order.

    Raises:
        BackupIntegrityError: bad header, malformed line, missing trailer or digest mismatch.
    """
    tally = _Tally()
    with path.open("r", encoding="ascii") as lines:
        _check_header(path, next(lines, ""))
        for number, line in enumerate(lines, start=2):
            obj = _parse_line(path, number, line)
            if obj.get("end") is True:
                _check_trailer(path, obj, tally.summary(), lines)
                return
            rec = _record_from(path, number, obj)
            tally.add(rec)
            yield rec
    raise BackupIntegrityError(f"Redis backup {path} has no trailer: the file is truncated.")


def verify_backup(path: Path) -> BackupSummary:
    """Read a whole backup file and check it against its own trailer.

    Args:
        path: the backup file.

    Returns:
        The same summary :func:`write_backup` returned for it.
    """
    tally = _Tally()
    for rec in read_backup(path):
        tally.add(rec)
    return tally.summary()


def _parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise BackupIntegrityError(f"Redis backup {path} line {number} is not a JSON object.")
    return obj


def _check_header(path: Path, line: str) -> None:
    obj = _parse_line(path, 1, line) if line else {}
    if obj.get("format") != BACKUP_FORMAT or obj.get("version") != BACKUP_VERSION:
        raise BackupIntegrityError(
            f"{path} is not a {BACKUP_FORMAT} v{BACKUP_VERSION} file (bad or missing header)."
        )


def _check_trailer(
    path: Path, trailer: dict[str, Any], seen: BackupSummary, rest: Iterator[str]
) -> None:
    if any(line.strip() for line in rest):
        raise BackupIntegrityError(f"Redis backup {path} has data after its trailer.")
    if trailer.get("total_keys") != seen.total_keys or trailer.get("digest") != seen.digest:
        raise BackupIntegrityError(
            f"Redis backup {path} does not match its trailer: it records "
            f"{trailer.get('total_keys')} keys, the file holds {seen.total_keys} keys with a "
            "different digest. The file was edited or damaged; take the backup again."
        )


def _record_from(path: Path, number: int, obj: dict[str, Any]) -> KeyRecord:
    try:
        type_name = obj["type"]
        if type_name not in SUPPORTED_TYPES:
            raise ValueError(type_name)
        last_id = obj.get("stream_last_id")
        return KeyRecord(
            db=int(obj["db"]),
            key=_unb64(obj["key"]),
            type=type_name,
            value=_decode_value(type_name, obj["value"]),
            expire_at_ms=None if obj["expire_at_ms"] is None else int(obj["expire_at_ms"]),
            stream_last_id=None if last_id is None else _unb64(last_id),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BackupIntegrityError(
            f"Redis backup {path} line {number} is not a valid record ({type(exc).__name__})."
        ) from None


# --------------------------------------------------------------------------- restoring


@dataclass
class RestoreSummary:
    """Outcome of :func:`restore_keyspace`."""

    restored: int = 0
    expired_before_restore: int = 0
    per_db: dict[int, int] = field(default_factory=dict)


def restore_keyspace(
    connect: Connect,
    records: Iterable[KeyRecord],
    now_ms: int | None = None,
    batch: int = 200,
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

    Returns:
        Keys restored (total and per db) and records skipped because already expired.

    Raises:
        RestoreError: the server rejected a transaction (message names keys, not values).
    """
    writer = _Writer(connect, batch)
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
    return summary


class _Writer:
    """Groups the commands of whole keys into MULTI/EXEC pipelines, one db at a time."""

    def __init__(self, connect: Connect, batch: int) -> None:
        self._connect = connect
        self._batch = max(1, batch)
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
        self._commands.extend(_rebuild_commands(rec, self._batch))
        self._keys.append(rec.key)

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
    if value:
        out: list[tuple[object, ...]] = []
        for entry_id, fields in value:
            out.append((b"XADD", rec.key, entry_id, *(part for pair in fields for part in pair)))
    else:  # an empty stream: create it without entries
        out = [
            (b"XGROUP", b"CREATE", rec.key, _TMP_GROUP, b"$", b"MKSTREAM"),
            (b"XGROUP", b"DESTROY", rec.key, _TMP_GROUP),
        ]
    last_id = _effective_last_id(value, rec.stream_last_id)
    if last_id != b"0-0":
        out.append((b"XSETID", rec.key, last_id))
    return out


_BUILDERS: dict[str, Callable[[KeyRecord, Any, int], list[tuple[object, ...]]]] = {
    "string": _build_string,
    "hash": _build_flat(b"HSET"),
    "list": _build_flat(b"RPUSH"),
    "set": _build_flat(b"SADD"),
    "zset": _build_flat(b"ZADD"),
    "stream": _build_stream,
}


# --------------------------------------------------------------------------- verifying


@dataclass
class KeyspaceDiff:
    """Differences between an expected keyspace and a server's.

    The lists hold at most 20 key labels each (see :func:`key_label`); the ``*_count`` fields
    count every one.
    """

    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    ttl_mismatch: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    compared: int = 0
    missing_count: int = 0
    different_count: int = 0
    ttl_mismatch_count: int = 0
    extra_count: int = 0
    expired_skipped: int = 0

    def ok(self) -> bool:
        """True when nothing expected is missing, different or has another expiry.

        Returns:
            Whether the target holds the expected keyspace (extra keys do not count).
        """
        return not (self.missing_count or self.different_count or self.ttl_mismatch_count)

    def describe(self) -> str:
        """One line for logs and error messages, e.g. ``compared 10: 1 missing (db0:b'a')``.

        Returns:
            The counts with up to 3 example keys each.
        """
        parts = [f"compared {self.compared}"]
        for kind in ("missing", "different", "ttl_mismatch", "extra"):
            count = getattr(self, f"{kind}_count")
            if count:
                parts.append(f"{count} {kind} ({', '.join(getattr(self, kind)[:3])})")
        return "; ".join(parts)

    def add(self, kind: str, label: str) -> None:
        """Record one key under ``kind`` (missing, different, ttl_mismatch or extra)."""
        setattr(self, f"{kind}_count", getattr(self, f"{kind}_count") + 1)
        labels: list[str] = getattr(self, kind)
        if len(labels) < DIFF_LIST_CAP:
            labels.append(label)


def compare_keyspace(
    connect: Connect,
    expected: Iterable[KeyRecord],
    ttl_tolerance_ms: int = 2000,
    now_ms: int | None = None,
) -> KeyspaceDiff:
    """Compare a server's keyspace (every db in use) with the expected records.

    Args:
        connect: returns a client (``decode_responses=False``) for a db number of the target.
        expected: the records the target should hold, e.g. :func:`read_backup`.
        ttl_tolerance_ms: largest accepted difference between absolute expiries.
        now_ms: expected keys expiring at or before this are ignored; default the target's
            clock right after it was read.

    Returns:
        Missing, different, TTL-mismatched and extra keys (extra keys do not fail ``ok()``).
    """
    actual = {(r.db, r.key): (r.digest(), r.expire_at_ms) for r in read_keyspace(connect)}
    now = now_ms if now_ms is not None else _server_time_ms(connect(0))
    diff = KeyspaceDiff()
    for rec in expected:
        found = actual.pop((rec.db, rec.key), None)
        if rec.expire_at_ms is not None and rec.expire_at_ms <= now:
            diff.expired_skipped += 1
            continue
        diff.compared += 1
        _compare_one(diff, rec, found, ttl_tolerance_ms)
    for db, key in sorted(actual):
        diff.add("extra", key_label(db, key))
    return diff


def _compare_one(
    diff: KeyspaceDiff,
    rec: KeyRecord,
    found: tuple[str, int | None] | None,
    tolerance_ms: int,
) -> None:
    label = key_label(rec.db, rec.key)
    if found is None:
        diff.add("missing", label)
        return
    digest, expire_at = found
    if digest != rec.digest():
        diff.add("different", label)
    if (expire_at is None) != (rec.expire_at_ms is None) or (
        expire_at is not None
        and rec.expire_at_ms is not None
        and abs(expire_at - rec.expire_at_ms) > tolerance_ms
    ):
        diff.add("ttl_mismatch", label)
