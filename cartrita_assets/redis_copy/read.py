"""Reading a live keyspace: SCAN every db, then each key's TYPE, expiry and value by type."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from cartrita_assets.errors import PreflightError
from cartrita_assets.redis_copy.client import Connect, _check_client, _server_major
from cartrita_assets.redis_copy.records import KeyRecord, StreamEntry, _unsupported_type, key_label
from cartrita_assets.redis_copy.streams import StreamState, read_state

_Read = tuple[object, StreamState | None]


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
    connect: Connect, dbs: Iterable[int] | None = None, batch: int = 500, with_dump: bool = False
) -> Iterator[KeyRecord]:
    """Read every key of the given dbs as :class:`KeyRecord` s, paging through big values.

    Args:
        connect: returns a client (``decode_responses=False``) for a db number.
        dbs: dbs to read; ``None`` means every db ``INFO keyspace`` lists.
        batch: SCAN ``COUNT`` and page size for collection reads.
        with_dump: also read each key's ``DUMP`` payload (for the byte-exact copy path).

    Returns:
        An iterator of records, db by db. Keys that vanish while being read are skipped.

    Raises:
        PreflightError: a module-type key or a decoding client.
    """
    clients: dict[int, redis.Redis] = {}
    if dbs is None:
        clients[0] = connect(0)
        dbs = databases_in_use(clients[0])
    for db in sorted(set(dbs)):
        client = clients[db] if db in clients else connect(db)
        _check_client(client)
        has_expiretime = _server_major(client) >= 7
        yield from _read_db(client, db, batch, has_expiretime, with_dump)


def _read_db(
    client: redis.Redis, db: int, batch: int, has_expiretime: bool, with_dump: bool
) -> Iterator[KeyRecord]:
    for keys in _scan_pages(client, batch):
        metas = _read_meta(client, keys, has_expiretime)
        strings = _read_strings(client, [k for k, t, _ in metas if t == "string"])
        small = _read_small_collections(client, db, [(k, t) for k, t, _ in metas], batch)
        dumps = _read_dumps(client, [k for k, _, _ in metas]) if with_dump else {}
        for key, type_name, expire_at in metas:
            if type_name == "string":
                read: _Read | None = (strings[key], None) if strings.get(key) is not None else None
            elif key in small:
                read = small[key]
            else:
                read = _read_value(client, db, key, type_name, batch)
            if read is not None:
                value, state = read
                last_id = state.last_id if state is not None else None
                dump = dumps.get(key)
                yield KeyRecord(db, key, type_name, value, expire_at, last_id, state, dump)


# Collections read whole in one pipelined reply when they hold at most a page of members.
_SIZE_COMMANDS = {"hash": "HLEN", "set": "SCARD", "zset": "ZCARD", "list": "LLEN"}


def _read_small_collections(
    client: redis.Redis, db: int, keys: list[tuple[bytes, str]], batch: int
) -> dict[bytes, _Read | None]:
    """Hashes, sets, sorted sets and lists of at most ``batch`` members, read with two pipelines
    for the whole page (their sizes, then each whole value) instead of a round trip or more per
    key; larger ones are left to the paging readers. A key that vanished reads as None."""
    kinds = [(key, kind) for key, kind in keys if kind in _SIZE_COMMANDS]
    if not kinds:
        return {}
    pipe = client.pipeline(transaction=False)
    for key, kind in kinds:
        pipe.execute_command(_SIZE_COMMANDS[kind], key)
    sizes = pipe.execute(raise_on_error=False)
    chosen = [kk for kk, n in zip(kinds, sizes, strict=True) if isinstance(n, int) and n <= batch]
    pipe = client.pipeline(transaction=False)
    for key, kind in chosen:
        if kind == "hash":
            pipe.hgetall(key)
        elif kind == "set":
            pipe.smembers(key)
        elif kind == "zset":
            pipe.zrange(key, 0, -1, withscores=True, score_cast_func=float)
        else:
            pipe.lrange(key, 0, -1)
    out: dict[bytes, _Read | None] = {}
    for (key, kind), value in zip(chosen, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(value, redis.ResponseError):
            raise _changed_type(db, key) if "WRONGTYPE" in str(value) else value
        if kind == "hash":
            out[key] = _non_empty(sorted(value.items()))
        elif kind == "set":
            out[key] = _non_empty(sorted(set(value)))
        elif kind == "zset":
            out[key] = _non_empty(sorted(dict(value).items()))
        else:
            out[key] = _non_empty(list(value))
    return out


def _read_dumps(client: redis.Redis, keys: list[bytes]) -> dict[bytes, bytes | None]:
    """``DUMP`` payloads, one pipeline per page (read like the values: stop writers first)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
    return dict(zip(keys, pipe.execute(), strict=True))


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
) -> _Read | None:
    """Read one non-string key: ``(value, stream state)``, or ``None`` if it vanished."""
    reader = _READERS.get(type_name)
    if reader is None:
        raise _unsupported_type(db, key, type_name)
    try:
        return reader(client, db, key, batch)
    except redis.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        raise _changed_type(db, key) from None


def _changed_type(db: int, key: bytes) -> PreflightError:
    return PreflightError(
        f"Redis key {key_label(db, key)} changed type while it was read: something still "
        "writes to the Redis being read. Stop its writers (the application) and rerun."
    )


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


def _read_stream(client: redis.Redis, db: int, key: bytes, batch: int) -> _Read | None:
    try:
        info = client.xinfo_stream(key)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    return _read_stream_entries(client, key, batch), read_state(client, key, info, batch)


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


_READERS: dict[str, Callable[[redis.Redis, int, bytes, int], _Read | None]]
_READERS = {
    "hash": _read_hash,
    "set": _read_set,
    "zset": _read_zset,
    "list": _read_list,
    "stream": _read_stream,
}
