"""The demo's Redis streams, as workers leave them: consumer groups, consumers, pending
(delivered, unacknowledged) entries, an empty stream that only holds a group, deleted entries.

Each stream is a list of commands (pure data) that :func:`apply_stream` runs in order, so the
same (scale, seed) always gives the same streams; only the pending entries' idle times differ.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import redis

from cartrita_assets.demo.gen import _Gen

Command = tuple[str, ...]
_BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z: entry ids are fixed, not the clock's


def _xadd(key: str, ms: int, seq: int, fields: dict[str, str]) -> Command:
    flat = [part for pair in fields.items() for part in pair]
    return ("XADD", key, f"{ms}-{seq}", *flat)


def _read(key: str, group: str, consumer: str, count: int, start: str = ">") -> Command:
    """``>``: new entries; ``0``: re-deliver the consumer's pending ones (their count grows)."""
    return ("XREADGROUP", "GROUP", group, consumer, "COUNT", str(count), "STREAMS", key, start)


def _entries(g: _Gen, key: str, n: int) -> tuple[list[Command], list[str]]:
    commands, ids = [], []
    for i in range(n):
        ms, seq = _BASE_MS + i * 1000, i % 3  # several entries can share a millisecond
        event = {"type": g.pick(("message", "login", "embed")), "user_id": str(i % 7 + 1)}
        commands.append(_xadd(key, ms, seq, {**event, "payload": json.dumps({"n": i})}))
        ids.append(f"{ms}-{seq}")
    return commands, ids


def _events_stream(g: _Gen, scale: int) -> list[Command]:
    """Two groups with several consumers, some entries acknowledged, some pending."""
    key = "stream:events"
    commands, ids = _entries(g, key, 20 * scale)
    commands.append(("XGROUP", "CREATE", key, "notifier", "0"))
    commands.append(("XGROUP", "CREATE", key, "indexer", "0"))
    commands.append(_read(key, "notifier", "worker-1", 6 * scale))
    commands.append(_read(key, "notifier", "worker-2", 5 * scale))
    commands.append(("XACK", key, "notifier", *ids[: 3 * scale]))
    commands.append(_read(key, "indexer", "indexer-a", 12 * scale))
    commands.append(("XACK", key, "indexer", *ids[2 : 2 + 4 * scale]))
    commands.append(_read(key, "indexer", "indexer-a", 2, "0"))  # delivered a second time
    commands.append(("XCLAIM", key, "notifier", "worker-2", "0", ids[3 * scale]))  # moved over
    commands.append(("XGROUP", "CREATECONSUMER", key, "indexer", "indexer-idle"))
    return commands


def _audit_stream(g: _Gen, scale: int) -> list[Command]:
    """Entries deleted with XDEL, one of them still pending in a group."""
    key = "stream:audit"
    commands, ids = _entries(g, key, 10 * scale)
    commands.append(("XGROUP", "CREATE", key, "archiver", "0"))
    commands.append(_read(key, "archiver", "archiver-1", 3))
    commands.append(("XDEL", key, ids[1], ids[5], ids[-1]))
    return commands


def _empty_stream() -> list[Command]:
    """A stream with no entries that only holds a group (workers wait on it)."""
    return [("XGROUP", "CREATE", "stream:jobs:webhooks", "dispatchers", "$", "MKSTREAM")]


def stream_commands(g: _Gen, scale: int) -> Iterator[tuple[int, str, list[Command]]]:
    """``(db, key, commands)`` of every demo stream."""
    yield 0, "stream:events", _events_stream(g, scale)
    yield 0, "stream:audit", _audit_stream(g, scale)
    yield 1, "stream:jobs:webhooks", _empty_stream()


def apply_stream(client: redis.Redis, commands: list[Command]) -> None:
    """Run one stream's commands in order (reads are real deliveries: they create pending
    entries)."""
    for command in commands:
        client.execute_command(*command)
