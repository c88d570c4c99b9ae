"""KeyRecord, the logical value of one key, and its canonical encoding and digests.

Also :func:`key_label`, the printable name of a key used by every error message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from cartrita_assets.errors import PreflightError
from cartrita_assets.redis_copy.streams import StreamState, state_parts

SUPPORTED_TYPES = ("string", "hash", "list", "set", "zset", "stream")
_DIGEST_DOMAIN = b"cartrita_assets.redis_copy/v1"

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


@dataclass(frozen=True)
class KeyRecord:
    """One key's logical content.

    ``value`` by ``type``: string -> ``bytes``; hash -> ``list[tuple[field, value]]`` sorted;
    list -> ``list[bytes]`` in order; set -> ``list[bytes]`` sorted; zset ->
    ``list[tuple[member, float score]]`` sorted by member; stream -> ``list[(id, [(field,
    value), ...])]`` in id order (fields in stored order, duplicates kept).
    ``stream_last_id`` is the stream's last generated id (``None``: the last entry's id);
    ``stream`` its counters and consumer groups (``None`` in backups of format 1, which had
    neither). ``dump`` is the key's ``DUMP`` payload when it was read with one (never compared).
    """

    db: int
    key: bytes
    type: str
    value: object
    expire_at_ms: int | None
    stream_last_id: bytes | None = None
    stream: StreamState | None = None
    dump: bytes | None = field(default=None, compare=False, repr=False)

    def legacy(self) -> KeyRecord:
        """This record as format 1 saw it: a stream without counters and groups."""
        return replace(self, stream=None) if self.stream is not None else self

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
        if rec.stream is not None:
            yield from state_parts(rec.stream)
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
        "not). Export that key with its module's own tools and delete it from the Redis being "
        "read (v1 before a migration, v2 for its backups), then rerun."
    )
