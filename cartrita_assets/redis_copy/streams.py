"""A stream's state besides its entries: counters, consumer groups, consumers, pending entries.

Read with ``XINFO STREAM``/``XINFO GROUPS``/``XINFO CONSUMERS``/``XPENDING``; rebuilt (the logical
path) with ``XGROUP CREATE … ENTRIESREAD``, ``XGROUP CREATECONSUMER``, ``XCLAIM … TIME RETRYCOUNT
FORCE JUSTID`` and ``XSETID … ENTRIESADDED MAXDELETEDID``. A pending entry's idle time grows by
itself, so it is carried (as the delivery instant) but never compared: owners and delivery
counts are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

_PHANTOM_FIELD = (b"cartrita-restore-placeholder", b"")


@dataclass(frozen=True)
class PendingEntry:
    """One delivered, unacknowledged entry of a group (``delivered_at_ms``: server clock)."""

    id: bytes
    consumer: bytes
    delivery_count: int
    delivered_at_ms: int = 0

    def compared(self) -> tuple[bytes, bytes, int]:
        return (self.id, self.consumer, self.delivery_count)


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer group: where it is, who is in it, what it has not acknowledged."""

    name: bytes
    last_delivered_id: bytes
    entries_read: int | None
    consumers: tuple[bytes, ...]
    pending: tuple[PendingEntry, ...]


@dataclass(frozen=True)
class StreamState:
    """The last generated id, Redis 7's counters and the consumer groups of a stream."""

    last_id: bytes
    entries_added: int | None
    max_deleted_id: bytes | None
    groups: tuple[ConsumerGroup, ...] = ()


def read_state(client: redis.Redis, key: bytes, info: dict[str, Any], batch: int) -> StreamState:
    """The state of the stream ``key`` whose ``XINFO STREAM`` reply is ``info``."""
    now_ms = _now_ms(client)
    groups = tuple(
        _read_group(client, key, group, batch, now_ms)
        for group in sorted(client.xinfo_groups(key), key=lambda g: g["name"])
    )
    added = info.get("entries-added")
    return StreamState(
        last_id=info["last-generated-id"],
        entries_added=None if added is None else int(added),
        max_deleted_id=info.get("max-deleted-entry-id"),
        groups=groups,
    )


def _now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _read_group(
    client: redis.Redis, key: bytes, group: dict[str, Any], batch: int, now_ms: int
) -> ConsumerGroup:
    name = group["name"]
    consumers = tuple(sorted(c["name"] for c in client.xinfo_consumers(key, name)))
    read = group.get("entries-read")
    return ConsumerGroup(
        name=name,
        last_delivered_id=group["last-delivered-id"],
        entries_read=None if read is None else int(read),
        consumers=consumers,
        pending=tuple(_read_pending(client, key, name, batch, now_ms)),
    )


def _read_pending(
    client: redis.Redis, key: bytes, group: bytes, batch: int, now_ms: int
) -> Iterator[PendingEntry]:
    start: bytes = b"-"
    while True:
        page = client.xpending_range(key, group, min=start, max=b"+", count=batch)
        for item in page:
            yield PendingEntry(
                id=item["message_id"],
                consumer=item["consumer"],
                delivery_count=int(item["times_delivered"]),
                delivered_at_ms=now_ms - int(item["time_since_delivered"]),
            )
        if len(page) < batch:
            return
        start = b"(" + page[-1]["message_id"]


def state_parts(state: StreamState) -> Iterator[bytes]:
    """What the digest covers: counters, groups, consumers, pending owners and counts."""
    yield b"state"
    yield str(state.entries_added).encode()
    yield state.max_deleted_id or b"-"
    yield str(len(state.groups)).encode()
    for group in sorted(state.groups, key=lambda g: g.name):
        yield from (group.name, group.last_delivered_id, str(group.entries_read).encode())
        yield str(len(group.consumers)).encode()
        yield from sorted(group.consumers)
        yield str(len(group.pending)).encode()
        for entry in sorted(group.pending, key=lambda p: p.id):
            yield from (entry.id, entry.consumer, str(entry.delivery_count).encode())


def phantom_ids(entry_ids: set[bytes], state: StreamState) -> list[bytes]:
    """Pending ids whose entries were deleted (XDEL keeps them pending): the rebuild adds a
    placeholder entry for each, claims it, then deletes it again."""
    pending = {p.id for g in state.groups for p in g.pending}
    return sorted(pending - entry_ids, key=_id_key)


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.split(b"-")
    return int(ms), int(seq)


def placeholder(entry_id: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A stand-in entry for a deleted pending id."""
    return entry_id, [_PHANTOM_FIELD]


def group_commands(key: bytes, state: StreamState) -> list[tuple[object, ...]]:
    """Create every group, its consumers and its pending entries (entries must exist)."""
    out: list[tuple[object, ...]] = []
    for group in state.groups:
        create: list[object] = [b"XGROUP", b"CREATE", key, group.name, group.last_delivered_id]
        if group.entries_read is not None:
            create += [b"ENTRIESREAD", group.entries_read]
        out.append(tuple(create))
        for consumer in group.consumers:
            out.append((b"XGROUP", b"CREATECONSUMER", key, group.name, consumer))
        for p in group.pending:
            out.append(
                (b"XCLAIM", key, group.name, p.consumer, 0, p.id, b"TIME", p.delivered_at_ms,
                 b"RETRYCOUNT", p.delivery_count, b"FORCE", b"JUSTID")
            )  # fmt: skip
    return out


def counter_command(key: bytes, state: StreamState) -> tuple[object, ...]:
    """``XSETID`` with the last id and, where the source had them, Redis 7's counters."""
    args: list[object] = [b"XSETID", key, state.last_id]
    if state.entries_added is not None:
        args += [b"ENTRIESADDED", state.entries_added]
    if state.max_deleted_id is not None:
        args += [b"MAXDELETEDID", state.max_deleted_id]
    return tuple(args)
